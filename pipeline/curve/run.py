"""Learning curve: domain-term error against hours of training data, on nested subsets of the train split.

    dictune curve CONFIG [fractions=0.1,0.25,0.5,1.0] [seeds=2] [quality_arm=false] [workers=2] [key=value ...]
        -> <work_dir>/curve/curve.{json,md,png}, subsets/<point>.jsonl, quality_removed.jsonl, rejects.jsonl,
           transcripts/<baseline>/, points/<point>/{train/, transcripts/, result.json}

Answers "how much dictation do we need, and does cleaning beat collecting more?" on the user's own data.
For each draw (curve.seeds) and fraction (curve.fractions) the subset chosen by pipeline.curve.plan is written
as a manifest and training runs on it (pipeline.training.fine_tune with train.train_manifest set to
the subset, output in points/<point>/train, training seed config.seed + draw); pipeline.systems (the evaluate stage's code)
then transcribes and scores the adapted model on evaluate.splits. The baselines (base, base+prompt, base+retrieved)
are transcribed once and shared by every point; transcripts the evaluate stage already cached with the
same key are copied, not decoded again. Every other train.* and evaluate.* setting applies as in
`dictune run`: the same dev and test sets, and train.max_steps at every point (a fixed compute budget).
The fast decoder-only mode is the default (train.adapt=decoder); train.adapt=both is the full mode.

The points share one encoder cache (train.encoder_cache_dir, by default the model cache's, shared by
every run), so a clip is encoded once for the whole curve; and, for scoring, the
evaluate stage's store of the base encoder's outputs on the test clips (<work_dir>/evaluate/encoder_states):
in the decoder-only mode every point has the base encoder, so no point encodes a test clip again. Each
point is the model after train.max_steps, with one dev evaluation at the end (train.eval_steps=0): a
fixed compute budget, with no checkpoint picked on dev. A point whose
result.json key matches (same subset, model, train and evaluate settings) is not redone: a stopped curve
continues where it stopped. With curve.workers > 1 the largest point runs first, alone (it fills the
encoder cache), then the others in that many processes.

Short keys: `fractions=0.1,0.25` means `curve.fractions=[0.1,0.25]`; likewise seeds, quality_arm, workers
and every other curve.* field. Logs carry counts and numbers, never transcript text.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import DictuneError
from pipeline.typed_yaml import config_to_dict

logger = logging.getLogger("dictune")

OUT_DIR = "curve"  # <work_dir>/curve
BASELINE_SYSTEMS = ("base", "base+prompt", "base+retrieved")  # transcribed once, shared by all points
RESULT_NAME = "result.json"
CURVE_VERSION = 2  # bump when a point's result would change for the same key


@dataclass(frozen=True)
class PointJob:
    id: str  # point id, e.g. random-f0.25-s1
    draw: int  # random draw; the point trains with seed config.seed + draw
    manifest: Path  # the subset manifest
    dir: Path  # points/<id>


# ---------------------------------------------------------------------------------------------- run


def run_curve(config: Config) -> dict[str, Any]:
    """Train and score every point, then write curve.json, curve.md and curve.png; returns curve.json's dict."""
    from pipeline.curve.plan import plan_subsets
    from pipeline.curve.pools import compare_arms, compare_steps, point_matrices
    from pipeline.curve.report import build_curve, write_curve
    from pipeline.files import atomic_write_json
    from pipeline.manifest import write_rejects
    from pipeline.models import resolve_model
    from pipeline.systems import load_splits, report_options

    if not config.lexicon:
        raise DictuneError(
            "curve: term error needs a lexicon; set `lexicon: FILE` (domain terms, one a line)"
        )
    start = time.monotonic()
    out = config.stage_dir(OUT_DIR)
    splits, rejects = load_splits(config)
    write_rejects(out / "rejects.jsonl", rejects)
    options = report_options(config, splits)
    if options.domain_split is None:
        raise DictuneError(
            f"curve: evaluate.splits {list(config.evaluate.splits)} has no domain split to score"
        )
    base_dir = Path(resolve_model(config.model.base, cache_dir=config.model.cache_dir))
    if config.curve.pools:
        from pipeline.curve.pools import plan_pool_subsets, pool_records

        pools = pool_records(config.curve.pools)
        records, train_path = [r for rs in pools.values() for r in rs], Path(next(iter(config.curve.pools.values())))
        quality, notes = None, [f"arms: the pools {', '.join(pools)} at equal budgets (curve.pools)"]
        subsets = plan_pool_subsets(pools, config.curve.fractions, config.curve.seeds, config.seed)
    else:
        records, train_path = _train_records(config)
        quality, notes = _quality(config, records, out)
        subsets = plan_subsets(records, config.curve.fractions, config.curve.seeds, config.seed, quality)
    jobs = [_write_job(s, out) for s in subsets if s.same_as is None]
    logger.info(
        "curve: %d points to train (%d subsets, %d shared), %d training items, %.2f h",
        len(jobs),
        len(subsets),
        len(subsets) - len(jobs),
        len(records),
        _hours(records),
    )
    baselines, prompt, more_notes, base_counts = _baselines(config, splits, base_dir, out)
    results = _run_jobs(config, jobs, base_dir)
    points = [_point_row(config, s, results[s.same_as or s.id]) for s in subsets]
    meta = _meta(config, train_path, records, splits, options, quality, prompt, [*notes, *more_notes])
    matrices = point_matrices(config, splits, points, {j.id: j.dir for j in jobs}, options)
    comparisons = compare_arms(config, points, matrices, options)
    steps = compare_steps(config, points, {**matrices, **base_counts}, options)
    curve = build_curve(meta, baselines, points, time.monotonic() - start, comparisons, steps)
    atomic_write_json(out / "curve.json", curve)
    written = write_curve(curve, out)
    logger.info(
        "curve: wrote %s in %.0f s",
        ", ".join(p.name for p in [out / "curve.json", *written]),
        curve["wall_seconds"],
    )
    return curve


