"""`dictune score` end to end through pipeline.cli.main."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main


@pytest.fixture
def files(tmp_path):
    def write(name: str, text: str | bytes):
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path

    return write


def test_score_prints_all_metrics(files, capsys):
    ref = files("ref.txt", "Small left pleural effusion period\nno pneumothorax\n\n")
    hyp = files("hyp.txt", "small left plural effusion.\nNo pneumothorax.\nuh\n")
    lexicon = files("terms.txt", "# chest terms\nPleural effusion\npneumothorax\n")
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp), "--lexicon", str(lexicon)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["utterances"] == 3 and result["terms_in_lexicon"] == 2
    assert (result["wer"]["errors"], result["wer"]["ref_count"]) == (1, 6)
    assert result["b_wer"]["rate"] == pytest.approx(1 / 3) and result["u_wer"]["rate"] == 0.0
    assert (result["terms"]["recall"], result["terms"]["precision"]) == (0.5, 1.0)
    assert result["per_term"][0]["display"] == "Pleural effusion"
    assert result["per_term"][0]["wrong_renderings"] == [{"text": "plural effusion", "count": 1}]


def test_score_without_lexicon_and_to_a_file(files, tmp_path):
    ref = files("ref.txt", "a 4 mm nodule at C5-C6\n")
    hyp = files("hyp.txt", "A four millimeter nodule at C5 C6.\n")
    out = tmp_path / "out" / "scores.json"
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["wer"]["rate"] == 0.0 and "terms" not in result


def test_score_with_baseline_reports_bootstrap_differences(files, capsys):
    ref = files("ref.txt", "pleural effusion\n" * 20)
    hyp = files("hyp.txt", "pleural effusion\n" * 18 + "plural effusion\n" * 2)
    base = files("base.txt", "plural effusion\n" * 15 + "pleural effusion\n" * 5)
    lexicon = files("terms.txt", "pleural effusion\n")
    argv = ["score", "--ref", str(ref), "--hyp", str(hyp), "--lexicon", str(lexicon), "--baseline", str(base),
            "--bootstrap-samples", "200"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    diff = result["difference"]["term_error"]
    assert diff["delta"] == pytest.approx(0.1 - 0.75)
    assert diff["ci_low"] <= diff["delta"] <= diff["ci_high"] < 0
    assert result["baseline"]["terms"]["error_rate"] == pytest.approx(0.75)


def test_line_count_mismatch_names_both_files(files, capsys):
    ref = files("ref.txt", "one\ntwo\nthree\n")
    hyp = files("hyp.txt", "one\ntwo\n")
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp)]) == 2
    err = capsys.readouterr().err
    assert f"{ref} has 3 lines but {hyp} has 2" in err


@pytest.mark.parametrize(
    ("ref_text", "hyp_text", "message"),
    [
        (b"caf\xe9\n", "cafe\n", "ref.txt:1: not UTF-8"),
        (b"", "", "ref.txt is empty"),
        (None, "cafe\n", "ref.txt: file not found"),
    ],
)
def test_bad_inputs_are_one_line_errors(files, tmp_path, capsys, ref_text, hyp_text, message):
    ref = files("ref.txt", ref_text) if ref_text is not None else tmp_path / "ref.txt"
    hyp = files("hyp.txt", hyp_text)
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_score_counts_clinical_errors_per_line_and_per_report(files, capsys):
    ref = files("ref.txt", "No pneumothorax.\nLeft pleural effusion.\nA 5 millimeter nodule.\nNormal.\n")
    hyp = files("hyp.txt", "pneumothorax\nright pleural effusion\na 5 mm nodule\nnormal\n")
    base = files("base.txt", "pneumothorax\nright pleural effusion\na 5 cm nodule\nnormal\n")
    ids = files("ids.txt", "report-1\nreport-1\nreport-2\nreport-2\n")
    argv = ["score", "--ref", str(ref), "--hyp", str(hyp), "--report-ids", str(ids), "--baseline", str(base),
            "--bootstrap-samples", "50", "--per-utterance"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    clinical = result["clinical"]
    assert (clinical["negation"], clinical["laterality"], clinical["measurement"]) == (1, 1, 0)
    assert (clinical["reports"], clinical["reports_with_error"]) == (2, 1)
    assert clinical["utterances_with_error"] == 2
    assert [r["total"] for r in clinical["per_report"]] == [2, 0]
    baseline = result["baseline"]["clinical"]
    assert baseline["unit"] == 1 and baseline["report_share"] == 1.0
    share = result["difference"]["clinical_report_share"]
    assert (share["a"], share["b"], share["delta"]) == (1.0, 0.5, -0.5)
    assert result["per_utterance"][1]["clinical"] == [
        {"kind": "laterality", "change": "left -> right", "ref": "left pleural effusion",
         "hyp": "right pleural effusion"}]  # fmt: skip


def test_report_ids_must_have_one_line_per_utterance(files, capsys):
    ref = files("ref.txt", "one\ntwo\n")
    ids = files("ids.txt", "r1\n")
    assert main(["score", "--ref", str(ref), "--hyp", str(ref), "--report-ids", str(ids)]) == 2
    assert f"{ref} has 2 lines but {ids} has 1" in capsys.readouterr().err
