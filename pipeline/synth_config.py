"""The synthesize section of a config: the demo corpus's voices and splits, a report archive read aloud,
and long dictations filed with final reports (pipeline.config re-exports these classes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Train voices -> relative share of renderings: fast engines carry the bulk, Kokoro (natural, ~1.4x real
# time on one core) a small share. No speaker here may appear in SynthesizeConfig.test_voices. espeak-ng is
# left out: tiny.en general WER 19-27 % on it (> 15 %). Dropping the two kokoro voices saves ~1/4 of the time.
DEFAULT_TRAIN_VOICES = {
    "piper:joe@0.9": 2.0,
    "piper:joe@1.15": 2.0,
    "flite:slt@1": 1.0,
    "flite:rms@1": 1.0,
    "flite:rms@1.2": 0.5,
    "flite:kal16@0.9": 0.5,
    "festival:slt_hts@1.1": 1.0,
    "kokoro:am_michael@1.1": 0.25,
    "kokoro:bf_emma@1.1": 0.25,
}


@dataclass(frozen=True)
class ArchiveSynthConfig:
    """Training audio from a report archive (pipeline/tts/archive.py): its sentences read by train voices."""

    path: str  # a folder of .txt reports, a .jsonl (one report a line) or a .csv / .tsv file
    fields: tuple[str, ...] = ("text",)  # JSONL fields / CSV columns holding the report text
    minutes: float = 10.0  # audio budget (estimated at 2.5 words a second before rendering)
    repeats: int = 3  # renderings each lexicon term should get (demo training text included)
    voices: int = 2  # most distinct train voices reading one archive sentence
    priority_weight: float = 10.0  # a term the training text lacks counts this many times in the selection
    max_words: int = 60  # longer sentences are rejected (a synthesizer reads them poorly)
    manifest: str = "archive.jsonl"  # written to synthesize.manifest_dir
    # where the current model's misses are read from (their terms are chosen first, like lacking ones):
    # evaluate transcript files of a dev split (<work_dir>/evaluate/transcripts/adapted/dev.jsonl) or the
    # review page's corrections store (corrections.sqlite); never a test split
    missed_from: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        out = []
        if self.minutes <= 0 or self.repeats < 1 or self.voices < 1 or self.max_words < 1:
            out.append("synthesize.archive: minutes must be > 0 and repeats, voices, max_words >= 1")
        if self.priority_weight < 1:
            out.append("synthesize.archive.priority_weight: must be >= 1")
        if not self.fields:
            out.append("synthesize.archive.fields: name at least one field or column")
        for path in self.missed_from:
            if Path(path).stem.lower().startswith("test"):
                out.append(f"synthesize.archive.missed_from: {path} is a test split; choosing training audio "
                           "by test errors would leak the test set (use dev transcripts or corrections)")
        return out


FINAL_EDIT_RATES = {  # per edited report (pipeline/tts/final_reports.py); mismatch is per recording
    "mismatch": 0.1, "scratch": 0.3, "macro": 0.4, "delete": 0.3,
    "template": 0.5, "header": 0.3, "reorder": 0.2, "number": 0.3,
}  # fmt: skip


@dataclass(frozen=True)
class FinalReportsConfig:
    """Long dictations filed with their final signed report instead of a verbatim transcript (issue: real
    archives): pipeline/tts/final_reports.py makes the edits, the train voices dictate what was said."""

    reports: int = 24  # train-eligible reports (no test sentence, no held-out term, no demo report)
    voices: int = 2  # distinct train speakers dictating each report
    share: float = 0.8  # share of the reports edited after dictation (the rest are filed verbatim)
    rates: dict[str, float] = field(default_factory=lambda: dict(FINAL_EDIT_RATES))
    manifest: str = "long_final.jsonl"  # text = the final report (what an archive holds)
    verbatim_manifest: str = "long_final_verbatim.jsonl"  # the same recordings, text = what was said
    truth: str = "long_final_truth.jsonl"  # per recording: its edits, and per report token whether said

    def problems(self) -> list[str]:
        from pipeline.tts.final_reports import EDIT_KINDS

        out = []
        if self.reports < 1 or self.voices < 1 or not 0.0 <= self.share <= 1.0:
            out.append("synthesize.final_reports: reports and voices must be >= 1, share in [0, 1]")
        for kind, rate in self.rates.items():
            if kind not in EDIT_KINDS:
                out.append(f"synthesize.final_reports.rates: unknown edit {kind!r}; edits: {', '.join(EDIT_KINDS)}")
            elif not 0.0 <= rate <= 1.0:
                out.append(f"synthesize.final_reports.rates.{kind}: must be in [0, 1]")
        return out


@dataclass(frozen=True)
class SynthesizeConfig:
    corpus_dir: str = "data_manifests/radiology_demo/corpus"  # sentences.tsv, reports.jsonl, general.tsv
    manifest_dir: str = "data_manifests/radiology_demo"  # committed text manifests are written here
    audio_dir: str = "data/radiology_demo/audio"  # generated audio (git-ignored)
    test_fraction: float = 0.15  # share of sentences (without a held-out term) held out for test
    # share of the corpus's lexicon terms held out of all training text: their sentences are read by the
    # test voices as test_unseen (pipeline/tts/heldout.py; 0 = none); candidates occur in at most
    # unseen_max_sentences sentences
    unseen_term_share: float = 0.15
    unseen_max_sentences: int = 4
    test_unseen_sentences: int = 90  # test_unseen sentences read (seeded; the rest are in no split; 0 = all)
    dev_fraction: float = 0.1  # share of the remaining sentences used for dev
    voices_dir: str = "data/voices"  # install-time TTS assets (scripts/setup_voices.py; git-ignored)
    # "engine:name@rate" -> relative share of the train/dev/long-train renderings (fast engines mostly)
    train_voices: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TRAIN_VOICES))
    train_renderings: int = 2  # distinct train speakers reading each train sentence (dev: 1)
    # held-out voices (no speaker shared with train) for test, test_general and the long demo reports
    test_voices: tuple[str, ...] = ("kokoro:af_heart@1", "kokoro:bm_george@1", "flite:awb@1")
    test_renderings: int = 1  # test voices reading each test sentence
    # plain-English sentences read by test voices for test_general (0 = all of general.tsv); the rest are
    # read by train voices as general_dev (general WER during training, replay against forgetting)
    general_sentences: int = 45
    commands_fraction: float = 0.25  # share of train/dev sentence renderings dictated with spoken punctuation
    long_train_reports: int = 12  # whole reports read (with commands) by train voices; segment cuts them
    long_demo_reports: int = 3  # whole reports read by test voices for the transcription demo
    long_min_seconds: float = 45.0  # a long rendering outside [min, max] seconds is rejected
    long_max_seconds: float = 180.0  # (upper bound of that range)
    workers: int = 2  # rendering processes (1 = render in this process)
    augment_fraction: float = 0.0  # share of train/dev renderings augmented (0 = augmentation off)
    augment_kinds: tuple[str, ...] = ("reverb", "noise")  # drawn per augmented rendering; also "telephone"
    augment_snr_db: tuple[float, float] = (15.0, 30.0)  # coloured-noise SNR range, dB
    augment_rt60: tuple[float, float] = (0.2, 0.6)  # simulated-room reverberation time range, seconds
    archive: ArchiveSynthConfig | None = None  # a report archive read by train voices (archive.jsonl)
    final_reports: FinalReportsConfig | None = None  # long dictations filed with edited final reports