def _train_records(config: Config) -> tuple[list[Any], Path]:
    """All training records (train.train_manifest plus train.extra_train_manifests) with absolute audio
    paths (subset manifests live elsewhere), and the main manifest's path."""
    from pipeline.manifest import read_manifest, resolve_audio_path

    path = Path(config.train.train_manifest or config.stage_dir("normalize") / "train.jsonl")
    records = []
    for manifest in (path, *(Path(p) for p in config.train.extra_train_manifests)):
        if not manifest.is_file():
            raise DictuneError(
                f"{manifest}: training manifest not found; run `dictune normalize CONFIG` first "
                "or set train.train_manifest / train.extra_train_manifests"
            )
        records += [r.replace(audio_filepath=str(resolve_audio_path(r, manifest))) for r in read_manifest(manifest)]
    if not records:
        raise DictuneError(f"{path}: no training items; a learning curve needs some")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise DictuneError(f"{path}: duplicate ids; give every item its own id")
    return records, path


def _quality(config: Config, records: list[Any], out: Path) -> tuple[Any, list[str]]:
    """The quality split (None when the arm is off or has nothing to remove) and a note when skipped."""
    from pipeline.curve.plan import ALIGNMENT_KEY, quality_split
    from pipeline.manifest import write_jsonl

    if not config.curve.quality_arm:
        return None, []
    quality = quality_split(records, config.curve.quality_drop_fraction)
    write_jsonl(
        out / "quality_removed.jsonl",
        (
            {"id": r.id, ALIGNMENT_KEY: r.extra[ALIGNMENT_KEY], "duration": r.duration}
            for r in quality.removed
        ),
    )
    if not quality.removed:
        note = (
            f"quality arm skipped: no training item has an alignment score ({ALIGNMENT_KEY}, written by the "
            "segment stage for the pieces it cuts from long recordings)"
        )
        logger.info("curve: %s", note)
        return None, [note]
    logger.info(
        "curve: quality arm removes %d of %d scored items (%s >= %.3f)",
        len(quality.removed),
        quality.scored,
        ALIGNMENT_KEY,
        quality.threshold,
    )
    return quality, []


def _write_job(subset: Any, out: Path) -> PointJob:
    from pipeline.manifest import write_manifest

    manifest = out / "subsets" / f"{subset.id}.jsonl"
    write_manifest(manifest, subset.records)
    return PointJob(subset.id, subset.draw, manifest, out / "points" / subset.id)


def _hours(records: list[Any]) -> float:
    return sum(r.duration for r in records) / 3600.0


def _meta(config, train_path, records, splits, options, quality, prompt, notes) -> dict[str, Any]:
    from pipeline.curve.plan import ALIGNMENT_KEY

    t = config.train
    return {
        "name": config.name,
        "base_model": config.model.base,
        "train_manifest": str(train_path),
        "total_items": len(records),
        "total_hours": _hours(records),
        "term_metric": config.curve.term_metric,
        "domain_split": options.domain_split,
        "general_split": options.general_split,
        "splits": {s.name: len(s.records) for s in splits},
        "fractions": list(config.curve.fractions),
        "seeds": config.curve.seeds,
        "train": {"mode": t.mode, "adapt": t.adapt, "max_steps": t.max_steps, "batch_size": t.batch_size,
                  "learning_rate": t.learning_rate, "cache_encoder_outputs": t.cache_encoder_outputs,
                  "seed": config.seed},
        "pools": dict(config.curve.pools),
        "quality": None if quality is None else {
            "scored_items": quality.scored, "removed_items": len(quality.removed),
            "removed_hours": _hours(list(quality.removed)), "drop_fraction": config.curve.quality_drop_fraction,
            "threshold": quality.threshold, "key": ALIGNMENT_KEY},
        "prompt": prompt,
        "notes": notes,
    }  # fmt: skip


