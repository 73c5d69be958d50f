"""The report: numbers built from metrics scores, report.md tables and PNG plots."""

from __future__ import annotations

import pytest

from pipeline.lexicon import Lexicon
from pipeline.metrics import score
from pipeline.report import ReportOptions, build_report, headline_table, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEXICON = Lexicon(["pleural effusion", "bibasilar atelectasis", "pneumothorax"])
REFS = ["no pleural effusion", "bibasilar atelectasis is seen", "no pneumothorax"]
IDS = ["u1", "u2", "u3"]
BASE = ["no plural effusion", "by basilar atelectasis is seen", "no pneumothorax"]
ADAPTED = ["no pleural effusion", "bibasilar atelectasis is seen", "no new mother acts"]
GENERAL_REFS = ["the weather is cold"]


def _report(systems: dict[str, list[str]], general: dict[str, list[str]] | None = None, samples: int = 200):
    scores = {"test": {name: score(REFS, hyps, LEXICON) for name, hyps in systems.items()}}
    ids = {"test": IDS}
    if general:
        scores["test_general"] = {name: score(GENERAL_REFS, hyps, LEXICON) for name, hyps in general.items()}
        ids["test_general"] = ["g1"]
    meta = {"name": "demo", "base_model": "tiny.en", "systems": list(systems), "notes": ["a note"],
            "splits": {split: {"utterances": len(i), "kind": "domain"} for split, i in ids.items()}}
    options = ReportOptions("test", "test_general" if general else None, samples, seed=1, report_examples=2)
    return build_report(meta, scores, ids, options)


def test_headline_numbers_match_hand_computed_metrics():
    report = _report({"base": BASE, "adapted": ADAPTED}, {"base": ["the weather is old"], "adapted": GENERAL_REFS})
    rows = {r["system"]: r for r in report["headline"]["rows"]}
    # base: pleural->plural (S), bibasilar->by basilar (S + I) = 3 errors / 9 reference words
    assert rows["base"]["wer"] == pytest.approx(3 / 9)
    # biased reference words: pleural effusion bibasilar atelectasis pneumothorax = 5; 2 substitutions
    assert rows["base"]["b_wer"] == pytest.approx(2 / 5)
    assert rows["base"]["u_wer"] == pytest.approx(1 / 4)  # the insertion "basilar" is not a lexicon word
    assert rows["base"]["term_error"] == pytest.approx(2 / 3)
    assert rows["base"]["term_f1"] == pytest.approx(2 * 1 / (3 + 1))
    assert rows["base"]["general_wer"] == pytest.approx(1 / 4)
    # adapted: pneumothorax -> new mother acts (S + 2 I)
    assert rows["adapted"]["wer"] == pytest.approx(3 / 9)
    assert rows["adapted"]["b_wer"] == pytest.approx(1 / 5)  # "mother", "acts" are not lexicon words: U
    assert rows["adapted"]["u_wer"] == pytest.approx(2 / 4)
    assert rows["adapted"]["term_error"] == pytest.approx(1 / 3)
    assert rows["adapted"]["general_wer"] == 0.0
    table = headline_table(report)
    assert "| base | 33.3 | 40.0 | 25.0 | 50.0 | 66.7 | 25.0 |" in table


def test_comparisons_carry_paired_bootstrap_intervals():
    report = _report({"base": BASE, "adapted": ADAPTED}, {"base": ["the weather is old"], "adapted": GENERAL_REFS})
    by_key = {(c["split"], c["metric"]): c for c in report["comparisons"]}
    term = by_key[("test", "term_error")]
    assert term["system"] == "adapted" and term["baseline"] == "base"
    assert term["delta"] == pytest.approx(1 / 3 - 2 / 3)
    assert term["ci_low"] <= term["delta"] <= term["ci_high"]
    assert ("test_general", "wer") in by_key and ("test_general", "term_error") not in by_key


def test_term_table_and_examples_name_fixed_and_worse_terms():
    report = _report({"base": BASE, "adapted": ADAPTED})
    rows = {r["display"]: r for r in report["terms"]["rows"]}
    assert (rows["pleural effusion"]["misses_before"], rows["pleural effusion"]["misses_after"]) == (1, 0)
    assert (rows["pneumothorax"]["misses_before"], rows["pneumothorax"]["misses_after"]) == (0, 1)
    assert rows["pneumothorax"]["wrong_renderings_after"] == [{"text": "new mother acts", "count": 1}]
    examples = report["examples"]
    assert [e["id"] for e in examples["fixed"]] == ["u2", "u1"]  # both fixed; u2 had more errors
    assert [e["id"] for e in examples["still_wrong"]] == ["u3"]


