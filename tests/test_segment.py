"""The segment stage: short items pass through, long ones are cut at pauses with exact text slices,
disagreeing pieces and uncuttable items are rejected with their reason."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import alignment as al
from pipeline.config import config_from_dict
from pipeline.manifest import iter_jsonl, read_manifest, read_rejects, write_jsonl
from pipeline.speech_timing import TransformersTimer, load_word_timer
from pipeline.stages import segment

SAMPLE_RATE = 16000
ROOT = Path(__file__).resolve().parents[1]


def make_config(tmp_path, **segment_options):
    return config_from_dict(
        {
            "name": "t",
            "work_dir": str(tmp_path / "work"),
            "threads": 1,
            "ingest": {"sources": [{"name": "long", "path": "unused.jsonl"}]},
            "segment": segment_options,
        }
    )


def write_ingest(config, rows):
    write_jsonl(config.stage_dir("ingest") / "long.jsonl", rows)


def wav(path: Path, seconds: float) -> str:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return str(path.resolve())


def plan_rows(config):
    return [row for _, row in iter_jsonl(config.stage_dir("segment") / segment.PLAN_NAME)]


# ---------------------------------------------------------------------------------------------- no model


def test_short_items_pass_through_unchanged(tmp_path):
    config = make_config(tmp_path)
    rows = [
        {
            "id": f"s{i}",
            "audio_filepath": wav(tmp_path / f"s{i}.wav", 2.0),
            "duration": 2.0,
            "text": "Hi.",
            "k": i,
        }
        for i in range(3)
    ]
    write_ingest(config, rows)
    summary = segment.run(config)
    out = config.stage_dir("segment")
    assert [r.to_dict() for r in read_manifest(out / "long.jsonl")] == rows
    assert summary["long"]["passed_through"] == 3 and summary["long"]["cut_items"] == 0
    assert not list((out / "audio" / "long").iterdir())
    assert read_rejects(out / "rejects.jsonl") == []


SPOKEN = "the heart is normal in size period the lungs are clear period no pleural effusion period"
REFERENCE = "The heart is normal in size. The lungs are clear. No pleural effusion."


def fake_words(spoken: str, starts: list[float], step: float = 0.5) -> list[al.HypWord]:
    """Words spoken in groups (one group per start time), one every `step` seconds."""
    groups = [g.strip().split() for g in spoken.split("|")]
    return [
        al.HypWord(w, t + i * step, t + i * step + 0.4)
        for g, t in zip(groups, starts)
        for i, w in enumerate(g)
    ]


@pytest.fixture
def fake_long_item(tmp_path, monkeypatch):
    """A 40 s item in three speech regions (0.5-4, 14-17, 27-31 s) with a fake base model."""
    regions = [(0.5, 4.0), (14.0, 17.0), (27.0, 31.0)]
    monkeypatch.setattr(segment, "speech_regions", lambda samples, options: regions)
    heard = {"words": []}
    monkeypatch.setattr(segment, "load_word_timer", lambda *a, **k: lambda samples: heard["words"])
    path = wav(tmp_path / "long.wav", 40.0)
    return path, heard


def run_fake(tmp_path, path, text, max_seconds=15.0, **options):
    config = make_config(tmp_path, max_seconds=max_seconds, **options)
    write_ingest(config, [{"id": "rep", "audio_filepath": path, "duration": 40.0, "text": text}])
    segment.run(config)
    out = config.stage_dir("segment")
    return config, read_manifest(out / "long.jsonl"), read_rejects(out / "rejects.jsonl")


def test_pieces_are_exact_slices_with_their_own_audio(tmp_path, fake_long_item):
    path, heard = fake_long_item
    spoken = "the heart is normal in size period | the lungs are clear period | no pleural effusion period"
    heard["words"] = fake_words(spoken, [0.5, 14.0, 27.0], step=0.45)
    config, records, rejects = run_fake(tmp_path, path, REFERENCE)
    assert rejects == []
    assert [r.text for r in records] == [
        "The heart is normal in size.",
        "The lungs are clear.",
        "No pleural effusion.",
    ]
    for k, record in enumerate(records):
        assert record.id == f"rep__{k}"
        assert record.extra["parent_id"] == "rep" and record.extra["segment_index"] == k
        assert record.extra["alignment_wer"] == 0.0
        assert record.duration <= 15.0
        info = sf.info(record.audio_filepath)
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        assert info.duration == pytest.approx(record.extra["end"] - record.extra["start"], abs=1e-3)
        assert (
            Path(record.audio_filepath).parent == (config.stage_dir("segment") / "audio" / "long").resolve()
        )


def test_a_final_report_keeps_only_what_was_said_and_lists_the_rest(tmp_path, fake_long_item):
    """segment.verify_sources: a template sentence nobody said is dropped with its reason, the pieces are
    still exact slices with their own audio, and each records the item's verified share."""
    path, heard = fake_long_item
    spoken = "the heart is normal in size period | the lungs are clear period | no pleural effusion period"
    heard["words"] = fake_words(spoken, [0.5, 14.0, 27.0], step=0.45)
    report = REFERENCE + " Comparison is made with the prior examination from last year."
    config, records, rejects = run_fake(tmp_path, path, report, verify_sources=["long"])
    kept = " ".join(r.text for r in records)
    assert "The lungs are clear." in kept and "Comparison" not in kept, [r.reason for r in rejects]
    assert all(r.extra["verified_share"] == pytest.approx(13 / 23, abs=1e-4) for r in records)
    assert [r.id for r in rejects] == ["rep"] and "sentence 4/4" in rejects[0].reason
    for record in records:
        info = sf.info(record.audio_filepath)
        assert info.duration == pytest.approx(record.extra["end"] - record.extra["start"], abs=1e-3)
    rows = [r for r in plan_rows(config) if r.get("kept")]
    assert rows and all(r["verified_share"] == pytest.approx(13 / 23, abs=1e-4) for r in rows)


