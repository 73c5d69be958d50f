"""Render the demo dictation corpus with offline TTS voices and write its text manifests.

Reads synthesize.corpus_dir (sentences.tsv, general.tsv, reports.jsonl), plans who reads what
(pipeline/tts/plan.py: held-out test sentences and test voices), renders every missing or changed
rendering to 16 kHz mono 16-bit WAV under synthesize.audio_dir in `workers` processes, and writes the
NeMo manifests train / dev / test / test_general / long.jsonl to synthesize.manifest_dir (audio paths
relative to that directory). A rendering that fails, or a long one outside [long_min_seconds,
long_max_seconds], is left out of the manifests and listed in <work_dir>/synthesize/rejects.jsonl.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pipeline.config import Config, SynthesizeConfig
from pipeline.errors import DictuneError
from pipeline.files import atomic_write_json
from pipeline.manifest import Record, Reject, write_manifest, write_rejects

logger = logging.getLogger("dictune")

SECTIONS = ("synthesize",)
STAGE = "synthesize"


def inputs(config: Config) -> list[Path]:
    """The corpus files, the manifests and the audio folder (deleted audio makes the stage run again)."""
    from pipeline.tts.corpus import CORPUS_FILES
    from pipeline.tts.plan import SPLITS

    cfg = _section(config)
    paths = [Path(cfg.corpus_dir) / name for name in CORPUS_FILES]
    paths += [Path(config.lexicon)] if config.lexicon and cfg.unseen_term_share > 0 else []
    paths += [Path(cfg.manifest_dir) / f"{split}.jsonl" for split in SPLITS]
    if cfg.archive is not None:
        paths += [Path(cfg.archive.path), Path(cfg.manifest_dir) / cfg.archive.manifest]
        paths += [Path(p) for p in cfg.archive.missed_from]
    if cfg.final_reports is not None:
        final = cfg.final_reports
        paths += [Path(cfg.manifest_dir) / n for n in (final.manifest, final.verbatim_manifest, final.truth)]
    return paths + ([Path(cfg.audio_dir)] if Path(cfg.audio_dir).exists() else [])


def _section(config: Config) -> SynthesizeConfig:
    if config.synthesize is None:
        raise DictuneError("synthesize: the config has no `synthesize:` section (needed for the demo corpus)")
    return config.synthesize


def run(config: Config) -> dict[str, Any]:
    from pipeline.text import to_spoken
    from pipeline.tts.corpus import read_corpus
    from pipeline.tts.plan import make_plan
    from pipeline.tts.provenance import audio_digests, engine_versions

    cfg = _section(config)
    start = time.monotonic()
    corpus = read_corpus(cfg.corpus_dir)
    held, unseen = _held_out(config, corpus)
    items = make_plan(corpus, cfg, config.seed, to_spoken, unseen)
    archive = _plan_archive(config, items) if cfg.archive is not None else None
    if archive is not None:
        items = items + archive["items"]
    durations, results, reused = _render_missing(items, cfg)
    records, rejects = _collect(items, durations, results, cfg)
    for split, rows in records.items():
        if split == "long_final":
            _write_final(rows, items, cfg)
            continue
        name = cfg.archive.manifest if split == "archive" else f"{split}.jsonl"
        write_manifest(Path(cfg.manifest_dir) / name, rows)
    if archive is not None:
        rejects += archive["rejects"]
    out_dir = config.stage_dir(STAGE)
    write_rejects(out_dir / "rejects.jsonl", rejects)
    summary = _summary(records, rejects, results, cfg, time.monotonic() - start)
    summary["reused"] = reused
    if held is not None:
        summary["unseen_terms"] = {"chosen": list(held.chosen), "unseen": sorted(held.unseen),
                                   "corpus_terms": held.corpus_terms, "sentences": len(held.sentences)}
    if archive is not None:
        summary["archive"] = archive["summary"] | {"minutes": round(sum(r.duration for r in records.get("archive", ())) / 60, 2)}
    summary["stale_files"] = _count_stale(items, cfg)
    summary["audio_sha256"] = audio_digests(records, cfg.manifest_dir)
    summary["environment"] = engine_versions()  # what the audio depends on besides the plan
    atomic_write_json(out_dir / "summary.json", summary)
    logger.info(
        "synthesize: %s clips, %.2f h of audio (%s rendered, %s reused, %s rejected) in %.0f s",
        summary["clips"],
        summary["hours"],
        summary["rendered"],
        summary["reused"],
        summary["rejected"],
        summary["seconds"],
    )
    return summary


def _write_final(verbatim: list[Record], items, cfg: SynthesizeConfig) -> None:
    """The long_final recordings three ways: with their final reports (what an archive holds), with what
    was said, and the truth (edits, and per report token whether it was said there)."""
    import dataclasses

    from pipeline.manifest import write_jsonl

    final = cfg.final_reports
    reports = {item.id: item.final for item in items if item.final is not None}
    filed = [
        dataclasses.replace(r, text=reports[r.id].report, extra={**r.extra, "transcript": "final"})
        for r in verbatim
    ]
    truth = [
        {"id": r.id, "edits": [dataclasses.asdict(e) for e in reports[r.id].edits],
         "spoken": "".join("1" if f else "0" for f in reports[r.id].spoken)}
        for r in verbatim
    ]  # fmt: skip
    out = Path(cfg.manifest_dir)
    write_manifest(out / final.manifest, filed)
    write_manifest(out / final.verbatim_manifest, [dataclasses.replace(r, extra={**r.extra, "transcript": "verbatim"}) for r in verbatim])
    write_jsonl(out / final.truth, truth)


def _held_out(config: Config, corpus) -> tuple[Any, Any]:
    """(held-out terms, a test "does this text hold one?") by pipeline/tts/heldout.py; (None, None) without a
    lexicon or with synthesize.unseen_term_share at 0."""
    from pipeline.lexicon import load_lexicon
    from pipeline.tts.heldout import choose_held_out, passage_terms

    cfg = _section(config)
    if not config.lexicon or cfg.unseen_term_share <= 0:
        return None, None
    lexicon = load_lexicon(config.lexicon)
    held = choose_held_out(corpus.sentences, lexicon, cfg.unseen_term_share, cfg.unseen_max_sentences, config.seed)
    logger.info("synthesize: %d of %d corpus terms held out of training (%d chosen, %d sentences -> test_unseen)",
                len(held.unseen), held.corpus_terms, len(held.chosen), len(held.sentences))
    return held, lambda text: bool(passage_terms(lexicon, text) & held.unseen)


def _plan_archive(config: Config, items: list) -> dict[str, Any]:
    """Renderings of report-archive sentences by train voices (pipeline/tts/archive.py): {"items",
    "rejects", "summary"}."""
    from pipeline.archive import read_archive
    from pipeline.lexicon import load_lexicon
    from pipeline.scoring_form import normalize_for_scoring
    from pipeline.text import to_spoken
    from pipeline.tts import archive as arc
    from pipeline.tts.corpus import sentence_key, split_sentences
    from pipeline.tts.plan import PlanItem, item_seed, parse_voices

    cfg = _section(config)
    a = cfg.archive
    if not config.lexicon:
        raise DictuneError("synthesize.archive: needs a lexicon (the top-level `lexicon:` key) to choose sentences")
    reports, rejects = read_archive(a.path, a.fields, stage=STAGE)
    tests = [i for i in items if i.split in ("test", "test_unseen", "test_general") or i.split_use == "demo"]
    held = {sentence_key(s) for i in tests for s in split_sentences(i.passage.text)}
    passages, more = arc.sentences(reports, held, a.max_words)
    lexicon = load_lexicon(config.lexicon)
    training = [i for i in items if i.split == "train" or i.split_use == "train"]
    before = Counter(m.term for i in training for m in lexicon.find(normalize_for_scoring(i.passage.text).split()))
    missed = arc.missed_terms(a.missed_from, lexicon)
    lacking = set(lexicon.terms) - set(before)
    priority = lacking | set(missed)
    pool = arc.candidates(passages, lexicon)
    covered = Counter(before)
    chosen = arc.select(pool, covered, priority, a)
    train_voices, _ = parse_voices(cfg)
    planned = []
    for candidate, reading in chosen:
        voices = arc.voices_for(candidate.passage, train_voices, a.voices, config.seed)
        if reading < len(voices):
            voice, passage = voices[reading], candidate.passage
            seed = item_seed(config.seed, "archive", passage.id, voice.spec)
            planned.append(PlanItem("archive", passage, voice, to_spoken(passage.text, commands=False), False, seed))
    summary = {"reports": len(reports), "sentences": len(passages), "rejected": len(rejects) + len(more),
               "candidates": len(pool), "chosen_sentences": len({c.passage.id for c, _ in chosen}),
               "renderings": len(planned), "estimated_minutes": round(sum(c.seconds for c, _ in chosen) / 60, 2),
               "coverage": arc.coverage(before, covered, {t for c in pool for t in c.terms}, lacking, a.repeats,
                                        set(missed))}
    logger.info("synthesize: archive %s: %d reports, %d sentences (%d rejected), %d renderings chosen (~%.1f min)",
                a.path, len(reports), len(passages), summary["rejected"], len(planned), summary["estimated_minutes"])
    return {"items": planned, "rejects": rejects + more, "summary": summary}


def _count_stale(items, cfg: SynthesizeConfig) -> int:
    """WAV files in audio_dir that no planned item uses (left from an older corpus or config; kept)."""
    from pipeline.tts.render import audio_path

    planned = {audio_path(item, cfg.audio_dir).resolve() for item in items}
    stale = [p for p in Path(cfg.audio_dir).glob("*/*.wav") if p.resolve() not in planned]
    if stale:
        logger.info(
            "synthesize: %s audio files in %s are no longer used (safe to delete)", len(stale), cfg.audio_dir
        )
    return len(stale)


def _render_missing(items, cfg: SynthesizeConfig):
    """Durations of all renderings on disk by item id, this run's results, and how many were reused."""
    from pipeline.tts.render import render_missing

    return render_missing(items, cfg.audio_dir, cfg.voices_dir, cfg.workers, "synthesize")


