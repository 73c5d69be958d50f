"""The learning curve: nested deterministic subsets, the quality arm's budget, the sentences, and a tiny
end-to-end curve (train stage + evaluate code) on the tiny random Whisper."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import soundfile
import yaml

from pipeline.config import ConfigError, config_from_dict
from pipeline.curve.plan import draw_order, plan_subsets, quality_split, take_budget
from pipeline.curve.report import build_curve
from pipeline.manifest import Record, write_manifest

SAMPLE_RATE = 16000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SENTENCES = (
    "Bibasilar atelectasis without pleural effusion.",
    "No pneumothorax is seen.",
    "Mild hydronephrosis of the left kidney.",
    "The endotracheal tube is in good position.",
)
GENERAL = ("The weather is cold today.", "Please close the door.")
LEXICON = ("atelectasis", "pleural effusion", "pneumothorax", "hydronephrosis", "endotracheal tube")


def _records(n: int, seed: int = 0, scored: int = 0) -> list[Record]:
    """n records of random durations; the first `scored` carry distinct alignment_wer values."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        extra = {"alignment_wer": round(float(rng.uniform(0, 0.6)), 4) + i * 1e-6} if i < scored else {}
        out.append(Record(f"utt{i:03d}", f"/a/{i}.wav", float(rng.uniform(1.0, 12.0)), "x", extra=extra))
    return out


def _ids(subset) -> set[str]:
    return {r.id for r in subset.records}


# ---------------------------------------------------------------------------------------------- subsets


def test_subsets_are_nested_deterministic_per_seed_and_differ_across_seeds():
    records = _records(200)
    fractions = (0.1, 0.25, 0.5, 1.0)
    plan = plan_subsets(records, fractions, draws=3, seed=1234)
    again = plan_subsets(
        list(reversed(records)), fractions, draws=3, seed=1234
    )  # input order does not matter
    assert [(s.id, [r.id for r in s.records]) for s in plan] == [
        (s.id, [r.id for r in s.records]) for s in again
    ]
    total = sum(r.duration for r in records)
    for draw in range(3):
        subsets = [s for s in plan if s.draw == draw]
        assert [s.fraction for s in subsets] == list(fractions)
        for small, big in itertools.pairwise(subsets):
            assert _ids(small) < _ids(big), "each subset lies inside the next larger one"
        order = draw_order(records, 1234, draw)
        for s in subsets:
            assert s.seconds <= s.fraction * total + 1e-6
            assert [r.id for r in s.records] == [
                r.id for r in order[: len(s.records)]
            ]  # a prefix of the draw
            if len(s.records) < len(order):  # the longest prefix: one more record would break the budget
                assert s.seconds + order[len(s.records)].duration > s.fraction * total
        assert _ids(subsets[-1]) == {r.id for r in records}
    quarter = [_ids(s) for s in plan if s.fraction == 0.25]
    assert quarter[0] != quarter[1] and quarter[1] != quarter[2]
    assert plan_subsets(records, fractions, 1, seed=99)[1].ids != plan[1].ids, "config.seed changes the draws"


def test_take_budget_keeps_at_least_one_record():
    records = _records(5)
    assert len(take_budget(records, 0.0)) == 1
    assert take_budget([], 10.0) == ()