def test_piece_whose_hypothesis_disagrees_is_rejected_with_its_numbers(tmp_path, fake_long_item):
    path, heard = fake_long_item
    spoken = "the heart is normal in size period | a window opens onto gardens | no pleural effusion period"
    heard["words"] = fake_words(spoken, [0.5, 14.0, 27.0], step=0.45)
    config, records, rejects = run_fake(tmp_path, path, REFERENCE)
    assert [r.extra["segment_index"] for r in records] == [0, 2]
    (reject,) = rejects
    assert reject.id == "rep__1" and reject.line == 1 and reject.stage == "segment"
    assert "WER" in reject.reason and "segment.max_segment_wer" in reject.reason and "2/3" in reject.reason
    rows = plan_rows(config)  # kept and rejected pieces still tile the transcript
    assert [r["ref_tokens"] for r in rows] == [[0, 6], [6, 10], [10, 13]]
    assert [r["kept"] for r in rows] == [True, False, True]


def test_item_without_a_pause_to_cut_at_is_rejected_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(segment, "speech_regions", lambda samples, options: [(0.2, 39.8)])
    monkeypatch.setattr(
        segment, "load_word_timer", lambda *a, **k: lambda s: fake_words(SPOKEN, [0.5], step=2.0)
    )
    path = wav(tmp_path / "long.wav", 40.0)
    _, records, rejects = run_fake(tmp_path, path, REFERENCE)
    assert records == []
    (reject,) = rejects
    assert reject.id == "rep" and reject.reason.startswith("no pause to cut at")


def test_item_whose_transcript_does_not_match_is_rejected_whole(tmp_path, fake_long_item):
    path, heard = fake_long_item
    heard["words"] = fake_words("a window opens | onto quiet gardens | in the evening", [0.5, 14.0, 27.0])
    _, records, rejects = run_fake(tmp_path, path, REFERENCE)
    assert records == []
    (reject,) = rejects
    assert reject.reason.startswith("alignment failed") and "segment.min_matched_fraction" in reject.reason


def test_undecodable_audio_is_rejected_not_crashed(tmp_path, fake_long_item):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    _, records, rejects = run_fake(tmp_path, str(bad), REFERENCE)
    assert records == [] and "cannot decode" in rejects[0].reason


