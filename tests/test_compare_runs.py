"""scripts/compare_runs.py: two arms of one or several runs each, scored on the same utterances."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipeline.lexicon import Lexicon

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

REFS = {"u1": "bibasilar atelectasis is seen", "u2": "no pleural effusion", "u3": "the heart is normal"}


def run_dir(root: Path, name: str, hyps: dict[str, str], settings: dict | None = None) -> Path:
    out = root / name / "evaluate" / "transcripts" / "adapted"
    out.mkdir(parents=True)
    rows = [{"id": k, "ref_norm": REFS[k], "hyp_norm": hyps.get(k, REFS[k])} for k in REFS]
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = {"base_model": "tiny.en", "decoding": {"num_beams": 1, "batch_size": 8}, "prompt": None}
    (root / name / "evaluate" / "report.json").write_text(json.dumps({**report, **(settings or {})}))
    return root / name


def rows_by_metric(rows):
    return {r["metric"]: r for r in rows}


def test_several_runs_per_arm_pool_each_utterance(tmp_path):
    seen, unseen = Lexicon(["bibasilar atelectasis"]), Lexicon(["pleural effusion"])
    base = [run_dir(tmp_path, "b1", {"u1": "by bezel or atelectasis is seen"}),
            run_dir(tmp_path, "b2", {"u2": "no plural effusion"})]  # fmt: skip
    new = [run_dir(tmp_path, "n1", {}), run_dir(tmp_path, "n2", {"u3": "the hart is normal"})]
    rows = compare_runs.compare(base, new, "adapted", ["test"], seen, unseen, 0, samples=200)
    got = rows_by_metric(rows)
    # the seen term's 2 words: b1 gets one wrong, b2 none; the arm's figure is the mean of its runs' figures
    assert got["B-WER seen"]["base_runs"] == [0.5, 0.0] and got["B-WER seen"]["new_runs"] == [0.0, 0.0]
    assert got["B-WER seen"]["a"] == pytest.approx(0.25) and got["B-WER seen"]["delta"] == pytest.approx(-0.25)
    assert got["B-WER unseen"]["base_runs"] == [0.0, 0.5] and got["B-WER unseen"]["a"] == pytest.approx(0.25)
    # WER: 11 reference words per run; b1 has a substitution and two insertions
    wer = got["WER"]
    assert wer["base_runs"] == pytest.approx([3 / 11, 1 / 11]) and wer["new_runs"] == pytest.approx([0, 1 / 11])
    assert wer["a"] == pytest.approx(2 / 11) and wer["b"] == pytest.approx(0.5 / 11)
    assert wer["ci_low"] < wer["delta"] < wer["ci_high"]


def test_runs_must_score_the_same_utterances(tmp_path):
    base = [run_dir(tmp_path, "b1", {})]
    odd = run_dir(tmp_path, "n1", {})
    path = odd / "evaluate" / "transcripts" / "adapted" / "test.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:2]))
    with pytest.raises(SystemExit, match="n1 scored different utterances"):
        compare_runs.compare(base, [odd], "adapted", ["test"], Lexicon([]), Lexicon([]), 0)
    with pytest.raises(SystemExit, match="not found"):
        compare_runs.compare(base, [tmp_path / "none"], "adapted", ["test"], Lexicon([]), Lexicon([]), 0)


def test_runs_must_be_evaluated_alike(tmp_path):
    base = [run_dir(tmp_path, "b1", {}), run_dir(tmp_path, "b2", {})]
    beam = run_dir(tmp_path, "n1", {}, {"decoding": {"num_beams": 5, "batch_size": 8}})
    with pytest.raises(SystemExit, match="n1/evaluate/report.json: decoding .* differs from .*b1's"):
        compare_runs.compare(base, [beam], "adapted", ["test"], Lexicon([]), Lexicon([]), 0)
    other_model = run_dir(tmp_path, "n2", {}, {"base_model": "base"})
    with pytest.raises(SystemExit, match="base_model 'base' differs"):
        compare_runs.compare(base, [other_model], "adapted", ["test"], Lexicon([]), Lexicon([]), 0)
    # evaluated alike: compared
    assert compare_runs.compare(base, base, "adapted", ["test"], Lexicon([]), Lexicon([]), 0, samples=50)


def test_renderings_of_one_sentence_are_drawn_together(tmp_path):
    """The same sentences read by three voices: the same interval as one reading each, not a narrower one."""
    def arm(name: str, hyps: dict[str, str], voices: int) -> Path:
        out = tmp_path / name / "evaluate" / "transcripts" / "adapted"
        out.mkdir(parents=True)
        rows = [{"id": f"{k}.v{v}", "ref_norm": REFS[k], "hyp_norm": hyps.get(k, REFS[k])}
                for k in REFS for v in range(voices)]  # fmt: skip
        (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / name / "evaluate" / "report.json").write_text(json.dumps({"base_model": "tiny.en"}))
        return tmp_path / name

    wrong = {"u1": "by bezel or atelectasis is seen", "u3": "the hart is normal"}
    rows = {}
    for voices in (1, 3):
        base, new = arm(f"b{voices}", wrong, voices), arm(f"n{voices}", {}, voices)
        got = rows_by_metric(compare_runs.compare([base], [new], "adapted", ["test"], Lexicon([]), Lexicon([]), 0,
                                                  samples=500))  # fmt: skip
        rows[voices] = got["WER"]
    assert rows[3]["delta"] == pytest.approx(rows[1]["delta"])
    assert (rows[3]["ci_low"], rows[3]["ci_high"]) == pytest.approx((rows[1]["ci_low"], rows[1]["ci_high"]))
    assert rows[1]["ci_low"] < rows[1]["delta"] < 0


def test_the_base_arm_can_be_another_system_of_the_same_runs(tmp_path):
    runs = [run_dir(tmp_path, "r1", {"u3": "the hart is normal"}), run_dir(tmp_path, "r2", {})]
    for d in runs:  # the base model of both runs got u1's term wrong
        out = d / "evaluate" / "transcripts" / "base"
        out.mkdir()
        rows = [{"id": k, "ref_norm": v, "hyp_norm": "by bezel or atelectasis is seen" if k == "u1" else v}
                for k, v in REFS.items()]  # fmt: skip
        (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = Lexicon(["bibasilar atelectasis"])
    got = rows_by_metric(compare_runs.compare(runs, runs, "adapted", ["test"], seen, Lexicon([]), 0, samples=200,
                                              base_system="base"))  # fmt: skip
    assert got["B-WER seen"]["base_runs"] == [0.5, 0.5] and got["B-WER seen"]["new_runs"] == [0.0, 0.0]
    assert got["WER"]["base_runs"] == pytest.approx([3 / 11, 3 / 11])
    assert got["WER"]["new_runs"] == pytest.approx([1 / 11, 0])
    same = rows_by_metric(compare_runs.compare(runs, runs, "adapted", ["test"], seen, Lexicon([]), 0, samples=200))
    assert same["WER"]["delta"] == 0


def test_a_plus_split_pools_two_splits(tmp_path):
    seen, unseen = Lexicon(["bibasilar atelectasis"]), Lexicon(["pleural effusion"])
    base, new = run_dir(tmp_path, "b1", {"u1": "by bezel or atelectasis is seen"}), run_dir(tmp_path, "n1", {})
    for run, hyps in ((base, {"v1": "no plural effusion"}), (new, {})):
        rows = [{"id": "v1", "ref_norm": "no pleural effusion", "hyp_norm": hyps.get("v1", "no pleural effusion")}]
        (run / "evaluate" / "transcripts" / "adapted" / "more.jsonl").write_text(json.dumps(rows[0]) + "\n")
    got = rows_by_metric(compare_runs.compare([base], [new], "adapted", ["test+more"], seen, unseen, 0, samples=50))
    assert got["B-WER seen"]["a"] == 0.5 and got["B-WER unseen"]["a"] == pytest.approx(1 / 4)  # u2 + v1: 4 words
    assert got["WER"]["a"] == pytest.approx(4 / 14)  # test: 3 errors in 11 words; more: 1 in 3
    twice = tmp_path / "b1" / "evaluate" / "transcripts" / "adapted" / "again.jsonl"
    twice.write_text((tmp_path / "b1" / "evaluate" / "transcripts" / "adapted" / "test.jsonl").read_text())
    with pytest.raises(SystemExit, match="cannot pool"):
        compare_runs.transcripts(base, "adapted", "test+again")