def test_quality_arm_removes_exactly_the_worst_quartile_and_keeps_the_budget():
    records = _records(100, seed=3, scored=40)
    records[50] = records[50].replace(extra={"alignment_wer": "n/a"})  # not a number: counts as clean
    records[51] = records[51].replace(extra={"alignment_wer": None})
    quality = quality_split(records, 0.25)
    scores = sorted((r.extra["alignment_wer"] for r in records[:40]), reverse=True)
    assert quality.scored == 40 and len(quality.removed) == 10
    assert [r.extra["alignment_wer"] for r in quality.removed] == scores[:10]
    assert quality.threshold == scores[9]
    assert {r.id for r in quality.clean} == {r.id for r in records} - {r.id for r in quality.removed}
    assert quality_split(records[:3], 0.25).removed == (
        records[:3][int(np.argmax([r.extra["alignment_wer"] for r in records[:3]]))],
    )

    fractions = (0.25, 0.5, 1.0)
    plan = plan_subsets(records, fractions, draws=2, seed=7, quality=quality)
    removed = {r.id for r in quality.removed}
    clean_total = sum(r.duration for r in quality.clean)
    for draw in range(2):
        random = {s.fraction: s for s in plan if s.draw == draw and s.arm == "random"}
        clean = [s for s in plan if s.draw == draw and s.arm == "clean"]
        for small, big in itertools.pairwise(clean):
            assert _ids(small) <= _ids(big)
        clean_order = [r for r in draw_order(records, 7, draw) if r.id not in removed]
        for s in clean:
            assert not _ids(s) & removed
            assert s.budget_seconds == random[s.fraction].budget_seconds, "the same audio budget as random"
            assert s.seconds <= s.budget_seconds + 1e-6
            assert [r.id for r in s.records] == [r.id for r in clean_order[: len(s.records)]]
            if s.budget_met:
                assert s.seconds + clean_order[len(s.records)].duration > s.budget_seconds
        full = clean[-1]
        assert (
            not full.budget_met
            and math.isclose(full.seconds, clean_total)
            and _ids(full) == {r.id for r in quality.clean}
        )


def test_a_clean_subset_equal_to_a_random_one_is_not_trained_twice():
    records = _records(20, scored=20)
    worst = max(records, key=lambda r: r.extra["alignment_wer"])
    quality = quality_split(records, 0.05)
    assert quality.removed == (worst,)
    plan = plan_subsets(records, (0.2, 1.0), draws=1, seed=1, quality=quality)
    by_id = {s.id: s for s in plan}
    small = by_id["clean-f0.2-s0"]
    if worst.id not in _ids(by_id["random-f0.2-s0"]):
        assert small.same_as == "random-f0.2-s0"
    else:
        assert small.same_as is None
    assert by_id["random-f1-s0"].same_as is None and by_id["clean-f1-s0"].same_as is None


def test_curve_config_values_are_checked():
    with pytest.raises(ConfigError) as e:
        config_from_dict(
            {
                "name": "x",
                "curve": {
                    "fractions": [0.5, 0.25],
                    "seeds": 0,
                    "term_metric": "cer",
                    "quality_drop_fraction": 1.0,
                },
            }
        )
    message = str(e.value)
    for key in ("curve.fractions", "curve.seeds", "curve.term_metric", "curve.quality_drop_fraction"):
        assert key in message


def test_short_override_keys():
    from pipeline.tools.curve import curve_overrides

    assert curve_overrides(["fractions=0.1,0.5", "seeds=3", "train.max_steps=5", "quality_arm=false"]) == [
        "curve.fractions=[0.1,0.5]",
        "curve.seeds=3",
        "train.max_steps=5",
        "curve.quality_arm=false",
    ]


# ---------------------------------------------------------------------------------------------- sentences


def _point(arm, fraction, draw, hours, b_wer, general=0.05, met=True):
    metrics = {
        "wer": b_wer / 2,
        "b_wer": b_wer,
        "u_wer": 0.1,
        "term_error": b_wer,
        "term_f1": 1 - b_wer,
        "general_wer": general,
    }
    return {"id": f"{arm}-{fraction}-{draw}", "arm": arm, "fraction": fraction, "draw": draw, "items": 100 * fraction,
            "hours": hours, "budget_hours": hours, "budget_met": met, "same_as": None, "metrics": metrics,
            "train_seconds": 10.0, "eval_seconds": 5.0, "train": {}, "reused": False}  # fmt: skip


def _meta(quality=None):
    return {"name": "demo", "base_model": "tiny.en", "train_manifest": "train.jsonl", "total_items": 100,
            "total_hours": 1.0, "term_metric": "b_wer", "domain_split": "test", "general_split": "test_general",
            "splits": {"test": 10, "test_general": 5}, "fractions": [0.2, 1.0], "seeds": 2,
            "train": {"mode": "lora", "adapt": "decoder", "max_steps": 300, "batch_size": 8, "learning_rate": 1e-3,
                      "cache_encoder_outputs": "auto", "seed": 1},
            "quality": quality, "prompt": None, "notes": []}  # fmt: skip


