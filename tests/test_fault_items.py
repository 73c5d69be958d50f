"""The smaller faults of issue 20, each reproduced: a full disk during transcribe, a manifest with bad
lines, a truncated WAV, tracebacks instead of one-line errors, 1e-4 read as a string by YAML, overrides
after options, stale reports of a previous transcribe.inputs."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from audio_signals import speech_like, write
from test_faults import _errors, _FullDisk
from test_transcribe import FakeEngine

from pipeline import cli, files, manifest, runner
from pipeline.config import TranscribeConfig, config_from_dict, load_config
from pipeline.errors import ConfigError
from pipeline.faults import EnvironmentFailure
from pipeline.inference import engines
from pipeline.inference.batch import transcribe_files
from pipeline.runner import STAMP_NAME

SPOKEN = "the lungs are clear period"
SEQUENTIAL = TranscribeConfig(long_form="sequential", formats=("txt", "json"))  # no VAD: fast and exact


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setattr(engines, "load_engine", lambda *args, **kwargs: FakeEngine(SPOKEN))


def _clips(folder: Path, n: int) -> list[str]:
    return [str(write(folder / f"r{i}.wav", speech_like(1.0 + 0.1 * i, seed=i))) for i in range(n)]


def _stage_config(tmp_path: Path, model_dir: Path, inputs: list[str]):
    return config_from_dict(
        {"name": "t", "work_dir": str(tmp_path / "work"), "model": {"base": str(model_dir)},
         "transcribe": {"inputs": inputs, "long_form": "sequential", "formats": ["txt", "json"]}}
    )  # fmt: skip


def _reports(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != STAMP_NAME}


# ---------------------------------------------------------------------------------------------- item 4


def test_full_disk_during_the_transcribe_stage_keeps_the_previous_reports(
    tiny_whisper_dir, fake_engine, tmp_path, monkeypatch
):
    config = _stage_config(tmp_path, tiny_whisper_dir, _clips(tmp_path, 3))
    out = config.stage_dir("transcribe")
    runner.run_stage(config, "transcribe")
    before = _reports(out)
    assert {"r0.txt", "r2.json", "rejects.jsonl"} <= before.keys()
    with monkeypatch.context() as patch, pytest.raises(EnvironmentFailure) as failure:
        _FullDisk(patch, "files", 3)  # the second file's json
        runner.run_stage(config, "transcribe")
    message = str(failure.value)
    assert "\n" not in message and "transcribe: stopped: no space left on device" in message
    assert not (out / STAMP_NAME).exists()
    assert _reports(out) == before, "the previous reports are intact"
    assert not [p for p in out.parent.iterdir() if p.name.endswith((".tmp", ".old"))]
    runner.run_stage(config, "transcribe")
    assert _reports(out) == before and (out / STAMP_NAME).is_file()


def test_full_disk_during_dictune_transcribe_still_writes_the_rejects(tmp_path, monkeypatch):
    inputs = [str(tmp_path / "missing.wav"), *_clips(tmp_path, 3)]
    out = tmp_path / "out"
    real_open = files.atomic_open

    def atomic_open(path, *args, **kwargs):  # the big JSON of the second file does not fit, a small file does
        if Path(path).name == "r1.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(EnvironmentFailure, match="1 rejected listed in"):
        patch.setattr(files, "atomic_open", atomic_open)
        patch.setattr(manifest, "atomic_open", atomic_open)
        transcribe_files(inputs, out, "fake", options=SEQUENTIAL, engine=FakeEngine(SPOKEN))
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["audio_filepath"] for r in rejects] == [inputs[0]]
    assert (out / "r0.txt").is_file() and (out / "r0.json").is_file(), "what was done stays"
    assert not (out / "r1.json").exists() and not (out / "r2.txt").exists()


# ---------------------------------------------------------------------------------------------- item 5


def test_a_manifest_with_bad_lines_keeps_its_good_lines(tmp_path):
    clips = _clips(tmp_path, 2)
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(
        json.dumps({"id": "a", "audio_filepath": clips[0]}).encode() + b"\n"
        + b'{"id": "broken", "audio_filepath": \n'
        + b'{"id": "latin1", "text": "r\xe9sum\xe9"}\n'
        + json.dumps({"id": "b", "audio_filepath": clips[1]}).encode() + b"\n"
    )  # fmt: skip
    summary = transcribe_files([str(manifest)], tmp_path / "out", "fake", options=SEQUENTIAL,
                               engine=FakeEngine(SPOKEN))  # fmt: skip
    assert (summary.files, summary.transcribed, summary.failed) == (4, 2, 2)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(": ", 1)[1]) for r in rejects] == [
        (2, "invalid JSON (Expecting value)"),
        (3, "not UTF-8 text (byte 0xe9 at column 28)"),
    ]
    assert all(r["reason"].startswith(f"{manifest}:") for r in rejects)


# ---------------------------------------------------------------------------------------------- item 6


def test_a_truncated_wav_is_rejected_by_ingest(tmp_path):
    whole = write(tmp_path / "data" / "whole.wav", speech_like(6.05, seed=1))
    cut = tmp_path / "data" / "cut.wav"
    data = whole.read_bytes()
    cut.write_bytes(data[: 44 + (len(data) - 44) // 2])  # a copy interrupted half way
    rows = [{"audio_filepath": "whole.wav", "text": "one"}, {"audio_filepath": "cut.wav", "text": "two"}]
    source = tmp_path / "data" / "m.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["ingest", "--source", str(source), "--out", str(tmp_path / "out")]) == 0
    kept = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == ["whole"]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "truncated: the header promises 6.05 s, the file holds 3.02 s")
    ]


# ---------------------------------------------------------------------------------------------- item 7


def test_one_line_errors_instead_of_tracebacks(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"name: r\xe9sum\xe9\n")
    capsys.readouterr()
    assert cli.main(["run", str(config)]) == 2
    err = _errors(capsys.readouterr())
    assert err == [f"dictune: error: {config}: not UTF-8 text (byte 8); save the file as UTF-8"]

    (tmp_path / "taken").write_text("a file\n")
    source = tmp_path / "m.jsonl"
    source.write_text("")
    assert cli.main(["ingest", "--source", str(source), "--out", str(tmp_path / "taken")]) == 2
    err = _errors(capsys.readouterr())
    assert len(err) == 1 and "is a file; give a folder" in err[0]


@pytest.mark.parametrize("engine", ["hf", "ct2"])
def test_a_pickled_adapter_is_refused_in_one_line(engine, tiny_whisper_dir, tmp_path, capsys):
    import functools

    import torch
    from lora_adapters import make_lora_adapter
    from safetensors.torch import load_file

    adapter = make_lora_adapter(tiny_whisper_dir, tmp_path / "adapter")
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_model.safetensors").unlink()
    torch.save({**weights, "hook": functools.partial(print)}, adapter / "adapter_model.bin")  # not plain tensors
    clip = write(tmp_path / "r.wav", speech_like(1.0))
    capsys.readouterr()
    code = cli.main(["transcribe", "--model", str(tiny_whisper_dir), "--adapter", str(adapter), "--engine", engine,
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), str(clip)])  # fmt: skip
    err = _errors(capsys.readouterr())
    assert code == 2 and len(err) == 1 and "refused: a pickle holding more than plain tensors" in err[0]
    assert "weights_only" not in err[0]


def test_an_unexpected_error_is_one_line_with_a_log(tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(f"name: t\nwork_dir: {tmp_path / 'work'}\n")
    monkeypatch.setenv("DICTUNE_CACHE", str(tmp_path / "cache"))

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runner, "run_all", boom)
    capsys.readouterr()
    assert cli.main(["run", str(config)]) == 1
    err = _errors(capsys.readouterr())
    assert len(err) == 1 and err[0].startswith("dictune: error: unexpected RuntimeError: boom (traceback in ")
    log = Path(err[0].split("traceback in ")[1].rstrip(")"))
    assert log.parent == tmp_path / "cache" / "logs" and "Traceback" in log.read_text()
    assert cli.main(["run", str(config), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_an_environment_error_is_exit_status_1():
    assert EnvironmentFailure("x").exit_status == 1
    assert OSError(errno.ENOSPC, "x").errno == errno.ENOSPC


# ---------------------------------------------------------------------------------------------- items 8, 9


def test_a_float_written_without_a_dot_is_a_float(tmp_path):
    assert config_from_dict({"name": "t", "train": {"learning_rate": "1e-4"}}).train.learning_rate == 1e-4
    path = tmp_path / "c.yaml"
    path.write_text("name: t\ntrain:\n  learning_rate: 1e-4\n")
    assert load_config(path).train.learning_rate == 1e-4
    assert load_config(path, ["train.warmup_steps=5", "normalize.target_lufs=-2e1"]).normalize.target_lufs == -20.0
    with pytest.raises(ConfigError, match="train.learning_rate: expected float, got 'fast'"):
        config_from_dict({"name": "t", "train": {"learning_rate": "fast"}})
    with pytest.raises(ConfigError, match="expected float"):
        config_from_dict({"name": "t", "train": {"learning_rate": "inf"}})


def test_overrides_and_debug_are_accepted_after_options():
    parser = cli.build_parser()
    args = cli._parse(parser, ["run", "c.yaml", "a.b=1", "--force", "normalize", "train.max_steps=5",
                               "--only", "train", "seed=3", "--debug"])  # fmt: skip
    assert args.overrides == ["a.b=1", "train.max_steps=5", "seed=3"]
    assert (args.force, args.only, args.debug) == (["normalize"], ["train"], True)
    with pytest.raises(SystemExit):
        cli._parse(parser, ["run", "c.yaml", "--only", "train", "stray"])


# ---------------------------------------------------------------------------------------------- item 10


def test_a_new_input_list_replaces_the_previous_reports(tiny_whisper_dir, fake_engine, tmp_path):
    clips = _clips(tmp_path, 2)
    runner.run_stage(_stage_config(tmp_path, tiny_whisper_dir, clips), "transcribe", force=False)
    config = _stage_config(tmp_path, tiny_whisper_dir, clips[:1])
    runner.run_stage(config, "transcribe", force=False)
    assert sorted(_reports(config.stage_dir("transcribe"))) == ["r0.json", "r0.txt", "rejects.jsonl"]
    assert os.path.isfile(config.stage_dir("transcribe") / STAMP_NAME)


# ---------------------------------------------------------------------------------------------- item 11


def test_a_long_multichannel_file_is_decoded_in_blocks_like_whole(tmp_path, monkeypatch):
    import numpy as np

    from pipeline import audio

    rng = np.random.default_rng(5)
    t = np.arange(48000 * 3) / 48000
    channels = np.stack([0.3 * np.sin(2 * np.pi * (200 + 50 * c) * t) for c in range(6)], axis=1)
    path = write(tmp_path / "six.wav", (channels + 0.01 * rng.standard_normal(channels.shape)).astype(np.float32),
                 rate=48000, subtype="FLOAT")  # fmt: skip
    whole = audio.load_mono(path)
    calls = []
    real = audio._load_mono_blocks
    monkeypatch.setattr(audio, "_load_mono_blocks", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(audio, "WHOLE_DECODE_SAMPLES", 48000)
    monkeypatch.setattr(audio, "PROBE_BLOCK_FRAMES", 10000)  # 15 blocks
    blocks = audio.load_mono(path)
    assert calls and len(blocks) == len(whole) == 16000 * 3
    assert np.max(np.abs(blocks - whole)) < 1e-3
    sliced = audio.load_mono(path, offset=1.0, duration=1.5)
    assert len(sliced) == 24000 and np.max(np.abs(sliced - whole[16000:40000])) < 1e-2