def test_missing_ingest_manifest_names_the_fix(tmp_path):
    with pytest.raises(segment.DictuneError, match="dictune ingest"):
        segment.run(make_config(tmp_path))


# ---------------------------------------------------------------------------------------------- real tiny.en


def _check_module():
    spec = importlib.util.spec_from_file_location(
        "check_segmentation", ROOT / "scripts" / "check_segmentation.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
@pytest.mark.slow
def test_real_long_dictations_are_cut_within_limits_with_words_in_place(tmp_path):
    """Two ~33 s files concatenated from flite clips with 0.3-1.0 s pauses; a third with a wrong transcript."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed: apt-get install -y flite")
    from pipeline.models import builtin_ct2_dir
    from pipeline.scoring_form import normalize_for_scoring
    from pipeline.tts.corpus import read_corpus

    check = _check_module()
    reports = sorted(read_corpus(check.CORPUS_DIR).reports, key=lambda r: r.id)
    rows, truth = [], {}
    for i, (report, voice) in enumerate(zip(reports[:2], ("flite:slt", "flite:rms"))):
        fragments = check.phrases(report.text)[:8]
        wav_path = tmp_path / f"c{i}.wav"
        reference, clips, seconds = check.build_concat_item(fragments, voice, 7 + i, wav_path)
        assert seconds > 31.0
        rows.append({"id": f"c{i}", "audio_filepath": str(wav_path), "duration": seconds, "text": reference})
        truth[f"c{i}"] = clips
    rows.append({**rows[0], "id": "wrong", "text": rows[1]["text"]})
    config = config_from_dict(
        {
            "name": "t",
            "work_dir": str(tmp_path / "work"),
            "threads": 1,
            "model": {"base": str(builtin_ct2_dir("tiny.en"))},
            "ingest": {"sources": [{"name": "long", "path": "unused.jsonl"}]},
            "segment": {"max_segment_wer": 1.0},  # keep every piece: this test is about the cuts
        }
    )
    write_ingest(config, rows)
    segment.run(config)
    out = config.stage_dir("segment")
    records = read_manifest(out / "long.jsonl")
    plan = plan_rows(config)
    for row in rows[:2]:
        pieces = [r for r in records if r.extra["parent_id"] == row["id"]]
        planned = [p for p in plan if p["parent_id"] == row["id"]]
        assert len(pieces) == len(planned) >= 2
        assert all(p.duration <= 30.0 for p in pieces)
        assert " ".join(p.text for p in pieces).split() == row["text"].split()
        good, total = check.placed_share(row["text"], planned, truth[row["id"]], normalize_for_scoring)
        assert good / total >= 0.98
    (reject,) = read_rejects(out / "rejects.jsonl")
    assert reject.id == "wrong" and reject.reason.startswith("alignment failed")
    assert json.loads((out / "long.jsonl").read_text().splitlines()[0])["audio_filepath"].endswith(".wav")


def test_hugging_face_model_dir_uses_the_transformers_word_timer(tiny_whisper_dir, speech_clips):
    timer = load_word_timer(str(tiny_whisper_dir), make_config(Path(".")).segment, threads=1)
    assert isinstance(timer, TransformersTimer)
    timer.generate_kwargs["max_new_tokens"] = 12  # random weights babble: keep it short
    audio = np.concatenate([c.audio for c in speech_clips] * 2)[: 40 * SAMPLE_RATE]  # > 30 s: chunked
    assert len(audio) > 31 * SAMPLE_RATE
    words = timer(audio)
    assert words and all(isinstance(w, al.HypWord) and 0 <= w.start <= w.end for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_verify_sources_must_name_an_ingest_source(tmp_path):
    from pipeline.errors import ConfigError

    make_config(tmp_path, verify_sources=["long"])
    with pytest.raises(ConfigError) as e:
        make_config(tmp_path, verify_sources=["archive"])
    assert "segment.verify_sources: 'archive' is not an ingest source (sources: long)" in str(e.value)