def test_the_sentences_come_from_the_numbers(tmp_path):
    from pipeline.curve.report import write_curve

    points = [
        _point("random", 0.2, 0, 0.2, 0.28),
        _point("random", 0.2, 1, 0.2, 0.30),
        _point("random", 1.0, 0, 1.0, 0.19),
        _point("random", 1.0, 1, 1.0, 0.21),
        _point("clean", 0.2, 0, 0.2, 0.24),
        _point("clean", 0.2, 1, 0.2, 0.26),
        _point("clean", 1.0, 0, 0.8, 0.25, met=False),
        _point("clean", 1.0, 1, 0.8, 0.25, met=False),
    ]
    quality = {
        "scored_items": 40,
        "removed_items": 10,
        "removed_hours": 0.2,
        "drop_fraction": 0.25,
        "threshold": 0.41,
        "key": "alignment_wer",
    }
    baselines = {
        "base": {"b_wer": 0.40, "general_wer": 0.04},
        "base+prompt": {"b_wer": 0.33, "general_wer": 0.05},
    }
    comparisons = [  # as pipeline.curve.pools.compare_arms writes them
        {"fraction": 0.2, "arm": "clean", "reference": "random", "split": "test", "metric": "b_wer", "draws": 2,
         "a": 0.29, "b": 0.25, "delta": -0.04, "ci_low": -0.07, "ci_high": -0.01, "verdict": "better"},
        {"fraction": 1.0, "arm": "clean", "reference": "random", "split": "test", "metric": "b_wer", "draws": 2,
         "a": 0.20, "b": 0.25, "delta": 0.05, "ci_low": -0.01, "ci_high": 0.11, "verdict": "no difference shown"},
    ]  # fmt: skip
    steps = [  # as pipeline.curve.pools.compare_steps writes them
        {"arm": "random", "from_fraction": 0.2, "fraction": 1.0, "split": "test", "metric": "b_wer", "draws": 2,
         "a": 0.29, "b": 0.20, "delta": -0.09, "ci_low": -0.12, "ci_high": -0.06, "verdict": "better"},
        {"arm": "random", "from_fraction": 0.2, "fraction": 1.0, "split": "test_general", "metric": "wer",
         "draws": 2, "a": 0.05, "b": 0.05, "delta": 0.0, "ci_low": -0.01, "ci_high": 0.01, "verdict": "no difference shown"},
        {"arm": "random", "from": "base", "from_fraction": 0.0, "fraction": 1.0, "split": "test", "metric": "b_wer",
         "draws": 2, "a": 0.40, "b": 0.20, "delta": -0.20, "ci_low": -0.25, "ci_high": -0.15, "verdict": "better"},
        {"arm": "random", "from": "base", "from_fraction": 0.0, "fraction": 1.0, "split": "test_general",
         "metric": "wer", "draws": 2, "a": 0.04, "b": 0.05, "delta": 0.01, "ci_low": -0.01, "ci_high": 0.03,
         "verdict": "no difference shown"},
    ]  # fmt: skip
    curve = build_curve(_meta(quality), baselines, points, 123.0, comparisons, steps)
    text = " ".join(curve["sentences"])
    assert curve["sentences"][0] == (
        "With 60 minutes of dictation (100 utterances), term error (B-WER) falls from "
        "40.0% to 20.0% (mean of 2 draws, 19.0%–21.0%; -20.0 pt [-25.0, -15.0] against the base model, lower)."
    )
    assert "Half of that gain already comes with 12 minutes (term error (B-WER) 29.0%)" in text
    assert "training beats it from 12 minutes on" in text  # 29% < the prompt's 33%
    # the slope's verdict comes from the step's interval
    assert ("The curve is still falling from 12 minutes to 60 minutes: term error (B-WER) 29.0% to 20.0%, "
            "-9.0 pt [-12.0, -6.0] (draws pooled, 95% paired bootstrap over utterances)") in text  # fmt: skip
    # the quality verdict comes from the intervals only: "better" where the interval excludes zero
    assert "20% budget: 25.0% against 29.0%, difference -4.0 pt [-7.0, -1.0]: better" in text
    assert "100% budget: 25.0% against 20.0%, difference +5.0 pt [-1.0, +11.0]: no difference shown" in text
    assert "bigger beats cleaner" not in text and "cleaning helped" not in text
    write_curve(curve, tmp_path / "q")
    md = (tmp_path / "q" / "curve.md").read_text()
    assert "| 20% | clean | test | b_wer | 29.0 | 25.0 | -4.0 [-7.0, -1.0] | 2 | better |" in md
    assert "| 20% | 100% | test_general | wer | 5.0 | 5.0 | 0.0 [-1.0, 1.0] | no difference shown |" in md
    assert ("General WER (plain English, test_general) rises from 4.0% to 5.0% at 60 minutes: +1.0 pt "
            "[-1.0, +3.0] against the base model, no difference shown.") in text  # the interval's verdict
    assert "| base model | 100% | test | b_wer | 40.0 | 20.0 | -20.0 [-25.0, -15.0] | better |" in md
    rows = {(r["arm"], r["fraction"]): r for r in curve["summary"]}
    assert rows[("random", 1.0)]["term"] == pytest.approx({"mean": 0.20, "min": 0.19, "max": 0.21})
    assert not rows[("clean", 1.0)]["budget_met"]

    worse = [_point("random", 0.2, 0, 0.2, 0.445), _point("random", 1.0, 0, 1.0, 0.44)]
    curve = build_curve(dict(_meta(), seeds=1), baselines, worse, 1.0)
    assert curve["sentences"][0].endswith("term error (B-WER) rises from 40.0% to 44.0% (one draw).")
    assert "no training point beats it" in curve["sentences"][1]
    # without a step interval no verdict on the slope, only the move
    assert curve["sentences"][2] == ("Over the last step, from 12 minutes to 60 minutes, term error (B-WER) moves "
                                     "-0.5 points; no interval was computed, so whether the curve still falls is not shown.")  # fmt: skip
    flat = [{"arm": "random", "from_fraction": 0.2, "fraction": 1.0, "split": "test", "metric": "b_wer", "draws": 1,
             "a": 0.445, "b": 0.44, "delta": -0.005, "ci_low": -0.03, "ci_high": 0.02, "verdict": "no difference shown"}]  # fmt: skip
    steps_curve = build_curve(dict(_meta(), seeds=1), baselines, worse, 1.0, None, flat)
    assert steps_curve["sentences"][2].endswith(
        "-0.5 pt [-3.0, +2.0] (draws pooled, 95% paired bootstrap over utterances): no difference shown, so this "
        "test split cannot tell whether more of the same dictation still helps.")
    written = write_curve(curve, tmp_path)
    assert [p.name for p in written] == ["curve.md", "curve.png"]
    assert "| random 100% | 60.0 | 100 | 1 | 44.0% | 5.0% |" in (tmp_path / "curve.md").read_text()


