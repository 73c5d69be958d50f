"""scripts/render_test_set.py: more held-out sentences read by the config's test voices, nothing lost."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

import pipeline.tts
from pipeline.manifest import Record, read_manifest, read_rejects, write_manifest
from pipeline.tts import EngineUnavailable, parse_voice

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "render_test_set.py"
spec = importlib.util.spec_from_file_location("render_test_set", SCRIPT)
render_test_set = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_test_set)

TEST_VOICES = ["flite:awb@1", "flite:kal@1", "espeak:en-us+f2@1"]


@pytest.fixture
def tones(monkeypatch):
    """Every voice renders a tone as long as its text; espeak voices fail as a broken engine would. Returns
    the voices loaded, one per rendering tried."""
    loaded = []

    class Tone:
        def __init__(self, voice):
            self.voice = voice

        def synthesize(self, text, seed=0):
            return np.full(int(0.02 * len(text) * 16000), 0.1, np.float32), 16000

    def load(voice, voices_dir=""):
        loaded.append(voice.spec)
        if voice.engine == "espeak":
            raise EngineUnavailable("espeak-ng is not on PATH")
        return Tone(voice)

    monkeypatch.setattr(pipeline.tts, "load", load)
    return loaded


def setup(tmp_path: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "sentences.tsv").write_text("id\tmodality\ttext\ns-1\tct_chest\tThere is a small pleural effusion.\n")
    (corpus / "general.tsv").write_text("id\ttext\ng-1\tWe walked to the river after lunch.\n")
    (corpus / "reports.jsonl").write_text('{"id": "r-1", "findings": "The lungs are clear.", "impression": "Normal."}\n')
    (tmp_path / "lexicon.txt").write_text("pleural effusion\natelectasis\n")
    config = {
        "name": "t", "work_dir": str(tmp_path / "work"), "lexicon": str(tmp_path / "lexicon.txt"),
        "synthesize": {"corpus_dir": str(corpus), "manifest_dir": str(tmp_path / "m"), "audio_dir": str(tmp_path / "a"),
                       "train_voices": {"flite:slt@1": 1.0, "flite:rms@1": 1.0}, "test_voices": TEST_VOICES},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    rows = [
        ("x-1", "The market opens early on the weekend."),
        ("x-2", "We walked to the river after lunch."),  # a corpus sentence: training text
        ("x-3", "The band played late into the night."),
        ("x-4", "the band played late into the night"),  # the same sentence again
        ("x-5", "Bibasilar atelectasis was seen on the film."),  # a lexicon term in a general set
        ("x-6", "Our neighbors painted the fence on a sunny afternoon."),
    ]
    tsv = tmp_path / "set" / "extra_general.tsv"
    tsv.parent.mkdir()
    tsv.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in rows))
    return tmp_path / "c.yaml", tsv


def test_every_sentence_is_rendered_by_test_voices_or_rejected_with_its_reason(tmp_path, tones, monkeypatch):
    config, tsv = setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert render_test_set.main([str(config), str(tsv), "--general", "--workers", "1"]) == 0
    records = read_manifest(tsv.parent / "extra_general.jsonl")
    rejects = read_rejects(tsv.parent / "extra_general.rejects.jsonl")
    # round-robin over the test voices: x-1 awb, x-3 kal, x-6 espeak (fails, so rejected with the engine's error)
    assert [(r.extra["sentence_id"], r.extra["voice"]) for r in records] == [("x-1", TEST_VOICES[0]),
                                                                         ("x-3", TEST_VOICES[1])]  # fmt: skip
    assert all(r.speaker == parse_voice(r.extra["voice"]).speaker for r in records)
    assert all((tsv.parent / r.audio_filepath).is_file() and r.duration > 0 for r in records)
    reasons = {r.id: r.reason for r in rejects}
    assert set(reasons) == {"x-2", "x-4", "x-5", "x-6.espeak-en-us+f2-1"}
    assert "corpus holds" in reasons["x-2"] and "repeats" in reasons["x-4"]
    assert "atelectasis" in reasons["x-5"] and "espeak-ng is not on PATH" in reasons["x-6.espeak-en-us+f2-1"]
    assert all(r.line for r in rejects)
    assert sorted(tones) == sorted(TEST_VOICES)
    assert render_test_set.main([str(config), str(tsv), "--general", "--workers", "1"]) == 0
    assert tones[3:] == [TEST_VOICES[2]]  # only the failed espeak rendering is tried again
    assert read_manifest(tsv.parent / "extra_general.jsonl") == records


def test_without_general_a_term_sentence_is_kept_and_renderings_use_distinct_voices(tmp_path, tones, monkeypatch):
    config, tsv = setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    render_test_set.main([str(config), str(tsv), "--renderings", "2", "--split", "more", "--workers", "1"])
    records = read_manifest(tsv.parent / "more.jsonl")
    by_sentence: dict[str, list[str]] = {}
    for r in records:
        by_sentence.setdefault(r.extra["sentence_id"], []).append(r.extra["voice"])
    assert "x-5" in by_sentence
    assert all(len(set(v)) == len(v) for v in by_sentence.values())
    with pytest.raises(SystemExit):
        render_test_set.main([str(config), str(tsv), "--renderings", "4"])


def test_replay_is_read_by_train_voices_only(tmp_path, tones, monkeypatch):
    config, tsv = setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    render_test_set.main([str(config), str(tsv), "--general", "--voices", "train", "--renderings", "2",
                          "--split", "replay", "--workers", "1"])  # fmt: skip
    records = read_manifest(tsv.parent / "replay.jsonl")
    assert sorted(r.extra["sentence_id"] for r in records) == ["x-1", "x-1", "x-3", "x-3", "x-6", "x-6"]
    assert {r.extra["voice"] for r in records} == {"flite:slt@1", "flite:rms@1"}
    with pytest.raises(SystemExit):  # two train speakers
        render_test_set.main([str(config), str(tsv), "--voices", "train", "--renderings", "3"])


def test_seen_terms_keeps_sentences_with_training_terms_only_and_excluded_manifests_count_as_training(
    tmp_path, tones, monkeypatch
):
    config, _ = setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    train = Record("t-1", "t-1.wav", 2.0, "A small pleural effusion.")
    write_manifest(tmp_path / "work" / "normalize" / "train.jsonl", [train])
    other_arm = tmp_path / "archive.jsonl"
    write_manifest(other_arm, [Record("a-1", "a-1.wav", 2.0, "New pleural effusion on the left. Lungs clear.")])
    rows = [("d-1", "There is a moderate pleural effusion on the right."),
            ("d-2", "Bibasilar atelectasis with a trace pleural effusion."),  # atelectasis: not in training text
            ("d-3", "The heart size is normal."),  # no lexicon term
            ("d-4", "New pleural effusion on the left.")]  # fmt: skip
    tsv = tmp_path / "set" / "seen.tsv"
    tsv.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in rows))
    args = [str(config), str(tsv), "--seen-terms", "--exclude-manifest", str(other_arm), "--workers", "1"]
    assert render_test_set.main(args) == 0
    assert [r.extra["sentence_id"] for r in read_manifest(tsv.parent / "seen.jsonl")] == ["d-1"]
    reasons = {r.id: r.reason for r in read_rejects(tsv.parent / "seen.rejects.jsonl")}
    assert "lacks: ['atelectasis']" in reasons["d-2"] and "no lexicon term" in reasons["d-3"]
    assert reasons["d-4"] == f"{other_arm} holds this sentence (--exclude-manifest)"
    (tmp_path / "work" / "normalize" / "train.jsonl").unlink()  # no training text: a clear error
    with pytest.raises(SystemExit):
        render_test_set.main(args)
