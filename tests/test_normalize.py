"""Normalize: 16 kHz mono audio at the loudness target with edges trimmed, both text forms, rejects,
atomic outputs, the previous-stage choice, and `dictune run` skipping it when nothing changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from audio_signals import EDGE_SECONDS, speech_like, write

from pipeline import audio, cli
from pipeline.config import config_from_dict
from pipeline.files import id_file_name
from pipeline.manifest import read_manifest, read_rejects
from pipeline.runner import STAMP_NAME, run_all
from pipeline.scoring_form import normalize_for_scoring
from pipeline.stages import normalize
from pipeline.text import format_dictation

RATE = 16000
TARGET_LUFS = -20.0


def make_dataset(root: Path) -> tuple[Path, dict[str, dict]]:
    """A JSONL source of items normalize must repair, keep or reject; returns it and id -> expectation."""
    clip = speech_like(3.0, seed=21, level=0.05)
    cases = {
        "plain": (write(root / "plain.wav", clip), "no acute findings period", "keep"),
        "stereo44k": (
            write(
                root / "stereo.flac",
                np.stack([speech_like(3.0, 44100, 22), speech_like(3.0, 44100, 23)], 1),
                44100,
            ),
            "mild effusion period new paragraph impression stable period",
            "keep",
        ),
        "phone8k": (
            write(root / "phone.wav", speech_like(3.0, 8000, 24, 0.5), 8000),
            "C5-C6 level period",
            "keep",
        ),
        "too_long": (
            write(root / "long.wav", np.tile(speech_like(8.0, seed=25), 5)),
            "long report",
            "over segment",
        ),
        "only_command": (write(root / "cmd.wav", clip), "period", "no text left"),
        "vanishes": (write(root / "gone.wav", clip), "deleted after ingest", "audio file not found"),
        "bad/id ../x": (write(root / "odd.wav", clip), "odd id period", "keep"),
    }
    lines = [
        json.dumps({"id": k, "audio_filepath": p.name, "text": t, "speaker": "s1"})
        for k, (p, t, _) in cases.items()
    ]
    manifest = root / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, {k: {"text": t, "expect": e} for k, (_, t, e) in cases.items()}


def write_config(tmp_path: Path, manifest: Path, num_proc: int, **sections) -> Path:
    config = {**sections,
        "name": "t",
        "work_dir": str(tmp_path / "work"),
        "ingest": {"sources": [{"name": "train", "path": str(manifest)}]},
        "normalize": {"num_proc": num_proc, "target_lufs": TARGET_LUFS},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_normalize_end_to_end_through_the_cli(tmp_path):
    fmt, norm = format_dictation, normalize_for_scoring
    manifest, cases = make_dataset(tmp_path / "data")
    config = write_config(tmp_path, manifest, num_proc=2)
    assert cli.main(["ingest", str(config)]) == 0
    (tmp_path / "data" / "gone.wav").unlink()
    assert cli.main(["normalize", str(config)]) == 0
    out = tmp_path / "work" / "normalize"
    records = {r.id: r for r in read_manifest(out / "train.jsonl")}
    rejects = read_rejects(out / "rejects.jsonl")
    assert len(records) + len(rejects) == len(cases)
    for reject in rejects:
        assert cases[reject.id]["expect"] in reject.reason, (reject.id, reject.reason)
        assert reject.source.endswith("ingest/train.jsonl") and reject.stage == "normalize"
    assert set(records) == {k for k, c in cases.items() if c["expect"] == "keep"}
    for key, record in records.items():
        spoken = cases[key]["text"]
        assert record.text == fmt(spoken) and record.text_norm == norm(fmt(spoken))
        assert record.text != spoken and record.text_norm
        assert record.extra["text_spoken"] == spoken and record.speaker == "s1"
        assert (record.extra["sample_rate"], record.extra["channels"]) == (RATE, 1)
        path = Path(record.audio_filepath)
        assert path.parent == (out / "audio" / "train").resolve() and path.is_file()
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
        assert info.duration == pytest.approx(record.duration, abs=1e-3)
        # 0.5 s of silence at each edge is cut to the 0.1 s margin (plus a frame of slack)
        assert 3.0 - 2 * EDGE_SECONDS + 0.1 < record.duration < 3.0 - 2 * EDGE_SECONDS + 0.35
        samples, _ = sf.read(str(path), dtype="float32")
        assert audio.loudness(samples, RATE) == pytest.approx(TARGET_LUFS, abs=0.5)
    assert "\n\n" in records["stereo44k"].text  # "new paragraph" became a paragraph break
    assert "/" not in Path(records["bad/id ../x"].audio_filepath).name
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["train"]  # no temp folder left
    assert not (out / "shards").exists()  # a few seconds of audio: below train.streaming_min_hours


def test_a_streamed_train_split_is_also_written_as_shards(tmp_path):
    from pipeline.training.shards import read_index

    manifest, _ = make_dataset(tmp_path / "data")
    config = write_config(tmp_path, manifest, num_proc=1, train={"streaming": True, "rows_per_shard": 2})
    assert cli.main(["ingest", str(config)]) == 0 and cli.main(["normalize", str(config)]) == 0
    out = tmp_path / "work" / "normalize"
    records = read_manifest(out / "train.jsonl")
    index = read_index(out / "shards" / "train")
    assert index.total_rows == len(records) and len(index.shards) == (len(records) + 1) // 2
    assert index.hours == pytest.approx(sum(r.duration for r in records) / 3600, abs=1e-4)


def test_previous_stage_prefers_segment_only_when_it_ran(tmp_path):
    config = config_from_dict({"name": "t", "work_dir": str(tmp_path)})
    assert normalize.previous_stage(config) == "ingest"
    (tmp_path / "segment").mkdir()
    (tmp_path / "segment" / STAMP_NAME).write_text("{}")
    assert normalize.previous_stage(config) == "segment"


def test_failed_run_leaves_previous_outputs_untouched(tmp_path, monkeypatch):
    manifest, _ = make_dataset(tmp_path / "data")
    config_path = write_config(tmp_path, manifest, num_proc=1)
    assert cli.main(["ingest", str(config_path)]) == 0
    assert cli.main(["normalize", str(config_path)]) == 0
    out = tmp_path / "work" / "normalize"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(fn, items, num_proc, desc, fn_kwargs):
        (Path(fn_kwargs["tmp_dir"]) / "half.wav").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(normalize, "map_items", crash)
    config = config_from_dict(yaml.safe_load(config_path.read_text()))
    with pytest.raises(OSError, match="disk full"):
        normalize.run(config)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_run_skips_both_stages_when_nothing_changed(tmp_path):
    manifest, _ = make_dataset(tmp_path / "data")
    config = config_from_dict(yaml.safe_load(write_config(tmp_path, manifest, num_proc=1).read_text()))
    first = run_all(config, only=("ingest", "normalize"))
    assert not first["ingest"].get("skipped") and first["normalize"]["train"]["kept"] == 5
    second = run_all(config, only=("ingest", "normalize"))
    assert second["ingest"]["skipped"] and second["normalize"]["skipped"]
    manifest.write_text(manifest.read_text().replace("mild effusion", "small effusion"))
    third = run_all(config, only=("ingest", "normalize"))
    assert not third["ingest"].get("skipped") and not third["normalize"].get("skipped")


def test_audio_file_names_are_safe_and_distinct():
    names = [id_file_name(i) for i in ("a1", "a/1", "a_1", "../../etc", "x" * 300, "é")]
    assert names[0] == "a1.wav" and names[2] == "a_1.wav"
    assert len(set(names)) == len(names)
    assert all("/" not in n and not n.startswith(".") and len(n) < 120 for n in names)


def test_reads_segment_pieces_when_segment_ran(tmp_path, capsys):
    manifest, _ = make_dataset(tmp_path / "data")
    config_path = write_config(tmp_path, manifest, num_proc=1)
    assert cli.main(["ingest", str(config_path)]) == 0
    segment_dir = tmp_path / "work" / "segment"
    piece = write(segment_dir / "audio" / "train" / "p__0.wav", speech_like(2.5, seed=26))
    row = {
        "id": "p__0",
        "audio_filepath": str(piece),
        "duration": 2.5,
        "text": "stable period",
        "parent_id": "p",
    }
    (segment_dir / "train.jsonl").write_text(json.dumps(row) + "\n")
    (segment_dir / STAMP_NAME).write_text("{}")
    stamp = segment_dir / STAMP_NAME
    os.utime(stamp, (stamp.stat().st_mtime - 60,) * 2)  # ingest finished after segment: stale pieces
    assert cli.main(["normalize", str(config_path)]) == 0
    [record] = read_manifest(tmp_path / "work" / "normalize" / "train.jsonl")
    assert record.id == "p__0" and record.extra["parent_id"] == "p"
    assert record.text == format_dictation("stable period")
    assert "ingest ran after segment" in capsys.readouterr().err
