"""scripts/bench_time_to_quality.py: the figures from two timelines, and several seeds pooled into one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_time_to_quality.py"
spec = importlib.util.spec_from_file_location("bench_time_to_quality", SCRIPT)
ttq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ttq)

SETTINGS = {"config": "c.yaml", "prompts": False, "model": "m", "steps": 60, "batch_size": 8, "threads": 2,
            "eval_every": 20, "precision": "bf16", "warmup": 20, "train_items": 624}  # fmt: skip


def timeline(seconds, errors):
    return [{"step": 20 * (k + 1), "seconds": s, "dev_term_error": e, "dev_wer": e / 2}
            for k, (s, e) in enumerate(zip(seconds, errors))]  # fmt: skip


def run_file(tmp_path, seed, recipe, ours, **settings):
    figures = {"recipe": {"timeline": recipe, "dev_term_error": recipe[-1]["dev_term_error"], "s_per_step": 2.0},
               "dictune": {"timeline": ours, "cache_seconds": 100.0}, **ttq.compare_timelines(recipe, ours)}  # fmt: skip
    path = tmp_path / f"run{seed}.json"
    path.write_text(json.dumps({"settings": {**SETTINGS, "seed": seed, **settings}, **figures}))
    return str(path)


def test_one_run_reaches_the_recipes_final_level_and_the_best_common_one():
    recipe = timeline([50, 100, 150], [0.6, 0.4, 0.3])
    ours = timeline([110, 120, 130], [0.5, 0.3, 0.35])
    got = ttq.compare_timelines(recipe, ours)
    assert got["reached"]["step"] == 40 and got["ratio"] == pytest.approx(150 / 120, abs=0.01)
    # the best level both reach by their last step: max(recipe's final 0.3, dictune's final 0.35)
    level = got["common_level"]
    assert level["dev_term_error"] == 0.35 and level["recipe"]["step"] == 60 and level["dictune"]["step"] == 40
    assert level["ratio"] == pytest.approx(150 / 120, abs=0.01)
    never = ttq.compare_timelines(recipe, timeline([110, 120, 130], [0.5, 0.45, 0.4]))
    assert never["reached"] is None and never["ratio"] is None


def test_seeds_are_pooled_step_by_step(tmp_path):
    a = run_file(tmp_path, 1, timeline([50, 100, 150], [0.6, 0.4, 0.3]), timeline([110, 120, 130], [0.5, 0.3, 0.35]))
    b = run_file(tmp_path, 2, timeline([60, 110, 160], [0.6, 0.5, 0.4]), timeline([90, 100, 110], [0.5, 0.5, 0.3]))
    pooled = ttq.combine([a, b])
    assert pooled["settings"]["seed"] == [1, 2] and [r["seed"] for r in pooled["runs"]] == [1, 2]
    assert [p["seconds"] for p in pooled["recipe"]["timeline"]] == [55, 105, 155]
    assert [p["dev_term_error"] for p in pooled["dictune"]["timeline"]] == pytest.approx([0.5, 0.4, 0.325])
    # the recipe's mean final 0.35: dictune's mean first at or below it at step 60, 120 s
    assert pooled["reached"]["step"] == 60 and pooled["ratio"] == pytest.approx(155 / 120, abs=0.01)
    assert pooled["runs"][1]["ratio"] == pytest.approx(160 / 110, abs=0.01)  # each seed's own figure kept
    other = run_file(tmp_path, 3, timeline([50, 100, 150], [0.6, 0.4, 0.3]), timeline([1, 2, 3], [0.5, 0.3, 0.3]),
                     steps=300)  # fmt: skip
    with pytest.raises(SystemExit, match="settings.steps 300 differs"):
        ttq.combine([a, other])
