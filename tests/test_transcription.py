"""Batched transcription: one string per input in input order, no prompt in the output, no text in logs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.errors import DictuneError
from pipeline.inference.encoder_states import EncoderStateStore
from pipeline.inference.hf import (
    SAMPLE_RATE,
    Transcriber,
    _strip_prompt_tokens,
    fit_prompt,
    prompt_token_count,
)

MAX_NEW_TOKENS = 4  # keeps the random model's babble short


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.fixture(scope="module")
def transcriber(tiny_whisper_dir):
    return Transcriber(tiny_whisper_dir, batch_size=3, max_new_tokens=MAX_NEW_TOKENS)


def test_one_string_per_input_in_order_for_mixed_lengths(transcriber):
    arrays = [_noise(s, i) for i, s in enumerate((0.4, 3.0, 1.0, 2.2, 0.1))]
    batched = transcriber.transcribe(arrays)
    assert len(batched) == len(arrays) and all(isinstance(t, str) for t in batched)
    singly = [transcriber.transcribe([a])[0] for a in arrays]
    assert batched == singly, "batching (sorted by length, then restored) must not change or reorder results"


def test_order_is_restored_after_sorting_by_length(transcriber, monkeypatch):
    monkeypatch.setattr(transcriber, "_features", lambda arrays: [len(a) for a in arrays])
    from pipeline.inference.engines import Decoded

    def decode(inputs, prompt_ids, with_words):  # each input's "features" are its length
        return [Decoded(str(n), ()) for n in inputs["input_features"]]

    monkeypatch.setattr(transcriber, "_decode_batch", decode)
    arrays = [np.zeros(n, np.float32) for n in (5, 900, 30, 7, 400, 2, 60)]
    assert transcriber.transcribe(arrays) == [str(len(a)) for a in arrays]


def test_prompt_is_not_in_the_output(transcriber):
    prompt = "zebra giraffe pleural effusion " * 8
    texts = transcriber.transcribe([_noise(1.0, 7), _noise(2.0, 8)], prompt=prompt)
    tokenizer = transcriber.processor.tokenizer
    for text in texts:
        assert "zebra" not in text and "giraffe" not in text
        assert len(tokenizer(text, add_special_tokens=False).input_ids) <= MAX_NEW_TOKENS + 1


def test_strip_prompt_tokens_keeps_what_follows_the_last_start_token():
    sot, prev = 50257, 50360
    assert _strip_prompt_tokens([prev, 11, 12, sot, 50362, 21, 22], sot) == [50362, 21, 22]
    assert _strip_prompt_tokens([21, 22], sot) == [21, 22]


def test_fit_prompt_takes_the_longest_prefix_that_fits(transcriber):
    terms = [f"term{i} atelectasis" for i in range(200)]
    text, used = fit_prompt(transcriber.processor, terms, 40)
    assert 0 < used < len(terms)
    assert text == ", ".join(terms[:used])
    assert prompt_token_count(transcriber.processor, text) <= 40
    assert prompt_token_count(transcriber.processor, ", ".join(terms[: used + 1])) > 40
    assert transcriber.fit_prompt(terms)[1] > used  # the model's own limit (223 tokens) is larger


def test_a_prompt_over_the_limit_is_refused(transcriber):
    with pytest.raises(DictuneError, match="limit of 223"):
        transcriber.transcribe([_noise(0.5, 1)], prompt="pleural effusion " * 200)


def test_bad_inputs_are_refused(transcriber):
    with pytest.raises(DictuneError, match="longer than 30 s"):
        transcriber.transcribe([np.zeros(31 * SAMPLE_RATE, np.float32)])
    with pytest.raises(DictuneError, match="mono"):
        transcriber.transcribe([np.zeros((2, 100), np.float32)])


def test_transcripts_are_logged_at_debug_only(transcriber, caplog):
    logger = logging.getLogger("dictune")
    logger.addHandler(caplog.handler)  # the CLI may have turned off propagation earlier in the session
    try:
        caplog.set_level(logging.INFO, logger="dictune")
        texts = transcriber.transcribe([_noise(1.0, 3)])
        assert texts[0] and texts[0] not in caplog.text
        caplog.set_level(logging.DEBUG, logger="dictune")
        transcriber.transcribe([_noise(1.0, 3)])
        assert texts[0] in caplog.text, "the DEBUG line exists, so the INFO check above can fail"
    finally:
        logger.removeHandler(caplog.handler)


@pytest.mark.integration
def test_real_tiny_en_transcribes_plain_sentences(tiny_en_dir, speech_clips):
    from pipeline.metrics import score

    clips = [speech_clips[i] for i in (0, 4, 6)]  # plain, non-medical sentences
    transcriber = Transcriber(tiny_en_dir, batch_size=3)
    hyps = transcriber.transcribe([c.audio for c in clips])
    assert score([c.text for c in clips], hyps).wer.rate < 0.5
    prompted = transcriber.transcribe([c.audio for c in clips], prompt="weather, river, apples, bread")
    assert score([c.text for c in clips], prompted).wer.rate < 0.5
    assert not any(h.lower().startswith("weather, river") for h in prompted)


def test_a_peft_adapter_is_merged_on_load(tiny_whisper_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # non-zero update
    peft_model = get_peft_model(base, lora)
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = peft_model.merge_and_unload().state_dict()
    adapted = Transcriber(tiny_whisper_dir, adapter_dir=tmp_path / "adapter", max_new_tokens=MAX_NEW_TOKENS)
    plain = Transcriber(tiny_whisper_dir, max_new_tokens=MAX_NEW_TOKENS)
    key = "model.decoder.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(adapted.model.state_dict()[key], expected[key])
    assert not torch.allclose(plain.model.state_dict()[key], expected[key])
    assert isinstance(adapted.transcribe([_noise(1.0, 5)])[0], str)


DECODER_ONLY = r".*decoder\.layers\.\d+\.self_attn\.(q_proj|v_proj)"  # a peft target regex


def test_decoding_from_encoder_states_gives_the_transcripts_of_decoding_the_audio(transcriber, monkeypatch):
    arrays = [_noise(s, 10 + i) for i, s in enumerate((0.4, 3.0, 1.0, 2.2, 0.1))]
    states = transcriber.encode(arrays)
    assert states.dtype == np.float32 and states.shape[:2] == (5, 1500)
    np.testing.assert_allclose(states[3], transcriber.encode([arrays[3]])[0], atol=1e-5)  # row i is input i
    for prompt in (None, "pleural effusion, atelectasis"):
        assert transcriber.transcribe(arrays, prompt=prompt, encoder_states=states) == transcriber.transcribe(
            arrays, prompt=prompt
        )
    with pytest.raises(DictuneError, match="2 encoder states for 5 inputs"):
        transcriber.transcribe(arrays, encoder_states=states[:2])
    expected = transcriber.transcribe(arrays)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although its states were given")

    monkeypatch.setattr(transcriber.model.get_encoder(), "forward", no_encoder)
    assert transcriber.transcribe(arrays, encoder_states=states) == expected
    with pytest.raises(AssertionError, match="the encoder ran"):
        transcriber.transcribe(arrays)


def test_the_encoder_key_follows_the_encoder_weights_and_batching(tiny_whisper_dir, tmp_path):
    from lora_adapters import make_lora_adapter

    base = Transcriber(tiny_whisper_dir, batch_size=3)
    decoder_only = Transcriber(
        tiny_whisper_dir, batch_size=3, adapter_dir=make_lora_adapter(tiny_whisper_dir, tmp_path / "d", targets=DECODER_ONLY)
    )
    both = Transcriber(tiny_whisper_dir, batch_size=3, adapter_dir=make_lora_adapter(tiny_whisper_dir, tmp_path / "b"))
    assert (base.encoder_adapted, decoder_only.encoder_adapted, both.encoder_adapted) == (False, False, True)
    assert decoder_only.encoder_key() == base.encoder_key() != both.encoder_key()
    assert Transcriber(tiny_whisper_dir, batch_size=4).encoder_key() != base.encoder_key()
    assert Transcriber(tiny_whisper_dir, batch_size=3, bf16=True).encoder_key() != base.encoder_key()


def test_the_store_shares_the_base_encoder_states_and_prunes_stale_ones(tiny_whisper_dir, tmp_path):
    from lora_adapters import make_lora_adapter

    arrays = [_noise(s, 20 + i) for i, s in enumerate((1.0, 2.5, 0.3))]
    root = tmp_path / "states"
    store = EncoderStateStore(root, tiny_whisper_dir)
    base = Transcriber(tiny_whisper_dir, batch_size=2, max_new_tokens=MAX_NEW_TOKENS)
    first = store.states(base, arrays, "audio-1")
    assert store.encoded == 3 and len(list(root.glob("*.npy"))) == 1
    decoder_only = Transcriber(tiny_whisper_dir, batch_size=2, max_new_tokens=MAX_NEW_TOKENS,
                               adapter_dir=make_lora_adapter(tiny_whisper_dir, tmp_path / "d", targets=DECODER_ONLY))
    again = store.states(decoder_only, arrays, "audio-1")
    assert store.encoded == 3, "the decoder-only adapter reads the base encoder's states"
    np.testing.assert_array_equal(first, again)
    assert decoder_only.transcribe(arrays, encoder_states=again) == decoder_only.transcribe(arrays)
    both = Transcriber(tiny_whisper_dir, batch_size=2, adapter_dir=make_lora_adapter(tiny_whisper_dir, tmp_path / "b"))
    assert store.states(both, arrays, "audio-1") is None, "an adapted encoder is neither read nor stored"
    assert store.encoded == 3 and len(list(root.glob("*.npy"))) == 1

    assert EncoderStateStore(root, tiny_whisper_dir).prune() == 0, "an unused store removes nothing"
    other = EncoderStateStore(root, tiny_whisper_dir)
    other.states(base, arrays[:2], "audio-2")  # another set of clips (a changed test split)
    assert len(list(root.glob("*.npy"))) == 2
    assert other.prune() == 1 and len(list(root.glob("*.npy"))) == 1
