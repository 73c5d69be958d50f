"""Ingest: a generated bad-input corpus, every source format, the CLI forms, and what reaches the logs."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from audio_signals import speech_like, write

from pipeline import cli
from pipeline.config import IngestConfig, SegmentConfig, SourceConfig
from pipeline.errors import DictuneError
from pipeline.manifest import read_manifest, read_rejects
from pipeline.stages.ingest import ingest_source

SECRET_WORD = "pneumothoraxzz"  # appears in every transcript: must never reach INFO logs
LONG_SECONDS = 600.0

# line kind -> what must happen: "kept" (possibly repaired) or a substring of the reject reason
EXPECTED = {
    "good": "kept",
    "corrupt": "cannot decode",
    "zero_bytes": "cannot decode",
    "missing": "not found",
    "dotdot_escape": "leaves the dataset root",
    "absolute_escape": "leaves the dataset root",
    "symlink_escape": "leaves the dataset root",
    "non_utf8_text": "not valid UTF-8",
    "empty_text": "empty transcript",
    "silent": "silent audio",
    "nan": "NaN",
    "stereo": "kept",
    "8khz": "kept",
    "ten_minutes": "kept",
    "duplicate_id": "duplicate id",
    "malformed_json": "invalid JSON",
    "missing_text_key": "missing key",
    "text_not_string": "must be a string",
    "lone_surrogate": "not valid UTF-8",
    "good_flac": "kept",
}


def build_bad_corpus(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A NeMo JSONL manifest in tmp_path/dataset whose lines cover EXPECTED; returns it and line -> kind."""
    root = tmp_path / "dataset"
    audio = root / "audio"
    clip = speech_like(2.0, seed=7)
    write(audio / "good.wav", clip)
    write(audio / "good2.flac", speech_like(1.5, seed=8))
    write(audio / "dup.wav", speech_like(1.5, seed=9))
    (audio / "corrupt.wav").write_bytes(b"RIFF" + np.random.default_rng(1).bytes(3000))
    (audio / "zero.wav").write_bytes(b"")
    outside = write(tmp_path / "outside.wav", clip)
    os.symlink(outside, audio / "link.wav")
    write(audio / "silent.wav", np.zeros(16000, np.float32))
    nan = clip.copy()
    nan[5000:5010] = np.nan
    write(audio / "nan.wav", nan, subtype="FLOAT")
    write(audio / "stereo.wav", np.stack([clip, 0.5 * clip], axis=1))
    write(audio / "8k.wav", speech_like(2.0, rate=8000, seed=10), rate=8000)
    write(audio / "long.wav", np.tile(speech_like(10.0, seed=11), int(LONG_SECONDS / 10)))

    def row(kind, path, text=f"no {SECRET_WORD} period", **more):
        return kind, json.dumps({"audio_filepath": path, "text": text, "duration": 1.0, **more}).encode()

    rows = [
        row("good", "audio/good.wav", id="a1", speaker="dr_x", modality="ct"),
        row("corrupt", "audio/corrupt.wav"),
        row("zero_bytes", "audio/zero.wav"),
        row("missing", "audio/missing.wav"),
        row("dotdot_escape", "../outside.wav"),
        row("absolute_escape", str(outside)),
        row("symlink_escape", "audio/link.wav"),
        (
            "non_utf8_text",
            b'{"audio_filepath": "audio/good.wav", "text": "caf\xe9 ' + SECRET_WORD.encode() + b'"}',
        ),
        row("empty_text", "audio/good.wav", text="   ", id="e1"),
        row("silent", "audio/silent.wav"),
        row("nan", "audio/nan.wav"),
        row("stereo", "audio/stereo.wav"),
        row("8khz", "audio/8k.wav"),
        row("ten_minutes", "audio/long.wav"),
        row("duplicate_id", "audio/dup.wav", id="a1"),
        ("malformed_json", b'{"audio_filepath": "audio/good.wav", "text": '),
        ("missing_text_key", json.dumps({"audio_filepath": "audio/good.wav"}).encode()),
        row("text_not_string", "audio/good.wav", text=42),
        row("lone_surrogate", "audio/good.wav", text="bad \ud800 escape"),
        row("good_flac", "audio/good2.flac"),
    ]
    assert {kind for kind, _ in rows} == set(EXPECTED)
    lines, kinds = [], {}
    for kind, raw in rows:
        lines.append(raw)
        kinds[len(lines)] = kind
        if kind == "silent":
            lines.append(b"   ")  # a blank line: not an item, but it shifts the numbers after it
    manifest = root / "train.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    return manifest, kinds


