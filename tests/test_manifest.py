import gzip
import json

import pytest

from pipeline.manifest import (
    ManifestError,
    Record,
    Reject,
    iter_jsonl,
    read_manifest,
    read_rejects,
    resolve_audio_path,
    write_manifest,
    write_rejects,
)


def make_record(i: int, **kw) -> Record:
    return Record(id=f"u{i}", audio_filepath=f"audio/u{i}.wav", duration=1.5 + i, text=f"text {i}", **kw)


@pytest.mark.parametrize("name", ["m.jsonl", "m.jsonl.gz"])
def test_round_trip_keeps_extra_keys(tmp_path, name):
    records = [make_record(0, speaker="joe", extra={"voice": "joe", "offset": 0.0}), make_record(1)]
    assert write_manifest(tmp_path / name, records) == 2
    assert read_manifest(tmp_path / name) == records
    if name.endswith(".gz"):
        with gzip.open(tmp_path / name, "rt") as handle:
            assert json.loads(handle.readline())["voice"] == "joe"


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(make_record(0).to_dict()) + "\n\n{not json\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:3: invalid JSON"):
        read_manifest(path)
    path.write_text('{"id": "a", "text": "x"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:1: not a manifest record"):
        read_manifest(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:1: expected a JSON object"):
        list(iter_jsonl(path))
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_rejects_round_trip_and_str(tmp_path):
    rejects = [Reject(source="in.jsonl", line=4, reason="silent audio", stage="ingest", id="u4")]
    write_rejects(tmp_path / "rejects.jsonl", rejects)
    assert read_rejects(tmp_path / "rejects.jsonl") == rejects
    assert str(rejects[0]) == "in.jsonl:4: silent audio"


def test_relative_audio_resolves_against_manifest_dir(tmp_path):
    record = make_record(3)
    assert resolve_audio_path(record, tmp_path / "m.jsonl") == (tmp_path / "audio" / "u3.wav").resolve()
    absolute = record.replace(audio_filepath="/data/x.wav")
    assert str(resolve_audio_path(absolute, tmp_path / "m.jsonl")) == "/data/x.wav"
