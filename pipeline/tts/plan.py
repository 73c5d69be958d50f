"""Deterministic plan of the demo corpus: which text each voice reads for each split.

Every random choice is drawn from a hash of (seed, item id), so the plan depends only on the corpus,
the config and the seed, and adding a sentence does not move any other sentence or voice.

    train         train sentences, each read by `train_renderings` distinct train speakers
    dev           dev sentences, one train voice each
    test          held-out sentences (never in train/dev, nor inside a long-train report) read by the
                  held-out test voices, round-robin
    test_unseen   every sentence holding a held-out lexicon term (pipeline/tts/heldout.py), read by the
                  test voices: terms no training text contains
    test_general  plain-English sentences read by the test voices, round-robin
    general_dev   the other plain-English sentences read by train voices: general WER during training
                  (and replay against forgetting); never the test_general sentences
    long          whole reports dictated with spoken commands by train voices (split_use "train"):
                  cut by segment into training data
    long_demo     whole reports read by test voices (split_use "demo"): the transcription demo
    long_final    (synthesize.final_reports only) train-eligible reports dictated by train voices and filed
                  with their final signed report (pipeline/tts/final_reports.py): what was said is spoken,
                  the final report is the transcript an archive would hold
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.config import SynthesizeConfig
from pipeline.errors import ConfigError, DictuneError
from pipeline.tts import Voice, parse_voice
from pipeline.tts.corpus import Corpus, Passage, sentence_key, split_sentences
from pipeline.tts.final_reports import FinalReport, final_report

SPLITS = ("train", "dev", "test", "test_unseen", "test_general", "general_dev", "long", "long_demo")
AUGMENT_KINDS = ("reverb", "noise", "telephone")
# Spoken commands after which a radiologist pauses. to_spoken(commands=True) drops the punctuation marks,
# and a synthesizer pauses only at punctuation, so a mark is put back after these words: a pause cue only,
# never read out. "colon" counts only before a capital, a digit or a list number (a heading), not in
# "sigmoid colon is".
_PAUSE_AFTER = re.compile(
    r"\b(?:(period|new paragraph|new line|next line)|(comma)|(colon|semicolon)(?=\s+(?:[A-Z0-9]|number\b)))\b(?![.,])"
)


@dataclass(frozen=True)
class PlanItem:
    split: str  # one of SPLITS
    passage: Passage  # the text (transcript) and where it came from
    voice: Voice
    spoken: str  # what the voice reads: the dictated form of passage.text
    commands: bool  # spoken punctuation ("period", "comma", "new paragraph")
    seed: int  # per-item seed (piper noise, augmentation)
    split_use: str | None = None  # long split only: "train" or "demo"
    augment: tuple[str, float] | None = None  # ("reverb", rt60 s) | ("noise", snr dB) | ("telephone", 0)
    final: FinalReport | None = None  # long_final only: the report filed with it (passage.text was said)

    @property
    def id(self) -> str:
        v = self.voice
        return f"{self.passage.id}.{v.engine}-{v.name}-{v.rate:g}"


def with_pauses(spoken: str) -> str:
    """Add pause cues (. or ,) after spoken dictation commands; see _PAUSE_AFTER."""
    return _PAUSE_AFTER.sub(lambda m: m.group(0) + ("." if m.group(1) else ","), spoken)


def unit(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) fixed by (seed, parts)."""
    digest = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def item_seed(seed: int, *parts: object) -> int:
    return int(unit(seed, "seed", *parts) * 2**31)