def check_outcome(manifest: Path, kinds: dict[int, str], records, rejects) -> None:
    """Every line is kept or rejected (never both, never neither) exactly as EXPECTED says."""
    kept_lines = [r.extra["source_line"] for r in records]
    rejected = {r.line: r for r in rejects}
    assert len(kept_lines) + len(rejects) == len(kinds)
    assert set(kept_lines) | set(rejected) == set(kinds) and not set(kept_lines) & set(rejected)
    for line, kind in kinds.items():
        if EXPECTED[kind] == "kept":
            assert line in kept_lines, kind
        else:
            assert EXPECTED[kind] in rejected[line].reason, (kind, rejected[line].reason)
            assert rejected[line].source == str(manifest) and rejected[line].stage == "ingest"


def by_kind(records, kinds):
    return {kinds[r.extra["source_line"]]: r for r in records}


def test_bad_corpus_every_item_is_kept_repaired_or_rejected(tmp_path):
    manifest, kinds = build_bad_corpus(tmp_path)
    source = SourceConfig(name="train", path=str(manifest))
    records, rejects = ingest_source(source, IngestConfig(sources=(source,)), SegmentConfig())
    check_outcome(manifest, kinds, records, rejects)
    kept = by_kind(records, kinds)
    assert (
        kept["good"].id == "a1" and kept["good"].speaker == "dr_x" and kept["good"].extra["modality"] == "ct"
    )
    assert kept["good"].duration == pytest.approx(2.0) and Path(kept["good"].audio_filepath).is_absolute()
    assert kept["good"].extra["source"] == "train" and "repairs" not in kept["good"].extra
    assert kept["stereo"].extra["channels"] == 2 and kept["stereo"].extra["repairs"] == ["downmix 2 channels"]
    assert kept["8khz"].extra["sample_rate"] == 8000 and kept["8khz"].extra["repairs"] == ["resample 8000 Hz"]
    long = kept["ten_minutes"]
    assert long.duration == pytest.approx(LONG_SECONDS) and long.extra["needs_segment"] is True
    assert kept["good_flac"].id == "audio/good2"  # no id given: the path inside the root
    assert len({r.id for r in records}) == len(records)


def test_probing_in_small_chunks_gives_the_same_outcome(tmp_path, monkeypatch):
    from pipeline.stages import ingest

    manifest, kinds = build_bad_corpus(tmp_path)
    source = SourceConfig(name="train", path=str(manifest))
    whole = ingest_source(source, IngestConfig(sources=(source,)), SegmentConfig())
    monkeypatch.setattr(ingest, "PROBE_CHUNK", 2)  # duplicates and rejects fall in different chunks
    chunked = ingest_source(source, IngestConfig(sources=(source,)), SegmentConfig())
    check_outcome(manifest, kinds, *chunked)
    assert chunked == whole


def test_bad_corpus_through_the_cli_with_a_config(tmp_path, capsys):
    manifest, kinds = build_bad_corpus(tmp_path)
    config = tmp_path / "c.yaml"
    work = tmp_path / "work"
    sources = [{"name": "train", "path": str(manifest)}]
    config.write_text(yaml.safe_dump({"name": "t", "work_dir": str(work), "ingest": {"sources": sources}}))
    assert cli.main(["ingest", str(config), "ingest.num_proc=2"]) == 0
    records = read_manifest(work / "ingest" / "train.jsonl")
    rejects = read_rejects(work / "ingest" / "rejects.jsonl")
    check_outcome(manifest, kinds, records, rejects)
    logs = capsys.readouterr().err
    assert "ingest train: 5 kept" in logs and "15 rejected" in logs
    assert SECRET_WORD not in logs


def test_config_less_cli_writes_manifest_and_rejects(tmp_path, capsys):
    manifest, kinds = build_bad_corpus(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["ingest", "--source", str(manifest), "--out", str(out)]) == 0
    check_outcome(manifest, kinds, read_manifest(out / "manifest.jsonl"), read_rejects(out / "rejects.jsonl"))
    assert cli.main(["ingest", "--source", str(tmp_path / "nothing.jsonl"), "--out", str(out)]) == 2
    assert "source not found" in capsys.readouterr().err


def test_csv_and_tsv_reject_single_bad_lines(tmp_path):
    write(tmp_path / "a.wav", speech_like(1.5, seed=12))
    write(tmp_path / "b.wav", speech_like(1.5, seed=13))
    (tmp_path / "list.csv").write_bytes(
        b'path,text,speaker\na.wav,"one, two",s1\nb.wav,caf\xe9,s2\nb.wav,three,s3\nonly_two,fields\n'
    )
    (tmp_path / "list.tsv").write_bytes(b"audio_filepath\ttranscript\na.wav\tfour\n\xff\n")
    csv_source = SourceConfig(name="c", path=str(tmp_path / "list.csv"))
    records, rejects = ingest_source(csv_source, IngestConfig(), SegmentConfig())
    assert [(r.text, r.speaker, r.extra["source_line"]) for r in records] == [
        ("one, two", "s1", 2),
        ("three", "s3", 4),
    ]
    assert [(r.line, r.reason.split(" (")[0]) for r in rejects] == [
        (3, "line is not valid UTF-8"),
        (5, "expected 3 fields, got 2"),
    ]
    tsv_source = SourceConfig(name="t", path=str(tmp_path / "list.tsv"))
    records, rejects = ingest_source(tsv_source, IngestConfig(), SegmentConfig())
    assert [r.text for r in records] == ["four"] and [r.line for r in rejects] == [3]


