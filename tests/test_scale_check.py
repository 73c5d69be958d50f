"""scripts/scale_check.py: the generated manifest and the encoder-cache table (no ingest, no training)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import soundfile

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "scale_check.py"
spec = importlib.util.spec_from_file_location("scale_check", SCRIPT)
scale_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_check)


def test_manifest_of_100_lines_cycles_over_clips_and_sentences(tmp_path):
    texts = scale_check.sentences()
    assert len(texts) == 550 and all(text for _, text in texts)
    clips = scale_check.make_clips(tmp_path / "clips", 3, texts, engine=None)  # synthetic speech-like
    for name in clips:
        wave, rate = soundfile.read(tmp_path / name, dtype="float32")
        assert rate == 16000 and wave.shape == (160_000,) and float((wave**2).mean()) ** 0.5 > 0.01
    scale_check.write_manifest(tmp_path / "m.jsonl", 100, clips, texts)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 100 and len({r["id"] for r in rows}) == 100
    assert [r["audio_filepath"] for r in rows[:4]] == [*clips, clips[0]]
    assert rows[0]["text"] == texts[0][1] and rows[0]["modality"] == texts[0][0]


def test_cache_table_modes():
    table = {(r["model"], r["hours"], r["device"]): r for r in scale_check.cache_table(free=10**13)}
    assert len(table) == 12
    assert table["tiny.en", 10, "cpu"]["mode"] == "in memory, cached on disk"
    assert table["tiny.en", 10, "cpu"]["cache_gb"] == 4.1
    assert table["tiny.en", 10, "gpu"]["mode"] == "in memory, encoded on the fly"
    assert table["tiny.en", 1000, "cpu"]["mode"] == "streamed, encoded on the fly"
    assert "over the disk budget" in table["large-v3-turbo", 100, "cpu"]["plan"]
