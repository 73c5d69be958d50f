"""pipeline.training.loss computes what WhisperForConditionalGeneration.forward(labels=...) computes: the same
logits at every label position and the same loss (padding -100 and a masked context prefix do not count)."""

from __future__ import annotations

import pytest
import torch

SOT, EOT, NO_TIMESTAMPS, PREV = 50257, 50256, 50362, 50360  # tiny.en ids
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def whisper(tiny_whisper_dir):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()


def project_loss(whisper, **batch):
    """The project's loss and the logits its vocabulary projection produced (label positions only)."""
    from pipeline.training.loss import WhisperSeq2SeqLoss

    captured = []
    hook = whisper.proj_out.register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        with torch.no_grad():
            loss = WhisperSeq2SeqLoss(whisper, whisper, encoder_trainable=False).eval()(**batch)
    finally:
        hook.remove()
    return loss, captured[0]


def features(whisper, rows: int):
    torch.manual_seed(0)
    return torch.randn(rows, whisper.config.num_mel_bins, 3000)


def test_padded_labels_give_the_hf_logits_and_loss(whisper):
    labels = torch.tensor([[NO_TIMESTAMPS, 440, 2068, 11, EOT], [NO_TIMESTAMPS, 2068, EOT, -100, -100]])
    inputs = features(whisper, 2)
    loss, logits = project_loss(whisper, labels=labels, input_features=inputs)
    with torch.no_grad():
        reference = whisper(input_features=inputs, labels=labels)
    keep = labels != -100
    assert logits.shape == (int(keep.sum()), whisper.config.vocab_size)  # padding never reaches proj_out
    assert torch.allclose(logits, reference.logits[keep], atol=TOLERANCE)
    assert float(loss) == pytest.approx(float(reference.loss), abs=TOLERANCE)


def test_a_context_prefix_is_masked_out_of_the_loss(whisper):
    """Rows as pipeline.training.data.Collator builds them: a context in the previous-text slot, its
    positions labelled -100. The loss is the HF loss on those inputs, i.e. the mean over target tokens only."""
    from pipeline.training.data import Collator

    rows = [
        {"index": 0, "labels": (NO_TIMESTAMPS, 440, 2068, EOT), "prompt": [PREV, 7, 8, 9]},
        {"index": 1, "labels": (NO_TIMESTAMPS, 11, EOT), "prompt": []},
    ]
    inputs = features(whisper, 2)
    # the collator wants encoder states or audio in each row; the loss below runs the encoder itself
    rows = [{**r, "encoder_hidden_states": torch.zeros(1)} for r in rows]
    batch = Collator(None, decoder_start_id=SOT, pad_id=EOT)(rows)
    labels, decoder_inputs = batch["labels"], batch["decoder_input_ids"]
    loss, logits = project_loss(
        whisper, labels=labels, input_features=inputs, decoder_input_ids=decoder_inputs
    )
    with torch.no_grad():
        reference = whisper(input_features=inputs, decoder_input_ids=decoder_inputs, labels=labels)
    keep = labels != -100
    assert int(keep.sum()) == 7  # the 4 + 3 target tokens; the context and the padding are masked
    assert torch.allclose(logits, reference.logits[keep], atol=TOLERANCE)
    assert float(loss) == pytest.approx(float(reference.loss), abs=TOLERANCE)
    targets_only = torch.nn.functional.cross_entropy(reference.logits[keep], labels[keep])
    assert float(loss) == pytest.approx(float(targets_only), abs=TOLERANCE)
    # had the context counted, the loss would differ: the prefix tokens predicted from their own inputs
    with_context = labels.clone()
    with_context[0, :3] = torch.tensor([7, 8, 9])
    counted = torch.nn.functional.cross_entropy(
        reference.logits[with_context != -100], with_context[with_context != -100]
    )
    assert abs(float(counted) - float(loss)) > 1e-3