def _point_row(config: Config, subset: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": subset.id,
        "arm": subset.arm,
        "fraction": subset.fraction,
        "draw": subset.draw,
        "train_seed": config.seed + subset.draw,
        "items": len(subset.records),
        "hours": subset.seconds / 3600.0,
        "budget_hours": subset.budget_seconds / 3600.0,
        "budget_met": subset.budget_met,
        "same_as": subset.same_as,
        "reused": bool(result.get("reused")),  # computed by an earlier run of the curve
        "metrics": result["metrics"],
        "train_seconds": result["train_seconds"] if subset.same_as is None else 0.0,
        "eval_seconds": result["eval_seconds"] if subset.same_as is None else 0.0,
        "train": result["train"],
    }


# ---------------------------------------------------------------------------------------------- baselines


def _baselines(
    config: Config, splits: list[Any], base_dir: Path, out: Path
) -> tuple[dict, dict | None, list[str], dict]:
    """Scores of the base systems among evaluate.systems, transcribed once for all points, and the base
    model's per-utterance counts keyed as pipeline.curve.pools.point_matrices keys a point's (fraction 0)."""
    from pipeline.bootstrap import utterance_matrix
    from pipeline.curve.report import point_metrics
    from pipeline.systems import (
        PROMPT_RULE,
        TRANSCRIPTS_DIR,
        encoder_store,
        plan_systems,
        report_options,
        score_all,
        transcribe_all,
    )

    wanted = tuple(s for s in config.evaluate.systems if s in BASELINE_SYSTEMS)
    base_config = dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, systems=wanted))
    systems, prompt, notes = plan_systems(base_config, base_dir)
    _copy_cached_transcripts(
        config.stage_dir("evaluate") / TRANSCRIPTS_DIR, out / TRANSCRIPTS_DIR, systems, splits
    )
    hyps, _ = transcribe_all(config, systems, splits, out / TRANSCRIPTS_DIR, encoder_store(config, base_dir))
    scores = score_all(config, splits, hyps)
    options = report_options(config, splits)
    baselines = {
        s.name: point_metrics(scores, options.domain_split, options.general_split, s.name) for s in systems
    }
    prompt_info = (
        None
        if prompt is None
        else {
            "terms_used": prompt.terms_used,
            "terms_total": prompt.terms_total,
            "tokens": prompt.tokens,
            "rule": PROMPT_RULE,
        }
    )
    counts = {("base", 0.0, n): utterance_matrix(scores[n]["base"]) for n in scores if "base" in scores[n]}
    return baselines, prompt_info, notes, counts


def _copy_cached_transcripts(source: Path, target: Path, systems: list[Any], splits: list[Any]) -> None:
    """Copy the evaluate stage's cached transcripts; transcribe_all still checks each key before use."""
    from pipeline.files import atomic_write_bytes

    for system in systems:
        for split in splits:
            names = [f"{split.name}.jsonl", f"{split.name}.key"]
            src, dst = source / system.name, target / system.name
            if all((src / n).is_file() for n in names) and not (dst / names[1]).is_file():
                for name in names:
                    atomic_write_bytes(dst / name, (src / name).read_bytes())
                logger.info(
                    "curve: reusing the evaluate stage's %s transcripts of %s", system.name, split.name
                )


# ---------------------------------------------------------------------------------------------- points