def _collect(items, durations, results, cfg: SynthesizeConfig):
    from pipeline.tts.plan import SPLITS
    from pipeline.tts.render import manifest_record

    errors = {r.id: r.error for r in results if r.error}

    records: dict[str, list[Record]] = {split: [] for split in SPLITS}
    for extra_split in ("archive", "long_final"):
        if any(item.split == extra_split for item in items):
            records[extra_split] = []
    rejects = []
    for item in items:
        duration = durations.get(item.id)
        reason = errors.get(item.id, "not rendered") if duration is None else None
        if (
            reason is None
            and item.split in ("long", "long_demo", "long_final")
            and not cfg.long_min_seconds <= duration <= cfg.long_max_seconds
        ):
            reason = (
                f"long dictation is {duration:.1f} s, outside [{cfg.long_min_seconds:g}, "
                f"{cfg.long_max_seconds:g}] s (synthesize.long_min_seconds / long_max_seconds)"
            )
        if reason is not None:
            rejects.append(
                Reject(
                    item.passage.source, item.passage.line, f"{item.voice.spec}: {reason}", STAGE, id=item.id
                )
            )
            continue
        records[item.split].append(manifest_record(item, duration, cfg.audio_dir, cfg.manifest_dir))
    for rows in records.values():
        rows.sort(key=lambda r: r.id)
    return records, rejects


