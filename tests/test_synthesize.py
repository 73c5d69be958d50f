"""The synthesize stage and the TTS engines: deterministic held-out splits, caching, failure isolation,
and one real rendering per installed engine (skipped, with the reason, where an engine is missing)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import pipeline.tts
from pipeline.config import SynthesizeConfig, config_from_dict
from pipeline.errors import ConfigError, DictuneError
from pipeline.manifest import read_manifest, read_rejects, resolve_audio_path
from pipeline.stages import synthesize as stage
from pipeline.tts import EngineUnavailable, Voice, parse_voice, speak
from pipeline.tts.corpus import read_corpus, sentence_key, split_sentences
from pipeline.tts.plan import make_plan, parse_voices, with_pauses

REPO = Path(__file__).resolve().parents[1]
DEMO_MANIFESTS = REPO / "data_manifests" / "radiology_demo"
VOICES_DIR = REPO / "data" / "voices"
MODALITIES = ("chest_xray", "ct_chest", "mri_brain")


def spoken(text: str, commands: bool = False) -> str:
    from pipeline.text import to_spoken

    return to_spoken(text, commands=commands)


def write_corpus(folder: Path, sentences: int = 40, general: int = 6, reports: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id\tmodality\ttext"]
    for i in range(sentences):
        rows.append(
            f"s-{i:03d}\t{MODALITIES[i % 3]}\tThere is a {i + 2} mm nodule in segment {i} of the lung."
        )
    (folder / "sentences.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rows = ["id\ttext"] + [
        f"g-{i:03d}\tWe walked to the river number {i} after lunch." for i in range(general)
    ]
    (folder / "general.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with open(folder / "reports.jsonl", "w", encoding="utf-8") as handle:
        for i in range(reports):
            # report i reuses sentence s-00i verbatim (a test sentence must never reach train this way)
            findings = f"There is a {i + 2} mm nodule in segment {i} of the lung. The heart is normal."
            handle.write(
                json.dumps(
                    {
                        "id": f"r-{i}",
                        "modality": "ct_chest",
                        "title": "CT",
                        "findings": findings,
                        "impression": "1. Nodule.\n2. No effusion.",
                    }
                )
                + "\n"
            )
    return folder


def synth_config(tmp_path: Path, **overrides) -> SynthesizeConfig:
    base = {
        "corpus_dir": str(tmp_path / "corpus"),
        "manifest_dir": str(tmp_path / "manifests"),
        "audio_dir": str(tmp_path / "audio"),
        "voices_dir": str(VOICES_DIR),
        "test_fraction": 0.25,
        "train_voices": {"flite:slt@1": 1.0, "flite:rms@1.1": 1.0, "espeak:en-us+m3@1": 1.0},
        "test_voices": ("flite:awb@1", "espeak:en-us+f2@1"),
        "general_sentences": 3,
        "long_train_reports": 2,
        "long_demo_reports": 1,
        "long_min_seconds": 0.5,
        "workers": 1,
    }
    return SynthesizeConfig(**{**base, **overrides})


def full_config(tmp_path: Path, **overrides):
    cfg = synth_config(tmp_path, **overrides)
    from pipeline.typed_yaml import config_to_dict

    return config_from_dict(
        {"name": "t", "work_dir": str(tmp_path / "work"), "synthesize": config_to_dict(cfg)}
    )


class FakeSynth:
    """A tone whose length follows the text: fast, deterministic, no engine needed."""

    calls: ClassVar[list[str]] = []

    def __init__(self, voice: Voice):
        self.voice = voice

    def synthesize(self, text: str, seed: int = 0):
        FakeSynth.calls.append(self.voice.spec)
        t = np.arange(int(0.02 * len(text) * 16000)) / 16000
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000


@pytest.fixture
def fake_engines(monkeypatch):
    """Every voice renders a tone; voices of the engine `espeak` fail as a broken engine would."""

    def fake_load(voice: Voice, voices_dir: str = ""):
        if voice.engine == "espeak":
            raise EngineUnavailable("espeak-ng is not on PATH; apt-get install -y espeak-ng")
        return FakeSynth(voice)

    FakeSynth.calls = []
    monkeypatch.setattr(pipeline.tts, "load", fake_load)
    return FakeSynth


# ------------------------------------------------------------------------------------------ plan


def test_plan_is_deterministic_and_seed_dependent(tmp_path):
    corpus = read_corpus(write_corpus(tmp_path / "corpus"))
    cfg = synth_config(tmp_path)
    first = make_plan(corpus, cfg, seed=7, to_spoken=spoken)
    again = make_plan(corpus, cfg, seed=7, to_spoken=spoken)
    other = make_plan(corpus, cfg, seed=8, to_spoken=spoken)
    assert first == again
    assert {(i.split, i.passage.id) for i in first} != {(i.split, i.passage.id) for i in other}
    assert {i.split for i in first} == {"train", "dev", "test", "test_general", "general_dev", "long", "long_demo"}


def test_held_out_sentences_and_voices(tmp_path):
    corpus = read_corpus(write_corpus(tmp_path / "corpus"))
    cfg = synth_config(tmp_path, train_renderings=2)
    plan = make_plan(corpus, cfg, seed=3, to_spoken=spoken)
    test_text = {sentence_key(i.passage.text) for i in plan if i.split == "test"}
    trained = [i for i in plan if i.split in ("train", "dev") or i.split_use == "train"]
    trained_text = {sentence_key(s) for i in trained for s in split_sentences(i.passage.text)}
    assert test_text and not test_text & trained_text
    test_speakers = {
        i.voice.speaker for i in plan if i.split in ("test", "test_general") or i.split_use == "demo"
    }
    assert test_speakers and not test_speakers & {i.voice.speaker for i in trained}
    per_sentence = {}
    for item in plan:
        if item.split == "train":
            per_sentence.setdefault(item.passage.id, []).append(item.voice.speaker)
    assert all(len(s) == 2 and len(set(s)) == 2 for s in per_sentence.values())  # distinct speakers


def test_shared_speaker_is_a_config_error(tmp_path):
    cfg = synth_config(tmp_path, train_voices={"flite:slt@1": 1.0}, test_voices=("festival:slt_hts@1.2",))
    with pytest.raises(ConfigError, match="arctic-slt"):
        parse_voices(cfg)


def test_voice_spec_and_pause_cues():
    assert parse_voice("piper:joe@0.9") == Voice("piper", "joe", 0.9)
    assert parse_voice(parse_voice("kokoro:af_heart").spec) == Voice("kokoro", "af_heart", 1.0)
    for bad in ("joe", "nope:joe", "piper:joe@5"):
        with pytest.raises(DictuneError):
            parse_voice(bad)
    cued = with_pauses(
        "Findings colon The sigmoid colon is normal period new paragraph Impression colon Clear"
    )
    assert (
        cued == "Findings colon, The sigmoid colon is normal period. new paragraph. Impression colon, Clear"
    )


def test_corpus_errors_name_the_file_and_line(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    (folder / "general.tsv").write_text("id\ttext\ng-1\tone\ng-1\ttwo\n", encoding="utf-8")
    with pytest.raises(DictuneError, match=r"general.tsv:3"):
        read_corpus(folder)


# ------------------------------------------------------------------------------------------ stage


def test_failing_engine_does_not_stop_the_others(tmp_path, fake_engines, caplog):
    write_corpus(tmp_path / "corpus")
    config = full_config(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dictune"):
        summary = stage.run(config)
    assert summary["failures"] and set(summary["failures"]) <= {"espeak:en-us+m3@1", "espeak:en-us+f2@1"}
    assert "espeak" in caplog.text and "other voices continue" in caplog.text
    rejects = read_rejects(config.stage_dir("synthesize") / "rejects.jsonl")
    assert len(rejects) == sum(summary["failures"].values())
    assert all("espeak" in r.reason and r.line for r in rejects)
    for split in ("train", "test", "test_general"):
        rows = read_manifest(tmp_path / "manifests" / f"{split}.jsonl")
        assert rows and all(r.extra["engine"] == "flite" for r in rows)
        assert all(resolve_audio_path(r, tmp_path / "manifests" / f"{split}.jsonl").exists() for r in rows)


def test_regeneration_only_for_missing_or_changed_audio(tmp_path, fake_engines):
    folder = write_corpus(tmp_path / "corpus")
    config = full_config(tmp_path)
    first = stage.run(config)
    manifests = {p.name: p.read_bytes() for p in (tmp_path / "manifests").glob("*.jsonl")}
    fake_engines.calls = []
    second = stage.run(config)
    assert first["rendered"] > 0 and second["rendered"] == 0 and not fake_engines.calls
    assert second["reused"] == first["rendered"]
    assert manifests == {p.name: p.read_bytes() for p in (tmp_path / "manifests").glob("*.jsonl")}
    assert second["audio_sha256"] == first["audio_sha256"] and len(first["audio_sha256"]) > 2
    assert set(first["environment"]) >= {"onnxruntime", "piper-tts", "kokoro-onnx", "flite", "festival", "cpu"}
    text = (folder / "general.tsv").read_text(encoding="utf-8").replace("number 3 after", "number 3 before")
    (folder / "general.tsv").write_text(text, encoding="utf-8")
    third = stage.run(config)
    assert third["rendered"] == 1


def test_the_audio_digest_names_the_voice_whose_clips_changed(tmp_path, fake_engines):
    from pipeline.tts.provenance import audio_digests

    write_corpus(tmp_path / "corpus")
    config = full_config(tmp_path)
    stage.run(config)
    manifests = tmp_path / "manifests"
    records = {p.stem: read_manifest(p) for p in manifests.glob("*.jsonl")}
    before = audio_digests(records, manifests)
    assert before == stage.run(config)["audio_sha256"]
    clip = records["test"][0]
    path = resolve_audio_path(clip, manifests / "test.jsonl")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one sample's lowest bit, as another CPU's kernels might round it
    path.write_bytes(bytes(data))
    after = audio_digests(records, manifests)
    changed = {voice for voice in before if before[voice] != after[voice]}
    assert changed == {"all", clip.extra["voice"]}


def test_long_renderings_outside_the_range_are_rejected(tmp_path, fake_engines):
    write_corpus(tmp_path / "corpus")
    config = full_config(tmp_path, long_min_seconds=1000.0, long_max_seconds=2000.0)
    summary = stage.run(config)
    assert summary["splits"]["long"]["clips"] == 0
    assert summary["splits"]["long_demo"]["clips"] == 0
    reasons = [r.reason for r in read_rejects(config.stage_dir("synthesize") / "rejects.jsonl")]
    assert any("long_min_seconds" in r for r in reasons)


def test_augmentation_is_recorded_and_deterministic(tmp_path, fake_engines):
    from pipeline.tts.augment import augment

    write_corpus(tmp_path / "corpus")
    config = full_config(tmp_path, augment_fraction=1.0, augment_kinds=("noise", "telephone", "reverb"))
    stage.run(config)
    rows = read_manifest(tmp_path / "manifests" / "train.jsonl")
    kinds = {r.extra["augment"].split(":")[0] for r in rows}
    assert rows and kinds <= {"noise", "telephone", "reverb"} and len(kinds) >= 2
    assert "augment" not in read_manifest(tmp_path / "manifests" / "test.jsonl")[0].extra  # test stays clean
    clean = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    noisy = augment(clean, 16000, "noise", 10.0, seed=1)
    assert noisy.shape == clean.shape and np.array_equal(noisy, augment(clean, 16000, "noise", 10.0, seed=1))
    snr_db = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert snr_db == pytest.approx(10.0, abs=0.1)


# ------------------------------------------------------------------------------------------ committed demo


def _demo(split: str):
    path = DEMO_MANIFESTS / f"{split}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not generated yet (dictune synthesize configs/radiology_demo.yaml)")
    return read_manifest(path)


def test_demo_manifests_hold_out_test_sentences_and_voices():
    train = _demo("train") + _demo("dev") + _demo("long") + _demo("general_dev")
    assert {r.extra["split_use"] for r in _demo("long")} == {"train"}
    assert {r.extra["split_use"] for r in _demo("long_demo")} == {"demo"}
    test = _demo("test")
    held_out = _demo("test") + _demo("test_general") + _demo("long_demo")
    general_test = {sentence_key(r.text) for r in _demo("test_general")}
    assert general_test and not general_test & {sentence_key(r.text) for r in _demo("general_dev")}
    trained_text = {sentence_key(s) for r in train for s in split_sentences(r.text)}
    assert test and not {sentence_key(r.text) for r in test} & trained_text
    assert not {r.extra["sentence_id"] for r in test} & {r.extra["sentence_id"] for r in train}
    assert not {r.speaker for r in held_out} & {r.speaker for r in train}


# ------------------------------------------------------------------------------------------ real engines

ENGINE_CASES = [
    pytest.param("piper:joe@1.1", None, id="piper"),
    pytest.param("flite:slt@1", "flite", id="flite"),
    pytest.param("espeak:en-us@1", "espeak-ng", id="espeak"),
    pytest.param("festival:slt_hts@1", "text2wave", id="festival"),
    # Kokoro is ~1.2x real time (model load included, a few seconds alone, far more on a busy machine)
    pytest.param("kokoro:af_heart@1.2", None, id="kokoro", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spec,program", ENGINE_CASES)
def test_real_engine_renders_16k_speech(spec, program):
    if program and shutil.which(program) is None:
        pytest.skip(
            f"{program} is not installed (apt-get install -y {program.replace('text2wave', 'festival')})"
        )
    voice = parse_voice(spec)
    try:
        pipeline.tts.load(voice, str(VOICES_DIR))
    except EngineUnavailable as e:
        pytest.skip(f"{voice.engine} unavailable here: {e}")
    audio = speak(voice, "No pleural effusion.", seed=5, voices_dir=str(VOICES_DIR))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.5 < len(audio) / 16000 < 5.0
    assert np.max(np.abs(audio)) == pytest.approx(pipeline.tts.PEAK_LEVEL, rel=1e-3)
    assert np.array_equal(audio, speak(voice, "No pleural effusion.", seed=5, voices_dir=str(VOICES_DIR)))