def parse_voices(cfg: SynthesizeConfig) -> tuple[dict[Voice, float], tuple[Voice, ...]]:
    """Train voices with weights and test voices; every problem is reported at once."""
    problems, train, test = [], {}, []
    for spec, weight in cfg.train_voices.items():
        try:
            train[parse_voice(spec)] = weight
        except DictuneError as e:
            problems.append(f"synthesize.train_voices: {e}")
        if weight <= 0:
            problems.append(f"synthesize.train_voices: weight of {spec!r} must be > 0")
    for spec in cfg.test_voices:
        try:
            test.append(parse_voice(spec))
        except DictuneError as e:
            problems.append(f"synthesize.test_voices: {e}")
    shared = {v.speaker for v in train} & {v.speaker for v in test}
    if shared:
        problems.append(f"synthesize: speakers in both train_voices and test_voices: {sorted(shared)}")
    if train and len({v.speaker for v in train}) < cfg.train_renderings:
        problems.append("synthesize.train_renderings: more than the number of distinct train speakers")
    if test and len({v.speaker for v in test}) < cfg.test_renderings:
        problems.append("synthesize.test_renderings: more than the number of distinct test speakers")
    if not train or not test:
        problems.append("synthesize: train_voices and test_voices must not be empty")
    if not 0 <= cfg.test_fraction < 1 or not 0 <= cfg.dev_fraction < 1:
        problems.append("synthesize: test_fraction and dev_fraction must be in [0, 1)")
    problems += [
        f"synthesize.augment_kinds: unknown {k!r}" for k in cfg.augment_kinds if k not in AUGMENT_KINDS
    ]
    if problems:
        raise ConfigError(problems, source="synthesize")
    return train, tuple(test)


def sentence_split(passage: Passage, cfg: SynthesizeConfig, seed: int) -> str:
    u = unit(seed, "split", passage.id)
    if u < cfg.test_fraction:
        return "test"
    return "dev" if u < cfg.test_fraction + (1 - cfg.test_fraction) * cfg.dev_fraction else "train"


def draw_voices(weights: dict[Voice, float], count: int, rng: random.Random) -> list[Voice]:
    """`count` voices of distinct speakers, drawn by weight without replacement."""
    pool, chosen = dict(weights), []
    while pool and len(chosen) < count:
        voices = list(pool)
        voice = rng.choices(voices, weights=[pool[v] for v in voices])[0]
        chosen.append(voice)
        pool = {v: w for v, w in pool.items() if v.speaker != voice.speaker}
    return chosen


def _by_hash(passages, seed: int, salt: str) -> list[Passage]:
    return sorted(passages, key=lambda p: unit(seed, salt, p.id))


class Planner:
    """Builds PlanItems: test voices round-robin, train voices drawn by weight (scripts/render_test_set.py
    plans its extra sets with it too)."""

    def __init__(self, cfg: SynthesizeConfig, seed: int, to_spoken: Callable[..., str]):
        self.cfg, self.seed, self.to_spoken = cfg, seed, to_spoken
        self.train_voices, self.test_voices = parse_voices(cfg)
        self.items: list[PlanItem] = []

    def add(self, split, passage, voice, commands, split_use=None, augment=None, final=None) -> None:
        spoken = self.to_spoken(passage.text, commands=commands)
        spoken = with_pauses(spoken) if commands else spoken
        seed = item_seed(self.seed, split, passage.id, voice.spec)
        self.items.append(PlanItem(split, passage, voice, spoken, commands, seed, split_use, augment, final))

    def augment_for(self, passage: Passage, voice: Voice) -> tuple[str, float] | None:
        cfg = self.cfg
        if (
            not cfg.augment_kinds
            or unit(self.seed, "augment", passage.id, voice.spec) >= cfg.augment_fraction
        ):
            return None
        rng = random.Random(item_seed(self.seed, "augment-kind", passage.id, voice.spec))
        kind = rng.choice(cfg.augment_kinds)
        low, high = {"reverb": cfg.augment_rt60, "noise": cfg.augment_snr_db}.get(kind, (0.0, 0.0))
        return kind, round(rng.uniform(low, high), 3)

    def train_like(self, split: str, passage: Passage, count: int, commands_fraction: float | None = None,
                   augment: bool = True) -> None:  # fmt: skip
        rng = random.Random(item_seed(self.seed, "voices", passage.id))
        if commands_fraction is None:
            commands_fraction = self.cfg.commands_fraction
        for voice in draw_voices(self.train_voices, count, rng):
            commands = unit(self.seed, "commands", passage.id, voice.spec) < commands_fraction
            self.add(split, passage, voice, commands, augment=self.augment_for(passage, voice) if augment else None)

    def round_robin(self, split: str, passages: list[Passage], count: int, **kw) -> None:
        voices = self.test_voices
        for i, passage in enumerate(passages):
            for k in range(count):
                self.add(split, passage, voices[(i + k) % len(voices)], **kw)