# ---------------------------------------------------------------------------------------------- end to end


def _write_split(work, name, texts, n, seed, scored=0):
    """n tone clips (one pitch per sentence) in work/normalize/<name>.jsonl; the first `scored` get an
    alignment_wer."""
    rng = np.random.default_rng(seed)
    audio = work / "normalize" / "audio" / name
    audio.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        k = i % len(texts)
        seconds = float(rng.uniform(0.4, 1.2))
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t) + 0.01 * rng.standard_normal(t.size)
        soundfile.write(audio / f"{i:03d}.wav", wave.astype(np.float32), SAMPLE_RATE)
        extra = {"alignment_wer": round(0.1 * i, 2)} if i < scored else {}
        records.append(Record(f"{name}-{i}", f"audio/{name}/{i:03d}.wav", seconds, texts[k], extra=extra))
    write_manifest(work / "normalize" / f"{name}.jsonl", records)


@pytest.fixture
def curve_project(tmp_path, tiny_whisper_dir):
    work = tmp_path / "work"
    _write_split(work, "train", SENTENCES, 12, 0, scored=8)
    _write_split(work, "dev", SENTENCES, 4, 1)
    _write_split(work, "test", SENTENCES, 4, 2)
    _write_split(work, "test_general", GENERAL, 2, 3)
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("\n".join(LEXICON) + "\n", encoding="utf-8")
    data = {
        "name": "curvetest", "work_dir": str(work), "seed": 5, "lexicon": str(lexicon),
        "model": {"base": str(tiny_whisper_dir)},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-2, "warmup_steps": 0, "eval_steps": 0,
                  "log_steps": 1, "generation_max_new_tokens": 4, "eval_batch_size": 4,
                  "encoder_cache_dir": str(tmp_path / "encoder_cache")},
        "evaluate": {"max_new_tokens": 4, "bootstrap_samples": 10},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text("# curve test\n" + yaml.safe_dump(data), encoding="utf-8")
    return path, work


