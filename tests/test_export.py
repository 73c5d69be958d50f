"""`dictune export`: merged Hugging Face dirs and CTranslate2 dirs, on the tiny random Whisper + a random LoRA."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lora_adapters import make_lora_adapter, make_other_whisper

from pipeline.cli import main

LOGITS_ATOL = 1e-4  # merged vs adapter-on-base, float32
ENCODER_RTOL = 1e-4  # CT2 float32 vs transformers: max abs difference / max abs value
DECODER_IDS = [50257, 50362, 220, 1169, 3139]  # <|startoftranscript|> <|notimestamps|> and three text tokens


@pytest.fixture(scope="module")
def adapter_dir(tiny_whisper_dir, tmp_path_factory):
    return make_lora_adapter(tiny_whisper_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 80, 3000)).astype(np.float32) * 0.5


@pytest.fixture(scope="module")
def merged_dir(tiny_whisper_dir, adapter_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "merged"
    assert main(["export", "--model", str(tiny_whisper_dir), "--adapter", str(adapter_dir),
                 "--format", "merged", "--out", str(out)]) == 0  # fmt: skip
    return out


def _logits(model, features):
    import torch

    with torch.no_grad():
        ids = torch.tensor([DECODER_IDS] * len(features))
        return model(input_features=torch.from_numpy(features), decoder_input_ids=ids).logits.numpy()


def test_merged_equals_adapter_on_base(tiny_whisper_dir, adapter_dir, merged_dir, features):
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    merged = WhisperForConditionalGeneration.from_pretrained(merged_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    base_logits = _logits(base, features)
    with_adapter = PeftModel.from_pretrained(base, adapter_dir).eval()
    expected = _logits(with_adapter, features)
    got = _logits(merged, features)
    assert np.abs(expected - base_logits).max() > 100 * LOGITS_ATOL  # the adapter changes the model
    np.testing.assert_allclose(got, expected, atol=LOGITS_ATOL, rtol=0)
    # the processor and generation config travel along
    processor = WhisperProcessor.from_pretrained(merged_dir)
    assert processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>") == 50362
    assert merged.generation_config.no_timestamps_token_id == base.generation_config.no_timestamps_token_id
    record = json.loads((merged_dir / "dictune_export.json").read_text())
    assert record["format"] == "merged" and record["adapter"] == str(adapter_dir)


def test_ct2_export_matches_merged_model(tiny_whisper_dir, adapter_dir, merged_dir, features, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch
    from faster_whisper import WhisperModel
    from transformers import WhisperForConditionalGeneration

    out = tmp_path / "ct2"
    assert main(["export", "--model", str(tiny_whisper_dir), "--adapter", str(adapter_dir), "--format", "ct2",
                 "--quantization", "float32", "--out", str(out)]) == 0  # fmt: skip
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (out / name).is_file(), name
    ct2 = ctranslate2.models.Whisper(str(out), device="cpu", compute_type="float32", intra_threads=1)
    encoded = np.array(ct2.encode(ctranslate2.StorageView.from_array(features)))
    merged = WhisperForConditionalGeneration.from_pretrained(merged_dir).eval()
    with torch.no_grad():
        expected = merged.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    relative = float(np.abs(encoded - expected).max() / np.abs(expected).max())
    assert relative < ENCODER_RTOL
    fw = WhisperModel(str(out), device="cpu", compute_type="int8", cpu_threads=1)
    assert fw.feature_extractor.n_fft == 400 and fw.model.n_mels == 80


def test_mismatched_adapter_is_refused_and_nothing_written(tiny_whisper_dir, tmp_path, capsys):
    other = make_other_whisper(tiny_whisper_dir, tmp_path / "other")
    adapter = make_lora_adapter(other, tmp_path / "other_adapter")
    out = tmp_path / "merged"
    capsys.readouterr()  # drop the helpers' progress bars
    code = main(["export", "--model", str(tiny_whisper_dir), "--adapter", str(adapter), "--format", "merged",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "does not match the base model" in err[0] and str(adapter) in err[0]
    assert "32x32" in err[0] and "64x64" in err[0]  # says what differs
    assert not out.exists()


def test_not_an_adapter(tiny_whisper_dir, tmp_path, capsys):
    code = main(["export", "--model", str(tiny_whisper_dir), "--adapter", str(tmp_path), "--format", "ct2",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "not a peft adapter directory" in err and not (tmp_path / "out").exists()


def test_merged_needs_an_adapter(tiny_whisper_dir, tmp_path, capsys):
    code = main(
        ["export", "--model", str(tiny_whisper_dir), "--format", "merged", "--out", str(tmp_path / "m")]
    )
    assert code == 2 and "--adapter" in capsys.readouterr().err