def make_plan(
    corpus: Corpus,
    cfg: SynthesizeConfig,
    seed: int,
    to_spoken: Callable[..., str],
    unseen: Callable[[str], bool] | None = None,
) -> list[PlanItem]:
    """All renderings of the demo corpus, in a deterministic order. `unseen(text)` says whether a text
    holds a held-out term (pipeline/tts/heldout.py): such sentences go to test_unseen and such reports
    are never read for training."""
    unseen = unseen or (lambda text: False)
    planner = Planner(cfg, seed, to_spoken)
    splits = {
        p.id: "test_unseen" if unseen(p.text) else sentence_split(p, cfg, seed) for p in corpus.sentences
    }
    for passage in corpus.sentences:
        split = splits[passage.id]
        if split not in ("test", "test_unseen"):
            planner.train_like(split, passage, cfg.train_renderings if split == "train" else 1)
    for split in ("test", "test_unseen"):
        tests = _by_hash([p for p in corpus.sentences if splits[p.id] == split], seed, f"{split}-order")
        if split == "test_unseen" and cfg.test_unseen_sentences:
            tests = tests[: cfg.test_unseen_sentences]  # the others are in no split at all
        planner.round_robin(split, tests, cfg.test_renderings, commands=False)
    general = _by_hash(corpus.general, seed, "general")
    held_general = general[: cfg.general_sentences or None]
    planner.round_robin("test_general", held_general, 1, commands=False)
    for passage in general[len(held_general) :]:
        planner.train_like("general_dev", passage, 1, commands_fraction=0.0)
    test_ids = {p.id for p in corpus.sentences if splits[p.id] in ("test", "test_unseen")}
    _plan_long(planner, corpus, test_ids, unseen)
    return planner.items


def _plan_long(planner: Planner, corpus: Corpus, test_ids: set[str], unseen: Callable[[str], bool]) -> None:
    """Demo reports first (any report); train reports only from those holding no test sentence and no
    held-out term."""
    cfg, seed = planner.cfg, planner.seed
    held_out = {sentence_key(p.text) for p in corpus.sentences if p.id in test_ids}
    reports = _by_hash(corpus.reports, seed, "long")
    demo = reports[: cfg.long_demo_reports]
    clean = [
        r for r in reports[len(demo) :]
        if not held_out & {sentence_key(s) for s in split_sentences(r.text)} and not unseen(r.text)
    ]
    planner.round_robin("long_demo", demo, 1, commands=True, split_use="demo")
    for report in clean[: cfg.long_train_reports]:
        rng = random.Random(item_seed(seed, "voices", report.id))
        voice = draw_voices(planner.train_voices, 1, rng)[0]
        planner.add("long", report, voice, True, split_use="train")
    if cfg.final_reports is not None:
        forbidden = lambda text: sentence_key(text) in held_out or unseen(text)
        _plan_final(planner, clean, forbidden)


def _plan_final(planner: Planner, clean: list[Passage], forbidden: Callable[[str], bool]) -> None:
    """long_final: each chosen report dictated by `voices` train speakers, each recording filed with its own
    draw of edits (a mismatched recording gets another chosen report of the same exam type)."""
    cfg, seed = planner.cfg.final_reports, planner.seed
    chosen = clean[: cfg.reports]
    for report in chosen:
        others = [r.text for r in chosen if r.modality == report.modality and r.id != report.id]
        rng = random.Random(item_seed(seed, "final-voices", report.id))
        for voice in draw_voices(planner.train_voices, cfg.voices, rng):
            key = f"{report.id}.{voice.spec}"
            final = final_report(key, report.text, cfg.rates, cfg.share, seed, others, forbidden)
            said = Passage(f"{report.id}-final", final.dictated, "report", report.source, report.line, report.modality)
            planner.add("long_final", said, voice, True, split_use="train", final=final)