def test_csv_without_usable_header_is_one_clear_error(tmp_path):
    (tmp_path / "list.csv").write_text("file,words\na.wav,x\n")
    source = SourceConfig(name="c", path=str(tmp_path / "list.csv"))
    with pytest.raises(DictuneError, match=r"list.csv:1: header needs an audio column"):
        ingest_source(source, IngestConfig(), SegmentConfig())


def test_audiofolder_is_detected_and_read(tmp_path):
    folder = tmp_path / "hf"
    write(folder / "x.flac", speech_like(1.2, seed=14))
    write(folder / "y.ogg", speech_like(1.2, seed=15))
    (folder / "metadata.csv").write_text("file_name,transcription\nx.flac,first\ny.ogg,second\nz.wav,third\n")
    source = SourceConfig(name="hf", path=str(folder))
    records, rejects = ingest_source(source, IngestConfig(), SegmentConfig())
    assert [(r.id, r.text) for r in records] == [("x", "first"), ("y", "second")]
    assert [(r.line, r.reason) for r in rejects] == [(4, "audio file not found")]


def test_directory_of_audio_with_transcripts(tmp_path):
    folder = tmp_path / "dir"
    write(folder / "r1.wav", speech_like(1.2, seed=16))
    (folder / "r1.txt").write_text("report one\n")
    write(folder / "sub" / "r2.flac", speech_like(1.2, seed=17))
    (folder / "sub" / "r2.txt").write_text("report two")
    write(folder / "r3.wav", speech_like(1.2, seed=18))  # no transcript
    write(folder / "r4.wav", speech_like(1.2, seed=19))
    (folder / "r4.txt").write_bytes(b"bad \xff byte")
    (folder / "orphan.txt").write_text("no audio")
    source = SourceConfig(name="d", path=str(folder))
    records, rejects = ingest_source(source, IngestConfig(), SegmentConfig())
    assert [(r.id, r.text) for r in records] == [("r1", "report one"), ("sub/r2", "report two")]
    reasons = {Path(r.source).name: r.reason for r in rejects}
    assert set(reasons) == {"orphan.txt", "r3.wav", "r4.txt"}
    assert "not valid UTF-8" in reasons["r4.txt"] and "no transcript" in reasons["r3.wav"]


def test_root_option_allows_audio_beside_the_manifest_folder(tmp_path):
    write(tmp_path / "audio" / "a.wav", speech_like(1.2, seed=20))
    (tmp_path / "manifests").mkdir()
    manifest = tmp_path / "manifests" / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "../audio/a.wav", "text": "hi"}) + "\n")
    plain = SourceConfig(name="m", path=str(manifest))
    assert "leaves the dataset root" in ingest_source(plain, IngestConfig(), SegmentConfig())[1][0].reason
    rooted = SourceConfig(name="m", path=str(manifest), root=str(tmp_path))
    records, rejects = ingest_source(rooted, IngestConfig(), SegmentConfig())
    assert [r.id for r in records] == ["audio/a"] and not rejects


def test_gzipped_jsonl_is_read(tmp_path):
    write(tmp_path / "a.wav", speech_like(1.5, seed=27))
    manifest = tmp_path / "m.jsonl.gz"
    with gzip.open(manifest, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"audio_filepath": "a.wav", "text": "gz", "id": "g1"}) + "\n")
    source = SourceConfig(name="g", path=str(manifest))
    records, rejects = ingest_source(source, IngestConfig(), SegmentConfig())
    assert [(r.id, r.text) for r in records] == [("g1", "gz")] and not rejects


def test_replacing_audio_under_an_unchanged_manifest_reruns_ingest(tmp_path):
    from pipeline import runner
    from pipeline.config import config_from_dict

    write(tmp_path / "a.wav", speech_like(1.2, seed=30))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "text": "hi", "id": "a"}) + "\n")
    config = config_from_dict({"name": "t", "work_dir": str(tmp_path / "work"),
                               "ingest": {"sources": [{"name": "m", "path": str(manifest)}]}})  # fmt: skip
    assert not runner.run_stage(config, "ingest", force=False).get("skipped")
    assert runner.run_stage(config, "ingest", force=False).get("skipped"), "nothing changed: skipped"
    write(tmp_path / "a.wav", speech_like(2.5, seed=31))  # same name, new recording
    assert not runner.run_stage(config, "ingest", force=False).get("skipped"), "new audio: ingest reruns"
    assert read_manifest(tmp_path / "work" / "ingest" / "m.jsonl")[0].duration == pytest.approx(2.5, abs=0.01)