def test_tiny_curve_end_to_end_through_the_cli(curve_project, monkeypatch, capsys):
    import pipeline.training
    from pipeline.cli import main

    config_path, work = curve_project
    assert main(["curve", str(config_path), "fractions=0.5,1.0", "seeds=1"]) == 0
    out = work / "curve"
    curve = json.loads((out / "curve.json").read_text())
    points = {p["id"]: p for p in curve["points"]}
    assert set(points) == {"random-f0.5-s0", "random-f1-s0", "clean-f0.5-s0", "clean-f1-s0"}
    assert set(curve["baselines"]) == {"base", "base+retrieved"}  # the base systems of evaluate.systems
    for values in [*curve["baselines"].values(), *(p["metrics"] for p in points.values())]:
        assert values["b_wer"] is not None and values["general_wer"] is not None
    assert curve["quality"]["scored_items"] == 8 and curve["quality"]["removed_items"] == 2
    removed = [json.loads(line)["id"] for line in (out / "quality_removed.jsonl").read_text().splitlines()]
    assert removed == ["train-7", "train-6"]  # highest alignment_wer first
    assert points["random-f1-s0"]["items"] == 12 and points["clean-f1-s0"]["items"] == 10
    assert not points["clean-f1-s0"]["budget_met"]
    computed = []  # clips each trained point encoded: the first one encodes, the others reuse its outputs
    for point_id, point in points.items():
        subset = {
            json.loads(line)["id"]
            for line in (out / "subsets" / f"{point_id}.jsonl").read_text().splitlines()
        }
        if point["same_as"] is None:
            assert len(subset) == point["items"]
            train_dir = out / "points" / point_id / "train"
            assert (train_dir / "adapter" / "adapter_config.json").is_file()
            assert not (train_dir / "merged").exists() and not (train_dir / "checkpoints").exists()
            computed.append(json.loads((train_dir / "metrics.json").read_text())["encoder_cache"]["computed"])
            assert json.loads((train_dir / "train_config.json").read_text())["resolved"][
                "train_items"
            ] == len(subset)
        if point["arm"] == "clean":
            assert not subset & set(removed)
    assert sorted(computed)[:-1] == [0] * (len(computed) - 1) and max(computed) > 0, computed
    assert any((work.parent / "encoder_cache").rglob("*.npy")), "one encoder cache shared by the points"
    assert (out / "curve.png").read_bytes().startswith(PNG_SIGNATURE)
    md = (out / "curve.md").read_text()
    assert curve["sentences"][0] in md and "![learning curve](curve.png)" in md
    assert curve["sentences"][0].startswith("With ")
    assert capsys.readouterr().out.splitlines()[0] == curve["sentences"][0]
    # the random arm's one step (50% -> 100%) on the curve's term metric and on general WER, with intervals
    assert [(r["from"], r["from_fraction"], r["fraction"], r["split"], r["metric"]) for r in curve["steps"]] == [
        ("random", 0.5, 1.0, "test", "b_wer"), ("random", 0.5, 1.0, "test_general", "wer"),
        ("base", 0.0, 1.0, "test", "b_wer"), ("base", 0.0, 1.0, "test_general", "wer")]  # and the whole gain
    assert all(r["ci_low"] <= r["delta"] <= r["ci_high"] for r in curve["steps"]) and "## Steps of the curve" in md

    def no_training(*args, **kwargs):
        raise AssertionError("an unchanged point must not be trained again")

    monkeypatch.setattr(pipeline.training, "fine_tune", no_training)
    assert main(["curve", str(config_path), "fractions=0.5,1.0", "seeds=1"]) == 0
    again = json.loads((out / "curve.json").read_text())
    assert [p["metrics"] for p in again["points"]] == [p["metrics"] for p in curve["points"]]
    assert all(p["reused"] for p in again["points"]) and not any(p["reused"] for p in curve["points"])
    assert "computed by an earlier run" in (out / "curve.md").read_text()


