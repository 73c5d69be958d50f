"""The training forward pass as one nn.Module, so DDP (accelerate) sees and syncs it as a whole.

It computes what WhisperForConditionalGeneration.forward(labels=...) computes: the same encoder (with
SpecAugment while training), decoder inputs = labels shifted right with decoder_start_token_id, the mean
token cross-entropy over labels != -100. Two differences make it faster: the vocabulary projection is
applied only at label positions (padding never reaches the 51k-way softmax), and a frozen encoder runs
without autograd or is skipped entirely when cached encoder outputs are passed in. Batches with a context
in Whisper's previous-text slot pass their decoder inputs explicitly (pipeline.training.data.Collator).
"""

from __future__ import annotations

import torch
from torch import nn


class WhisperSeq2SeqLoss(nn.Module):
    def __init__(self, model: nn.Module, whisper: nn.Module, encoder_trainable: bool):
        super().__init__()
        self.model = model  # registered so DDP and state_dict see the (peft-wrapped) model
        self._whisper = [whisper]  # plain reference (not a second registration of the same weights)
        self.encoder_trainable = encoder_trainable

    @property
    def whisper(self) -> nn.Module:
        return self._whisper[0]

    def encode(self, input_features: torch.Tensor) -> torch.Tensor:
        core = self.whisper.model
        features = core._mask_input_features(input_features)  # SpecAugment; identity unless enabled+training
        with torch.set_grad_enabled(self.encoder_trainable and torch.is_grad_enabled()):
            return core.encoder(features).last_hidden_state

    def forward(
        self,
        labels: torch.Tensor,
        input_features: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        from transformers.models.whisper.modeling_whisper import shift_tokens_right

        whisper = self.whisper
        if encoder_hidden_states is None:
            encoder_hidden_states = self.encode(input_features)
        if decoder_input_ids is None:  # no context: the labels shifted right, as HF does
            decoder_input_ids = shift_tokens_right(
                labels, whisper.config.pad_token_id, whisper.config.decoder_start_token_id
            )
        hidden = whisper.model.decoder(
            input_ids=decoder_input_ids, encoder_hidden_states=encoder_hidden_states, use_cache=False
        ).last_hidden_state
        keep = labels != -100
        logits = whisper.proj_out(hidden[keep])
        return nn.functional.cross_entropy(logits.float(), labels[keep])