def _summary(records, rejects, results, cfg: SynthesizeConfig, seconds: float) -> dict[str, Any]:
    splits = {}
    for split, rows in records.items():
        splits[split] = {
            "clips": len(rows),
            "hours": round(sum(r.duration for r in rows) / 3600, 3),
            "voices": dict(sorted(Counter(r.extra["voice"] for r in rows).items())),
        }
        if split in ("long", "long_demo", "long_final"):
            splits[split]["split_use"] = dict(Counter(r.extra["split_use"] for r in rows))
    speed: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in results:
        if r.error is None:
            speed[r.voice][0] += r.duration
            speed[r.voice][1] += r.seconds
            speed[r.voice][2] += r.cpu_seconds
    failures = Counter(r.voice for r in results if r.error)
    return {
        "splits": splits,
        "clips": sum(s["clips"] for s in splits.values()),
        "hours": round(sum(s["hours"] for s in splits.values()), 3),
        "rendered": sum(1 for r in results if r.error is None),
        "rejected": len(rejects),
        "failures": dict(sorted(failures.items())),
        # audio seconds per rendering second: wall clock (shared machine: load counts) and CPU time
        "x_real_time": {v: round(a / max(t, 1e-9), 1) for v, (a, t, _) in sorted(speed.items())},
        "x_real_time_cpu": {v: round(a / max(c, 1e-9), 1) for v, (a, _, c) in sorted(speed.items())},
        "workers": cfg.workers,
        "seconds": round(seconds, 1),
    }