def test_base_transcripts_of_the_evaluate_stage_are_reused_and_no_scores_skip_the_quality_arm(
    curve_project, monkeypatch
):
    from pipeline import runner
    from pipeline.config import load_config
    from pipeline.curve.run import run_curve
    from pipeline.inference.hf import Transcriber

    config_path, work = curve_project
    _write_split(work, "train", SENTENCES, 8, 0, scored=0)
    config = load_config(config_path, ["curve.fractions=[1.0]", "curve.seeds=1"])
    runner.run_stage(config, "evaluate")  # base and base+retrieved, decoded and cached by the stage
    decoded, encoded = [], []

    class Recorder(Transcriber):
        def encode(self, arrays, progress=False):
            encoded.append(len(arrays))
            return super().encode(arrays, progress)

        def transcribe(self, arrays, prompt=None, progress=False, encoder_states=None):
            decoded.append((self.adapter_dir, prompt, encoder_states is not None))
            return [""] * len(arrays)

    monkeypatch.setattr("pipeline.inference.hf.Transcriber", Recorder)
    curve = run_curve(config)
    assert decoded and all(
        adapter is not None and (prompt is None or set(prompt) == {None}) for adapter, prompt, _ in decoded
    ), (
        "only the adapted model is decoded: the baselines come from the evaluate stage's cache"
    )
    assert all(shared for *_, shared in decoded) and not encoded, (
        "the decoder-only point decodes from the base encoder's states that the evaluate stage stored"
    )
    report = json.loads((work / "evaluate" / "report.json").read_text())
    base = next(r for r in report["headline"]["rows"] if r["system"] == "base")
    assert curve["baselines"]["base"]["b_wer"] == base["b_wer"]
    assert [p["id"] for p in curve["points"]] == ["random-f1-s0"] and curve["quality"] is None
    assert any("quality arm skipped" in note for note in curve["notes"])


@pytest.mark.slow
def test_worker_processes_give_the_in_process_results(curve_project):
    from pipeline.config import load_config
    from pipeline.curve.run import run_curve

    config_path, work = curve_project
    overrides = ["curve.fractions=[0.5, 1.0]", "curve.seeds=2", "curve.quality_arm=false", "threads=1"]
    parallel = run_curve(load_config(config_path, [*overrides, "curve.workers=2"]))
    assert len(parallel["points"]) == 4 and not any(p["reused"] for p in parallel["points"])
    points = sorted((work / "curve" / "points").iterdir())
    adapters = [(p / "train" / "adapter" / "adapter_model.safetensors").read_bytes() for p in points]
    assert len(set(adapters)) == 4, "every point trained its own adapter"
    for point in points:
        (point / "result.json").unlink()  # force the in-process run to train again
    serial = run_curve(load_config(config_path, [*overrides, "curve.workers=1"]))
    assert not any(p["reused"] for p in serial["points"])
    assert [(p / "train" / "adapter" / "adapter_model.safetensors").read_bytes() for p in points] == adapters
    assert [(p["id"], p["metrics"]) for p in serial["points"]] == [
        (p["id"], p["metrics"]) for p in parallel["points"]
    ]


def test_extra_training_manifests_join_the_pool_and_each_point_trains_on_its_subset_only(tmp_path):
    from pipeline.config import config_from_dict
    from pipeline.curve.run import PointJob, _point_config, _train_records
    from pipeline.manifest import Record, write_manifest

    main, extra = tmp_path / "train.jsonl", tmp_path / "long.jsonl"
    write_manifest(main, [Record(f"s{i}", f"a/s{i}.wav", 3.0, "x") for i in range(2)])
    write_manifest(extra, [Record("long__0", "b/l.wav", 20.0, "y", extra={"alignment_wer": 0.2})])
    config = config_from_dict(
        {"name": "t", "train": {"train_manifest": str(main), "extra_train_manifests": [str(extra)], "eval_steps": 100}}
    )
    records, path = _train_records(config)
    assert path == main
    assert [r.id for r in records] == ["s0", "s1", "long__0"]
    assert records[2].audio_filepath == str((tmp_path / "b" / "l.wav").resolve())
    job = PointJob("random-f1-s0", 0, tmp_path / "subset.jsonl", tmp_path / "p")
    point = _point_config(config, job)
    assert point.train.train_manifest == str(job.manifest)
    assert point.train.extra_train_manifests == ()
    assert point.train.eval_steps == 0, "one dev evaluation, at the end: each point is the model after max_steps"


