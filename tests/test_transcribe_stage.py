"""The transcribe stage of `dictune run`: transcribe.inputs with the adapted (or base) model."""

import json

from audio_signals import speech_like, write

from pipeline import runner
from pipeline.config import config_from_dict


def make_config(tmp_path, model_dir, inputs):
    return config_from_dict(
        {
            "name": "t",
            "work_dir": str(tmp_path / "work"),
            "model": {"base": str(model_dir)},
            "transcribe": {"inputs": inputs, "engine": "hf", "formats": ["txt", "json"], "max_new_tokens": 8},
        }
    )


def test_stage_transcribes_inputs_with_base_when_untrained_and_skips_when_unchanged(tmp_path, tiny_whisper_dir):
    good = write(tmp_path / "report.wav", speech_like(3.0))
    (tmp_path / "empty.wav").write_bytes(b"")
    config = make_config(tmp_path, tiny_whisper_dir, [str(good), str(tmp_path / "empty.wav")])
    summary = runner.run_stage(config, "transcribe", force=False)
    out = config.stage_dir("transcribe")
    assert summary["model"] == "base"
    assert (summary["files"], summary["transcribed"], summary["failed"]) == (2, 1, 1)
    assert (out / "report.txt").exists()
    assert json.loads((out / "report.json").read_text())["segments"] is not None
    assert runner.run_stage(config, "transcribe", force=False)["skipped"] is True


def test_stage_with_no_inputs_does_nothing(tmp_path, tiny_whisper_dir):
    config = make_config(tmp_path, tiny_whisper_dir, [])
    assert runner.run_stage(config, "transcribe")["files"] == 0
