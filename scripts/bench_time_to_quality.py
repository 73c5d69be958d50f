"""Time to quality: the wall time dictune's default training needs to reach the dev term error that the
Hugging Face recipe ends with, on the demo's data.

    .venv/bin/python scripts/bench_time_to_quality.py [--config configs/radiology_demo.yaml] [--steps 300]
        [--batch-size 8] [--threads 2] [--eval-every 20] [--seed 1234] [--out bench/time_to_quality.json]
    .venv/bin/python scripts/bench_time_to_quality.py --combine RUN.json RUN.json ... [--out POOLED.json]

The recipe is bench_train.py's hf-decoder (Seq2SeqTrainer, the example's collator, peft LoRA on the
decoder's q/v: the like-for-like control of dictune's default mode), trained for --steps batches of the
config's normalized train split in dictune's batch-plan order. Its time: feature extraction + its steps.
dictune is `dictune train` with its defaults (decoder LoRA on cached encoder outputs; both sides use
dictune's default LoRA config and learning rate) and the config's lexicon, but no prompts, as the recipe
shows none (--prompts: the default previous-text and term-list prompts), max_steps = --steps (the same linear schedule), a dev evaluation every
--eval-every steps on the whole dev split. Its time at an evaluation: building the encoder cache + its
steps so far. Neither side's evaluations are counted.

Both are scored by the same code: dictune's dev evaluation (greedy transcripts, term error = 1 - recall
of lexicon terms), the recipe's adapter loaded into the same peft model after dictune's run.
The recipe's checkpoints (every --eval-every steps) are scored the same way, so both sides have a
timeline. Figures: the first dictune evaluation at or below the recipe's final dev term error (ratio =
the recipe's time / dictune's time to it), and, since a small dev split moves by whole term
occurrences, the best level both sides reach by their last step and the time each needs to get there. Needs the config's normalize stage (make demo, or `dictune run
CONFIG --only synthesize,ingest,segment,normalize`).

One dev split of this size moves by whole term occurrences, so one run's ratio is noisy: run it with
several --seed values (the batch order and the LoRA initialisation of both sides) and --combine the outputs:
both timelines averaged step by step over the seeds, the same figures from the means, each seed's beside.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import NO_CONTEXT, draw_items, run_reference, settings_from, summarize


def dictune_run(config: Any, s: Any, args: argparse.Namespace, work_dir: Path) -> tuple[Any, dict[str, Any]]:
    """dictune's default training with dev evaluations; returns the trainer and its timeline."""
    from pipeline.config import config_from_dict
    from pipeline.training.trainer import Trainer

    train = {
        "max_steps": args.steps, "batch_size": args.batch_size, "warmup_steps": s.warmup_steps,
        "train_manifest": s.manifest, "dev_manifest": str(config.stage_dir("normalize") / "dev.jsonl"),
        "eval_steps": args.eval_every, "eval_max_items": 0, "save_steps": 0, "log_steps": args.eval_every,
        "export_best": False, "merge": False, "precision": {"no": "fp32"}.get(s.precision, s.precision),
        "encoder_cache_dir": str(work_dir / "encoder_cache"),  # its own: the build is counted, not reused
        **({} if args.prompts else NO_CONTEXT),
    }  # fmt: skip
    settings = {"name": "time_to_quality", "work_dir": str(work_dir), "seed": s.seed, "train": train}
    if config.lexicon:
        settings["lexicon"] = str(config.lexicon)
    seconds_at: dict[int, float] = {}
    trainer = None

    def note(step: int) -> None:
        seconds_at[step] = trainer.state.train_seconds

    trainer = Trainer(config_from_dict(settings), s.model_dir, progress=False, on_step_end=note)
    summary = trainer.train()
    cache = (summary.get("encoder_cache") or {}).get("seconds", 0.0)
    timeline = [
        {"step": e["step"], "seconds": round(cache + seconds_at[e["step"]], 2),
         "dev_term_error": e.get("dev_term_error"), "dev_wer": e.get("dev_wer")}
        for e in trainer.state.evaluations
    ]  # fmt: skip
    return trainer, {"cache_seconds": round(cache, 2), "timeline": timeline}