def test_the_quality_sentence_weighs_every_equal_budget_and_claims_only_what_the_intervals_show():
    points = [_point("random", f, d, f, b) for f, d, b in [(0.2, 0, 0.30), (0.5, 0, 0.22), (1.0, 0, 0.18)]]
    points += [_point("clean", f, d, f, b) for f, d, b in [(0.2, 0, 0.32), (0.5, 0, 0.20)]]
    points += [_point("clean", 1.0, 0, 0.9, 0.19, met=False)]
    quality = {"scored_items": 40, "removed_items": 10, "removed_hours": 0.1, "drop_fraction": 0.25,
               "threshold": 0.4, "key": "alignment_wer"}  # fmt: skip
    meta = dict(_meta(quality), seeds=1, fractions=[0.2, 0.5, 1.0])
    # no intervals, no verdict: the spread of draws is not a confidence interval
    curve = build_curve(meta, {"base": {"b_wer": 0.4}}, points, 1.0)
    assert not any("alignment-scored" in s for s in curve["sentences"])
    rows = [
        {"fraction": f, "arm": "clean", "reference": "random", "split": "test", "metric": "b_wer", "draws": 1,
         "a": a, "b": b, "delta": b - a, "ci_low": b - a - 0.05, "ci_high": b - a + 0.05, "verdict": "no difference shown"}
        for f, a, b in [(0.2, 0.30, 0.32), (0.5, 0.22, 0.20), (1.0, 0.18, 0.19)]
    ]  # fmt: skip
    rows.append(dict(rows[0], metric="wer", verdict="worse"))  # another metric: not the curve's
    curve = build_curve(meta, {"base": {"b_wer": 0.4}}, points, 1.0, rows)
    text = " ".join(curve["sentences"])
    for budget, b, a in [("20%", "32.0%", "30.0%"), ("50%", "20.0%", "22.0%"), ("100%", "19.0%", "18.0%")]:
        assert f"{budget} budget: {b} against {a}, difference" in text
    assert text.count("no difference shown") == 3 and "worse" not in text


# ---------------------------------------------------------------------------------------------- pools


def _rec(rid, seconds):
    from pipeline.manifest import Record

    return Record(rid, f"/a/{rid}.wav", seconds, "text")


def test_pool_arms_get_the_same_budget_from_the_smallest_pool():
    from pipeline.curve.pools import plan_pool_subsets

    pools = {
        "verbatim": [_rec(f"v{i}", 10.0) for i in range(20)],  # 200 s
        "verified": [_rec(f"v{i}", 5.0) for i in range(20)],  # 100 s: the smallest
    }
    subsets = plan_pool_subsets(pools, [0.5, 1.0], draws=3, seed=7)
    assert len(subsets) == 2 * 2 * 3
    for s in subsets:
        assert s.budget_seconds == pytest.approx(s.fraction * 100.0)
        assert s.seconds <= s.budget_seconds + 1e-6
    half = {(s.arm, s.draw): s for s in subsets if s.fraction == 0.5}
    assert half[("verbatim", 0)].seconds == pytest.approx(50.0) and half[("verified", 0)].seconds == pytest.approx(50.0)
    assert half[("verbatim", 0)].ids != half[("verbatim", 1)].ids  # draws differ
    with pytest.raises(ValueError):
        plan_pool_subsets({"only": pools["verbatim"]}, [1.0], 1, 7)


