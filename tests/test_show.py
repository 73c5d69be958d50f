import json

from pipeline import cli


def test_show_prints_the_table_and_where_the_report_is(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"# t\nname: t\nwork_dir: {tmp_path / 'w'}\n")
    assert cli.main(["show", str(config)]) == 2
    assert "no report yet" in capsys.readouterr().err
    report = {
        "headline": {"rows": [{"system": "base", "wer": 0.25, "term_error": 0.5}]},
        "comparisons": [
            {"split": "test", "system": "adapted", "metric": "wer", "delta": -0.1, "ci_low": -0.2, "ci_high": -0.05}
        ],
    }
    (tmp_path / "w" / "evaluate").mkdir(parents=True)
    (tmp_path / "w" / "evaluate" / "report.json").write_text(json.dumps(report))
    assert cli.main(["show", str(config)]) == 0
    out = capsys.readouterr().out
    assert "| base |" in out and "25.0" in out and "50.0" in out
    assert "-10.0 [-20.0, -5.0]" in out
    assert str(tmp_path / "w" / "evaluate" / "report.md") in out