def _run_jobs(config: Config, jobs: list[PointJob], base_dir: Path) -> dict[str, dict[str, Any]]:
    """{point id: result}: in this process, or the first (largest) here and the rest in worker processes."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    jobs = sorted(
        jobs, key=lambda j: -_manifest_seconds(j.manifest)
    )  # largest first: fills the encoder cache
    results: dict[str, dict[str, Any]] = {}
    workers = min(config.curve.workers, max(len(jobs) - 1, 1))
    head = jobs if workers == 1 else jobs[:1]
    for number, job in enumerate(head, start=1):
        logger.info("curve: point %d/%d: %s", number, len(jobs), job.id)
        results[job.id] = run_point(config, job, base_dir)
    rest = jobs[len(head) :]
    if not rest:
        return results
    threads = config.threads or max(1, (os.cpu_count() or 1) // workers)
    logger.info("curve: %d points in %d processes of %d thread(s) each", len(rest), workers, threads)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(threads, logger.getEffectiveLevel())) as pool:  # fmt: skip
        futures = {pool.submit(run_point, config, job, base_dir): job for job in rest}
        for future in as_completed(futures):
            results[futures[future].id] = future.result()
            logger.info("curve: point %s done (%d/%d)", futures[future].id, len(results), len(jobs))
    return results


def _manifest_seconds(path: Path) -> float:
    from pipeline.manifest import read_manifest

    return sum(r.duration for r in read_manifest(path))


def _init_worker(threads: int, level: int) -> None:
    """A worker process: its torch threads, and log records to stderr like the CLI's."""
    import torch

    torch.set_num_threads(threads)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"dictune %(levelname).1s [{os.getpid()}] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def run_point(config: Config, job: PointJob, base_dir: Path) -> dict[str, Any]:
    """Train on the job's subset with the train stage, score it with the evaluate stage's code."""
    from pipeline.curve.report import point_metrics
    from pipeline.files import atomic_write_json
    from pipeline.systems import (
        System,
        encoder_store,
        load_splits,
        report_options,
        score_all,
        transcribe_all,
    )
    from pipeline.training import fine_tune
    from pipeline.training.export import adapted_model

    point_config = _point_config(config, job)
    key = _point_key(point_config, job)
    cached = _read_result(job.dir / RESULT_NAME, key)
    if cached is not None:
        logger.info("curve: %s unchanged, result reused", job.id)
        return dict(cached, reused=True)
    train_dir = job.dir / "train"
    started = time.monotonic()
    summary = fine_tune(point_config, out_dir=train_dir)
    trained = time.monotonic()
    adapted = adapted_model(config, base_dir, train_dir)
    if adapted is None:
        raise DictuneError(f"{train_dir}: training wrote no model (see {train_dir / 'rejects.jsonl'})")
    splits, _ = load_splits(config)
    system = System("adapted", adapted[0], None, adapted[1])
    hyps, _ = transcribe_all(config, [system], splits, job.dir / "transcripts", encoder_store(config, base_dir))
    scores = score_all(config, splits, hyps)
    options = report_options(config, splits)
    result = {
        "key": key,
        "id": job.id,
        "metrics": point_metrics(scores, options.domain_split, options.general_split, "adapted"),
        "train_seconds": round(trained - started, 2),
        "eval_seconds": round(time.monotonic() - trained, 2),
        "train": {k: summary.get(k) for k in ("mode", "steps", "best_step", "seconds_per_step", "train_items",
                                              "rejected_items", "exported")},
    }  # fmt: skip
    atomic_write_json(job.dir / RESULT_NAME, result)
    _prune(train_dir, config.curve.keep_models)
    return result


def _point_config(config: Config, job: PointJob) -> Config:
    """The config copy one point trains with: its subset, its seed, no resume, one dev evaluation and one
    checkpoint, both at the end."""
    train = dataclasses.replace(
        config.train,
        train_manifest=str(job.manifest),
        extra_train_manifests=(),  # the subset already holds its share of them
        resume=False,
        eval_steps=0,  # the point is the model after max_steps; a mid-run dev evaluation would only cost time
        save_steps=0,  # only the final checkpoint (removed after scoring): points are cheap to redo
        merge=config.train.merge and config.curve.keep_models,  # evaluate loads adapter/ otherwise
    )
    return dataclasses.replace(config, seed=config.seed + job.draw, train=train)


def _point_key(point_config: Config, job: PointJob) -> str:
    from pipeline.files import sha256_file, sha256_json, sha256_paths

    splits = [point_config.stage_dir("normalize") / f"{s}.jsonl" for s in point_config.evaluate.splits]
    return sha256_json({
        "version": CURVE_VERSION,
        "subset": sha256_file(job.manifest),
        "splits": sha256_paths([*splits, *(Path(m) for m in point_config.evaluate.manifests)]),
        "lexicon": sha256_paths([Path(point_config.lexicon)]) if point_config.lexicon else None,
        "config": {k: config_to_dict(getattr(point_config, k)) for k in ("model", "train", "evaluate", "seed")},
    })  # fmt: skip


def _read_result(path: Path, key: str) -> dict[str, Any] | None:
    import json

    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("key") == key else None


def _prune(train_dir: Path, keep_models: bool) -> None:
    """Drop what the curve no longer needs: checkpoints, the best-weights copy, merged/ unless kept."""
    from pipeline.training.trainer import BEST_DIR, CHECKPOINT_DIR

    for name in (CHECKPOINT_DIR, BEST_DIR, *(() if keep_models else ("merged",))):
        shutil.rmtree(train_dir / name, ignore_errors=True)