def test_steps_compare_each_amount_of_the_main_arm_with_the_one_before():
    import numpy as np

    from pipeline.curve.pools import compare_steps

    rng = np.random.default_rng(3)

    def counts(rate, n=150):
        m = np.zeros((n, 18))
        m[:, 1] = 10  # w_ref: 10 words per utterance
        m[:, 0] = rng.binomial(10, rate, n)
        return m

    class Options:
        domain_split, general_split = "test", "test_general"

    config = type("C", (), {"lexicon": None, "seed": 1, "curve": type("Curve", (), {"term_metric": "wer"})})
    points = [_point(arm, f, d, f, 0.2) for arm in ("random", "clean") for f in (0.25, 0.5, 1.0) for d in (0, 1)]
    half = counts(0.2)
    matrices = {("random", 0.25, "test"): counts(0.4), ("random", 0.5, "test"): half,
                ("random", 1.0, "test"): half[rng.permutation(len(half))], ("clean", 0.5, "test"): counts(0.9)}  # fmt: skip
    rows = compare_steps(config, points, matrices, Options)
    assert [(r["arm"], r["from_fraction"], r["fraction"], r["draws"]) for r in rows] == [
        ("random", 0.25, 0.5, 2), ("random", 0.5, 1.0, 2)]  # the main arm only; no general split counts given
    assert rows[0]["verdict"] == "better" and rows[0]["delta"] == pytest.approx(rows[0]["b"] - rows[0]["a"])
    assert rows[1]["delta"] == 0 and rows[1]["verdict"] == "no difference shown"  # the same errors, shuffled
    matrices[("base", 0.0, "test")] = counts(0.6)  # the base model's counts: the whole gain is compared too
    gain = compare_steps(config, points, matrices, Options)[-1]
    assert (gain["from"], gain["arm"], gain["fraction"], gain["verdict"]) == ("base", "random", 1.0, "better")


def test_arm_verdicts_need_the_whole_interval_on_one_side():
    import numpy as np

    from pipeline.bootstrap import matrix_bootstrap
    from pipeline.curve.pools import verdict

    assert verdict(0.01, 0.05) == "worse" and verdict(-0.05, -0.01) == "better"
    assert verdict(-0.01, 0.05) == "no difference shown" and verdict(None, None) == "not measurable"
    rng = np.random.default_rng(0)
    n = 200
    ref = np.zeros((n, 18))
    ref[:, 1] = 10  # w_ref: 10 words per utterance
    ref[:, 0] = rng.binomial(10, 0.1, n)  # ~10% WER
    much_worse = ref.copy()
    much_worse[:, 0] = rng.binomial(10, 0.3, n)
    same = ref.copy()
    same[:, 0] = rng.binomial(10, 0.1, n)
    d = matrix_bootstrap(ref, much_worse, ["wer"], 500, 1)["wer"]
    assert verdict(d.ci_low, d.ci_high) == "worse" and d.delta == pytest.approx(d.b - d.a)
    d = matrix_bootstrap(ref, same, ["wer"], 500, 1)["wer"]
    assert d.ci_low < 0 < d.ci_high  # two draws of the same error rate


def test_a_pools_curve_says_each_arm_against_the_first_with_its_interval():
    points = [_point(arm, 0.8, d, 0.5, b) for arm, b in [("verbatim", 0.33), ("raw", 0.34)] for d in range(3)]
    rows = [{"fraction": 0.8, "arm": "raw", "reference": "verbatim", "split": "test", "metric": "b_wer", "draws": 3,
             "a": 0.33, "b": 0.34, "delta": 0.01, "ci_low": -0.02, "ci_high": 0.04, "verdict": "no difference shown"}]  # fmt: skip
    meta = dict(_meta(), fractions=[0.8], seeds=3, pools={"verbatim": "v.jsonl", "raw": "r.jsonl"})
    curve = build_curve(meta, {"base": {"b_wer": 0.4, "general_wer": 0.03}}, points, 1.0, rows)
    text = " ".join(curve["sentences"])
    assert curve["sentences"][0].startswith("With 30 minutes of dictation")  # the first pool leads
    assert ("Raw against verbatim at the same 30 minutes (draws pooled, 95% paired bootstrap over utterances): "
            "term error (B-WER) 34.0% against 33.0%, difference +1.0 pt [-2.0, +4.0]: no difference shown.") in text
