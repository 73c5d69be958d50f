"""Cut recordings longer than segment.max_seconds at pauses, each piece with its exact slice of the transcript.

    dictune segment CONFIG  -> <work_dir>/segment/<split>.jsonl, audio/<split>/<id>__<k>.wav,
                               rejects.jsonl, segments.jsonl (every planned piece, kept or not; no text)

Reads the ingest manifests. Items no longer than segment.max_seconds pass through unchanged. A longer
item is cut in four steps:

1. speech regions from silero-vad (its model ships in the wheel); the gaps between them are the pauses;
2. timed words from the base model: faster-whisper (CTranslate2, int8) for a builtin or a CTranslate2
   directory, else the transformers pipeline with word timestamps on the resolved Hugging Face model
   (steps 1 and 2 are in pipeline/speech_timing.py);
3. pipeline.alignment aligns those words to the reference on scoring-normalized words (spoken commands
   such as "period" align to the reference's punctuation for free) and gives each reference token a time;
4. cuts go in the middle of pauses chosen by dynamic programming (every piece within
   [segment.min_seconds, segment.max_seconds], preferring long pauses and sentence ends); each token goes
   to the piece containing its time, so piece texts are exact slices of the reference that, in order,
   give back the whole transcript.

Each piece is written as 16 kHz mono WAV with `parent_id`, `segment_index`, `start`, `end` (seconds in
the parent) and `alignment_wer` in its record. A piece whose hypothesis disagrees with its text by more
than segment.max_segment_wer, or that received no reference words, goes to rejects.jsonl with its numbers;
an item that cannot be decoded, aligned or cut goes there whole. Transcript text is never logged above
DEBUG.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import alignment
from pipeline.config import Config, SegmentConfig
from pipeline.errors import DictuneError
from pipeline.files import atomic_dir, id_file_name
from pipeline.manifest import (
    Record,
    Reject,
    iter_jsonl,
    manifest_audio_paths,
    write_jsonl,
    write_manifest,
    write_rejects,
)
from pipeline.speech_timing import SAMPLE_RATE, WordTimer, load_word_timer, speech_regions

logger = logging.getLogger("dictune")

STAGE = "segment"
SECTIONS = ("segment",)
AUDIO_DIR = "audio"
REJECTS_NAME = "rejects.jsonl"
PLAN_NAME = "segments.jsonl"  # one row per planned piece (and per item rejected whole); no transcript text
DROPPED_KEYS = ("needs_segment", "offset", "repairs", "sample_rate", "channels")  # untrue of a written piece
LIST_MARKER_WORDS = ("number",)  # "number 2" is spoken for a list marker "2." (pipeline.text.to_spoken)


def inputs(config: Config) -> list[Path]:
    return [config.stage_dir("ingest") / f"{s.name}.jsonl" for s in config.ingest.sources]


def stat_inputs(config: Config) -> list[Path]:
    """The audio its manifests name, compared by size and mtime (a replaced recording reruns the stage)."""
    return manifest_audio_paths(inputs(config))


def run(config: Config) -> dict[str, Any]:
    _check_options(config.segment)
    manifests = inputs(config)
    for manifest in manifests:
        if not manifest.is_file():
            raise DictuneError(f"{manifest}: not found; run `dictune ingest CONFIG` first")
    out_dir = config.stage_dir(STAGE)
    timer = _LazyTimer(config)
    summary, rejects, plan = {}, [], []
    for source, manifest in zip(config.ingest.sources, manifests):
        result = segment_manifest(manifest, source.name, out_dir, config.segment, timer)
        write_manifest(out_dir / f"{source.name}.jsonl", result.records)
        rejects += result.rejects
        plan += result.plan
        summary[source.name] = result.summary()
        logger.info("segment %s: %s", source.name, summary[source.name])
    write_rejects(out_dir / REJECTS_NAME, rejects)
    write_jsonl(out_dir / PLAN_NAME, plan)
    return summary


def _check_options(options: SegmentConfig) -> None:
    problems = []
    if not 0 <= options.min_seconds < options.max_seconds:
        problems.append("segment.min_seconds must be >= 0 and below segment.max_seconds")
    if options.max_segment_wer < 0:
        problems.append("segment.max_segment_wer must be >= 0")
    if not 0 <= options.min_matched_fraction <= 1:
        problems.append("segment.min_matched_fraction must be in [0, 1]")
    if problems:
        raise DictuneError("; ".join(problems))


# ---------------------------------------------------------------------------------------------- manifests


@dataclass
class ManifestResult:
    records: list[Record] = field(default_factory=list)  # pass-through items and kept pieces, in order
    rejects: list[Reject] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    passed: int = 0  # items short enough to keep as they are
    cut: int = 0  # long items cut into pieces

    def summary(self) -> dict[str, Any]:
        pieces = [r for r in self.records if "parent_id" in r.extra]
        return {
            "passed_through": self.passed,
            "cut_items": self.cut,
            "pieces_kept": len(pieces),
            "pieces_hours": round(sum(r.duration for r in pieces) / 3600, 4),
            "rejected": len(self.rejects),
        }


def segment_manifest(
    manifest: Path, split: str, out_dir: Path, options: SegmentConfig, timer: WordTimer
) -> ManifestResult:
    """Pass short items through; cut long ones into out_dir/audio/<split>/ (one rename at the end)."""
    from tqdm.auto import tqdm

    rows = [(line, Record.from_dict(obj)) for line, obj in iter_jsonl(manifest)]
    verify = split in options.verify_sources  # final reports: every item is verified, short ones too
    long_ids = {r.id for _, r in rows if verify or r.duration > options.max_seconds}
    audio_dir = (out_dir / AUDIO_DIR / split).resolve()
    result = ManifestResult()
    pieces: dict[str, list[Record]] = {}
    with atomic_dir(audio_dir) as tmp:
        progress = tqdm(total=len(long_ids), desc=f"segment {split}", unit="item", disable=not long_ids)
        for line, record in rows:
            if record.id not in long_ids:
                continue
            item = cut_item(record, timer, options, _Writer(Path(tmp), audio_dir), verify)
            pieces[record.id] = item.records
            result.cut += 1
            result.rejects += [
                Reject(str(manifest), line, why, STAGE, rid, record.audio_filepath)
                for rid, why in item.rejects
            ]
            result.plan += [{"split": split, **row} for row in item.plan]
            progress.update(1)
        progress.close()
    for _, record in rows:
        if record.id in long_ids:
            result.records += pieces[record.id]
        else:
            result.records.append(record)
            result.passed += 1
    return result


@dataclass(frozen=True)
class _Writer:
    tmp_dir: Path  # where files are written now
    final_dir: Path  # where they will be once the folder is renamed (records point here)

    def write(self, piece_id: str, samples: np.ndarray) -> Path:
        from pipeline.audio import write_wav

        name = id_file_name(piece_id)
        write_wav(self.tmp_dir / name, samples, SAMPLE_RATE)
        return self.final_dir / name


# ---------------------------------------------------------------------------------------------- one item


@dataclass
class ItemResult:
    records: list[Record] = field(default_factory=list)  # kept pieces
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    plan: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ItemPlan:
    segments: tuple[alignment.SegmentText, ...] = ()  # empty when the item is rejected whole
    reason: str | None = None  # why the item cannot be cut
    matched_fraction: float = 0.0  # reference words matched exactly by the hypothesis
    verified_share: float | None = None  # final reports only: share of the report's words kept
    dropped: tuple[tuple[str, str], ...] = ()  # final reports only: (sentences, reason) not kept


def cut_item(
    record: Record, timer: WordTimer, options: SegmentConfig, writer: _Writer, verify: bool = False
) -> ItemResult:
    """Decode, plan and write one long item; every piece is either kept or rejected with its numbers."""
    from pipeline.audio import AudioError, load_mono

    result = ItemResult()
    offset = float(record.extra.get("offset", 0.0) or 0.0)
    try:
        samples = load_mono(record.audio_filepath, SAMPLE_RATE, offset, record.duration if offset else None)
    except AudioError as e:
        plan = ItemPlan(reason=f"cannot decode the audio ({e})")
    else:
        plan = plan_item(record.text, samples, timer, options, verify)
    for where, why in plan.dropped:
        result.rejects.append((record.id, f"{where}: {why}"))
        result.plan.append({"parent_id": record.id, "kept": False, "sentences": where, "reason": why})
    if plan.reason:
        logger.debug("segment %s: rejected whole: %s", record.id, plan.reason)
        result.rejects.append((record.id, plan.reason))
        share = {} if plan.verified_share is None else {"verified_share": round(plan.verified_share, 4)}
        result.plan.append({"parent_id": record.id, "kept": False, "reason": plan.reason, **share})
        return result
    count = len(plan.segments)
    for seg in plan.segments:
        piece_id = f"{record.id}__{seg.index}"
        reason = _piece_problem(seg, count, options)
        row = _plan_row(record.id, piece_id, seg, plan.matched_fraction)
        if plan.verified_share is not None:
            row["verified_share"] = round(plan.verified_share, 4)
        if reason:
            result.rejects.append((piece_id, reason))
            result.plan.append({**row, "kept": False, "reason": reason})
            continue
        lo = round(seg.start * SAMPLE_RATE)
        hi = min(round(seg.end * SAMPLE_RATE), lo + math.floor(options.max_seconds * SAMPLE_RATE))
        path = writer.write(piece_id, samples[lo:hi])
        piece = _piece_record(record, piece_id, path, seg, (hi - lo) / SAMPLE_RATE)
        if plan.verified_share is not None:
            piece.extra["verified_share"] = round(plan.verified_share, 4)
        result.records.append(piece)
        result.plan.append({**row, "kept": True})
    logger.debug("segment %s: %d pieces, texts %s", record.id, count, [s.text for s in plan.segments])
    return result


def _piece_problem(seg: alignment.SegmentText, count: int, options: SegmentConfig) -> str | None:
    where = f"segment {seg.index + 1}/{count} ({seg.start:.2f}-{seg.end:.2f} s)"
    if seg.n_ref_words == 0:
        return f"{where}: no reference words fell in it ({seg.errors} stray hypothesis words)"
    if seg.wer > options.max_segment_wer:
        return (
            f"{where}: base-model WER {seg.wer:.2f} > segment.max_segment_wer {options.max_segment_wer:g} "
            f"({seg.errors} errors / {seg.n_ref_words} reference words, "
            f"reference tokens {seg.first_token}-{seg.end_token})"
        )
    return None


def _plan_row(parent_id: str, piece_id: str, seg: alignment.SegmentText, matched: float) -> dict[str, Any]:
    return {
        "parent_id": parent_id,
        "id": piece_id,
        "segment_index": seg.index,
        "start": round(seg.start, 3),
        "end": round(seg.end, 3),
        "ref_tokens": [seg.first_token, seg.end_token],
        "ref_words": seg.n_ref_words,
        "errors": seg.errors,
        "insertions": seg.insertions,
        "wer": round(seg.wer, 4) if math.isfinite(seg.wer) else None,
        "item_matched_fraction": round(matched, 4),
    }


def _piece_record(
    parent: Record, piece_id: str, path: Path, seg: alignment.SegmentText, seconds: float
) -> Record:
    extra = {k: v for k, v in parent.extra.items() if k not in DROPPED_KEYS}
    extra.update(
        parent_id=parent.id,
        segment_index=seg.index,
        start=round(seg.start, 3),
        end=round(seg.end, 3),
        alignment_wer=round(seg.wer, 4),
        ref_tokens=[seg.first_token, seg.end_token],
        sample_rate=SAMPLE_RATE,
        channels=1,
    )
    return Record(piece_id, str(path), round(seconds, 4), seg.text, speaker=parent.speaker, extra=extra)


def plan_item(
    text: str, samples: np.ndarray, timer: WordTimer, options: SegmentConfig, verify: bool = False
) -> ItemPlan:
    """VAD pauses + timed words + alignment -> the pieces of one item, or the reason it cannot be cut.
    `verify`: the text is a final report, not a verbatim transcript: keep only the spans the audio
    supports (pipeline/verify.py)."""
    from pipeline.scoring_form import normalize_for_scoring

    duration = len(samples) / SAMPLE_RATE
    regions = speech_regions(samples, options)
    if not regions:
        return ItemPlan(reason="no speech found by the voice activity detector")
    words = timer(samples)
    if not words:
        return ItemPlan(reason="alignment failed: the base model heard no words")
    retracted: list[tuple[float, float]] = []
    if verify:  # a final report: "scratch that" took back what was said before it
        from pipeline.verify import apply_retractions

        words, retracted = apply_retractions(words)
    aligned = alignment.align(text, words, normalize_for_scoring, command_words(), duration)
    if aligned.n_ref_words == 0:
        return ItemPlan(reason="the transcript has no words after scoring normalization")
    if aligned.matched_fraction < options.min_matched_fraction:
        return ItemPlan(
            reason=f"alignment failed: only {aligned.matched_fraction:.0%} of {aligned.n_ref_words} "
            f"reference words match the base model's words "
            f"(< segment.min_matched_fraction {options.min_matched_fraction:g})"
        )
    start = max(0.0, regions[0][0] - options.edge_pad_seconds)
    end = min(duration, regions[-1][1] + options.edge_pad_seconds)
    pauses = [(a[1], b[0]) for a, b in itertools.pairwise(regions)]
    if verify:
        return _plan_verified(text, aligned, pauses, duration, options, retracted)
    candidates = alignment.candidate_cuts(pauses, aligned)
    bounds = alignment.choose_cuts(candidates, start, end, options.max_seconds, options.min_seconds)
    if bounds is None and options.min_seconds > 0:
        bounds = alignment.choose_cuts(candidates, start, end, options.max_seconds, 0.0)
    if bounds is None:
        longest = alignment.longest_uncut(candidates, start, end)
        return ItemPlan(
            reason=f"no pause to cut at: {longest:.1f} s of audio without a pause of "
            f"{options.min_pause_ms} ms (> segment.max_seconds {options.max_seconds:g})"
        )
    segments = alignment.assign_segments(text, aligned, bounds)
    return ItemPlan(tuple(segments), None, aligned.matched_fraction)


def _plan_verified(text: str, aligned, pauses, duration: float, options: SegmentConfig, retracted) -> ItemPlan:
    from pipeline.scoring_form import normalize_for_scoring
    from pipeline.verify import VerifyOptions, plan_verified

    verified = plan_verified(text, aligned, pauses, duration, VerifyOptions(
        options.verify_min_support, options.verify_max_wer, options.verify_max_gap_words,
        options.verify_min_share, options.max_seconds, options.verify_min_seconds, options.edge_pad_seconds,
    ), command_words(), normalize_for_scoring, retracted)  # fmt: skip
    return ItemPlan(verified.segments, verified.reason, aligned.matched_fraction, verified.share, verified.dropped)


@functools.lru_cache(maxsize=1)
def command_words() -> tuple[str, ...]:
    """Every word of a spoken dictation command (pipeline.text.COMMANDS): free insertions in the alignment."""
    from pipeline.text import COMMANDS

    return tuple(sorted({w for words in COMMANDS for w in words} | set(LIST_MARKER_WORDS)))


# ---------------------------------------------------------------------------------------------- word timestamps


class _LazyTimer:
    """Loads the base model on the first long item (a corpus of short items never pays for it)."""

    def __init__(self, config: Config):
        self.config = config
        self.timer: WordTimer | None = None

    def __call__(self, samples: np.ndarray) -> list[alignment.HypWord]:
        if self.timer is None:
            self.timer = load_word_timer(
                self.config.model.base, self.config.segment, self.config.threads, self.config.model.cache_dir
            )
        return self.timer(samples)
