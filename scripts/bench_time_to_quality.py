"""Time to quality: the wall time dictune's default training needs to reach the dev term error that the
Hugging Face recipe ends with, on the demo's data.

    .venv/bin/python scripts/bench_time_to_quality.py [--config configs/radiology_demo.yaml] [--steps 300]
        [--batch-size 8] [--threads 2] [--eval-every 20] [--out bench/time_to_quality.json]

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
Figure: the first dictune evaluation at or below the recipe's final dev term error; ratio = the
recipe's time / dictune's time to it. Needs the config's normalize stage (make demo, or `dictune run
CONFIG --only synthesize,ingest,segment,normalize`).
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
from bench_train import NO_CONTEXT, draw_items, run_reference, settings_from


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
    args = parser.parse_args()
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
        recipe = run_reference(s, str(Path(tmp) / "hf"), adapt="decoder", save_to=str(Path(tmp) / "hf_adapter"))
        recipe_wall = time.monotonic() - start
        recipe_seconds = recipe["prep_seconds"] + sum(recipe["step_wall"])
        print(f"dictune: {args.steps} steps, dev every {args.eval_every} ...", flush=True)
        trainer, ours = dictune_run(config, s, args, Path(tmp) / "dictune")
        recipe_scores = score_adapter(trainer, Path(tmp) / "hf_adapter")
    target = recipe_scores.get("dev_term_error")
    reached = next((p for p in ours["timeline"] if p["dev_term_error"] is not None and p["dev_term_error"] <= target), None)
    figures = {
        "recipe": {"seconds": round(recipe_seconds, 2), "prep_seconds": round(recipe["prep_seconds"], 2),
                   "s_per_step": round(sum(recipe["step_wall"]) / len(recipe["step_wall"]), 4),
                   "process_seconds": round(recipe_wall, 2), "dev_term_error": target,
                   "dev_wer": recipe_scores.get("dev_wer"), "final_train_loss":
                   round(sum(recipe["losses"][-args.last_k:]) / min(args.last_k, len(recipe["losses"])), 4)},
        "dictune": ours,
        "reached": reached,
        "ratio": round(recipe_seconds / reached["seconds"], 2) if reached and reached["seconds"] else None,
    }  # fmt: skip
    settings = {"config": args.config, "prompts": args.prompts, "model": model_dir, "steps": args.steps, "batch_size": args.batch_size,
                "threads": args.threads, "eval_every": args.eval_every, "precision": s.precision,
                "warmup": s.warmup_steps, "train_items": len(read_manifest(source))}  # fmt: skip
    atomic_write_json(args.out, {"settings": settings, **figures})
    print(f"\nrecipe: {figures['recipe']['seconds']} s ({figures['recipe']['prep_seconds']} s features), "
          f"dev term error {target}")  # fmt: skip
    for point in ours["timeline"]:
        print(f"dictune step {point['step']:>4}: {point['seconds']:>8} s, dev term error {point['dev_term_error']}")
    if reached:
        print(f"dictune reached the recipe's final dev term error at step {reached['step']}, {reached['seconds']} s: "
              f"{figures['ratio']}x less time (cache {ours['cache_seconds']} s included)")  # fmt: skip
    else:
        print("dictune did not reach the recipe's final dev term error within the steps")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