def test_write_report_makes_markdown_and_pngs(tmp_path):
    report = _report({"base": BASE, "base+prompt": BASE, "adapted": ADAPTED})
    written = write_report(report, tmp_path)
    assert {p.name for p in written} == {"report.md", "metrics.png", "terms.png"}
    for name in ("metrics.png", "terms.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    md = (tmp_path / "report.md").read_text()
    assert "| base+prompt |" in md and "- note: a note" in md
    improved = md.split("### The 2 terms that improved most")[1].split("###")[0]
    assert "| bibasilar atelectasis |" in improved and "| pleural effusion |" in improved
    worse = md.split("### Terms that got worse")[1]
    assert "| pneumothorax | 1 | 0 | 1 |" in worse and "“new mother acts” ×1" in worse
    assert "![terms](terms.png)" in md


def test_base_only_report_without_lexicon_has_no_term_sections(tmp_path):
    scores = {"test": {"base": score(REFS, BASE)}}
    options = ReportOptions("test", None, 50, seed=1)
    report = build_report({"name": "x", "systems": ["base"]}, scores, {"test": IDS}, options)
    assert report["headline"]["rows"][0]["term_error"] is None
    assert "terms" not in report and report["comparisons"] == []
    written = write_report(report, tmp_path)
    assert {p.name for p in written} == {"report.md", "metrics.png"}
    assert "| base | 33.3 | – | – | – | – | – |" in (tmp_path / "report.md").read_text()


def test_terms_section_counts_every_improved_term_not_only_the_listed_ones():
    from pipeline.report import render_markdown

    rows = [
        {"display": f"term{i}", "occurrences": 2, "misses_before": 2, "misses_after": 0, "error_before": 1.0,
         "error_after": 0.0}
        for i in range(5)
    ] + [{"display": "worse", "occurrences": 1, "misses_before": 0, "misses_after": 1, "error_before": 0.0,
          "error_after": 1.0}]  # fmt: skip
    report = {"terms": {"before": "base", "after": "adapted", "split": "test", "rows": rows}, "report_terms": 2}
    text = render_markdown(report, [])
    assert "5 of 6 terms improved, 1 got worse." in text
    assert "### The 2 terms that improved most" in text


CLINICAL_REFS = ["no pneumothorax", "left pleural effusion", "a 5 mm nodule", "no focal consolidation"] * 5
CLINICAL_IDS = [f"c{k}" for k in range(len(CLINICAL_REFS))]


def test_clinical_section_counts_every_system_with_intervals_and_examples(tmp_path):
    base = [r.replace("no ", "").replace("left", "right").replace("mm", "cm") for r in CLINICAL_REFS]
    adapted = list(CLINICAL_REFS)
    adapted[0] = "pneumothorax"  # one negation error left
    systems = {"base": base, "adapted": adapted}
    scores = {"test": {name: score(CLINICAL_REFS, hyps) for name, hyps in systems.items()}}
    options = ReportOptions("test", None, 200, seed=1, report_examples=2)
    report = build_report({"name": "x", "systems": list(systems)}, scores, {"test": CLINICAL_IDS}, options)
    counts = report["results"]["test"]["base"]["clinical"]
    assert (counts["negation"], counts["laterality"], counts["unit"], counts["report_share"]) == (10, 5, 5, 1.0)
    assert counts["grouped_by_report_id"] is False
    section = report["clinical"]
    share = next(c for c in section["comparisons"] if c["metric"] == "clinical_report_share")
    assert (share["system"], share["a"], share["b"]) == ("adapted", 1.0, 0.05)
    assert share["ci_low"] <= share["delta"] <= share["ci_high"] < 0
    negation = section["kinds"]["negation"]
    assert [(e["system"], e["id"], e["change"]) for e in negation] == [("base", "c0", "no -> (none)"),
                                                                      ("adapted", "c0", "no -> (none)")]  # fmt: skip
    assert [e["system"] for e in section["kinds"]["measurement"]] == ["base", "base"]  # adapted has none
    write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "each utterance is counted as its own report" in md
    assert "| test | base | 20 | 20 | 10 | 5 | 5 | 100.0 | 100.0 | – | – |" in md
    row = next(line for line in md.splitlines() if line.startswith("| test | adapted | 20 | 20 | 1 | 0 | 0 | 5.0 |"))
    assert row.count("[") == 2 and "| -95.0 [" in row
    assert "- `c2`, base: unit `5 mm -> 5 cm`" in md and "  - reference: a 5 mm nodule" in md