def first_at(timeline: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    """The first point of a timeline whose dev term error is at or below `level`."""
    return next((p for p in timeline if p["dev_term_error"] is not None and p["dev_term_error"] <= level), None)


def score_adapter(trainer: Any, adapter_dir: Path) -> dict[str, Any]:
    """The recipe's adapter scored by dictune's dev evaluation: loaded into the same peft model."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from pipeline.training.checkpoint import unwrap

    peft_model = unwrap(trainer.loss_module).model
    result = set_peft_model_state_dict(peft_model, load_peft_weights(str(adapter_dir)))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise SystemExit(f"the recipe's adapter does not fit dictune's model: {missing[:3]} {result.unexpected_keys[:3]}")
    return trainer.evaluate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/radiology_demo.yaml")
    parser.add_argument("--model", default=None, help="default: the config's model.base")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--last-k", type=int, default=3)
    parser.add_argument("--prompts", action="store_true", help="dictune draws its default prompts")
    parser.add_argument("--out", default="bench/time_to_quality.json")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="no training: pool the outputs of runs with different --seed into one figure")  # fmt: skip
    args = parser.parse_args()
    if args.combine:
        from pipeline.files import atomic_write_json

        pooled = combine(args.combine)
        atomic_write_json(args.out, pooled)
        for run in pooled["runs"]:
            level = run["common_level"]
            print(f"seed {run['seed']}: reached the recipe's final {100 * run['target']:.1f}%: "
                  f"{run['ratio'] or 'no'}{'x' if run['ratio'] else ''}; best common level "
                  f"{100 * level['dev_term_error']:.1f}%: {level['ratio']}x")  # fmt: skip
        print(f"\nmean timelines over seeds {', '.join(str(r['seed']) for r in pooled['runs'])}:")
        print_figures(pooled)
        print(f"written {args.out}")
        return 0
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    from pipeline.config import load_config
    from pipeline.files import atomic_write_json
    from pipeline.manifest import read_manifest
    from pipeline.models import resolve_model

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    source = config.stage_dir("normalize") / "train.jsonl"
    if not source.is_file():
        raise SystemExit(f"{source}: not found; run the config's normalize stage first (make demo)")
    model_dir = str(resolve_model(args.model or config.model.base))
    with tempfile.TemporaryDirectory(prefix="time_to_quality_") as tmp:
        manifest = Path(tmp) / "train.jsonl"
        draw_items(source, len(read_manifest(source)), args.seed, manifest)  # all of them, absolute paths
        s = settings_from(args, model_dir, str(manifest))
        print(f"recipe (hf-decoder): {args.steps} steps x {args.batch_size} ...", flush=True)
        start = time.monotonic()
        recipe = run_reference(s, str(Path(tmp) / "hf"), adapt="decoder", save_to=str(Path(tmp) / "hf_adapter"),
                               save_steps=args.eval_every)  # fmt: skip
        recipe_wall = time.monotonic() - start
        recipe_seconds = recipe["prep_seconds"] + sum(recipe["step_wall"])
        print(f"dictune: {args.steps} steps, dev every {args.eval_every} ...", flush=True)
        trainer, ours = dictune_run(config, s, args, Path(tmp) / "dictune")
        print("scoring the recipe's checkpoints ...", flush=True)
        recipe_timeline = []
        # the Trainer's checkpoints before the last step, then the adapter it ends with (as dictune's timeline
        # ends with its final evaluation, whether or not --steps is a multiple of --eval-every)
        for step in [*range(args.eval_every, args.steps, args.eval_every), args.steps]:
            checkpoint = Path(tmp) / "hf" / "hf_out" / f"checkpoint-{step}"
            scores = score_adapter(trainer, checkpoint if step < args.steps else Path(tmp) / "hf_adapter")
            seconds = recipe["prep_seconds"] + sum(recipe["step_wall"][:step])
            recipe_timeline.append({"step": step, "seconds": round(seconds, 2),
                                    "dev_term_error": scores.get("dev_term_error"), "dev_wer": scores.get("dev_wer")})  # fmt: skip
    figures = {
        "recipe": {"seconds": round(recipe_seconds, 2), "process_seconds": round(recipe_wall, 2),
                   **summarize(recipe, s, min(args.last_k, len(recipe["losses"]))),  # median s/step, final loss
                   "dev_term_error": recipe_timeline[-1]["dev_term_error"], "dev_wer": recipe_timeline[-1]["dev_wer"],
                   "timeline": recipe_timeline},
        "dictune": ours,
        **compare_timelines(recipe_timeline, ours["timeline"]),
    }  # fmt: skip
    settings = {"config": args.config, "prompts": args.prompts, "model": model_dir, "steps": args.steps,
                "batch_size": args.batch_size, "threads": args.threads, "eval_every": args.eval_every,
                "precision": s.precision, "warmup": s.warmup_steps, "train_items": len(read_manifest(source)),
                "seed": args.seed}  # fmt: skip
    atomic_write_json(args.out, {"settings": settings, **figures})
    print_figures(figures)
    print(f"written {args.out}")
    return 0


def compare_timelines(recipe: list[dict[str, Any]], ours: list[dict[str, Any]]) -> dict[str, Any]:
    """The recipe's final dev term error and when dictune first reaches it (ratio = the recipe's time over
    dictune's); the best level both reach by their last step and the time each needs to get there."""
    target = recipe[-1]["dev_term_error"]
    reached = first_at(ours, target)
    level = max(target, ours[-1]["dev_term_error"])
    times = {"recipe": first_at(recipe, level), "dictune": first_at(ours, level)}
    return {
        "reached": reached,
        "ratio": round(recipe[-1]["seconds"] / reached["seconds"], 2) if reached and reached["seconds"] else None,
        "common_level": {"dev_term_error": level, **times,
                         "ratio": round(times["recipe"]["seconds"] / times["dictune"]["seconds"], 2)},
    }  # fmt: skip


SAME_SETTINGS = ("config", "prompts", "model", "steps", "batch_size", "threads", "eval_every", "precision", "warmup",
                 "train_items")  # fmt: skip


def combine(paths: list[str]) -> dict[str, Any]:
    """Runs with different seeds and otherwise the same settings: each side's timeline averaged step by step
    (seconds and dev term error; every run scores the same dev split, so the mean of the rates is the pooled
    rate), compared as one run is, and each run's own figures beside it."""
    import json
    from statistics import fmean

    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    for path, run in zip(paths[1:], runs[1:]):
        for key in SAME_SETTINGS:
            if run["settings"].get(key) != runs[0]["settings"].get(key):
                raise SystemExit(f"{path}: settings.{key} {run['settings'].get(key)!r} differs from {paths[0]}'s "
                                 f"{runs[0]['settings'].get(key)!r}; combine runs that differ only in --seed")  # fmt: skip

    def mean_timeline(side: str) -> list[dict[str, Any]]:
        timelines = [r[side]["timeline"] for r in runs]
        if any([p["step"] for p in t] != [p["step"] for p in timelines[0]] for t in timelines):
            raise SystemExit(f"{side}: the runs evaluated at different steps")
        mean = lambda values: None if None in values else fmean(values)
        return [{"step": points[0]["step"], "seconds": round(fmean(p["seconds"] for p in points), 2),
                 **{k: mean([p[k] for p in points]) for k in ("dev_term_error", "dev_wer")}}
                for points in zip(*timelines)]  # fmt: skip

    recipe, ours = mean_timeline("recipe"), mean_timeline("dictune")
    return {
        "settings": {**runs[0]["settings"], "seed": [r["settings"].get("seed") for r in runs]},
        "runs": [{"seed": r["settings"].get("seed"), "target": r["recipe"]["dev_term_error"], "ratio": r["ratio"],
                  "common_level": r["common_level"], "recipe_s_per_step": r["recipe"].get("s_per_step"),
                  "cache_seconds": r["dictune"]["cache_seconds"]} for r in runs],
        "recipe": {"timeline": recipe, "dev_term_error": recipe[-1]["dev_term_error"]},
        "dictune": {"timeline": ours, "cache_seconds": round(fmean(r["dictune"]["cache_seconds"] for r in runs), 2)},
        **compare_timelines(recipe, ours),
    }  # fmt: skip


def print_figures(figures: dict[str, Any]) -> None:
    recipe_timeline, ours, target = figures["recipe"]["timeline"], figures["dictune"], figures["recipe"]["dev_term_error"]
    reached, level = figures["reached"], figures["common_level"]["dev_term_error"]
    print(f"\n{'step':>5} {'recipe s':>9} {'term err':>9} {'dictune s':>10} {'term err':>9}")
    for a, b in zip(recipe_timeline, ours["timeline"]):
        print(f"{a['step']:>5} {a['seconds']:>9} {a['dev_term_error']:>9.3f} {b['seconds']:>10} {b['dev_term_error']:>9.3f}")
    if reached:
        print(f"dictune reached the recipe's final dev term error ({target:.3f}) at step {reached['step']}, "
              f"{reached['seconds']} s (cache {ours['cache_seconds']} s included); the recipe's time over dictune's: "
              f"{figures['ratio']}x")  # fmt: skip
    else:
        print(f"dictune did not reach the recipe's final dev term error ({target:.3f}) within the steps")
    c = figures["common_level"]
    print(f"the best level both reach, {level:.3f}: recipe at step {c['recipe']['step']} ({c['recipe']['seconds']} s), "
          f"dictune at step {c['dictune']['step']} ({c['dictune']['seconds']} s); the recipe's time over dictune's: "
          f"{c['ratio']}x")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
