"""The runner skips a stage whose inputs and config are unchanged and reruns it otherwise."""

import json
import textwrap

import pytest

from pipeline import cli, runner
from pipeline.config import config_from_dict

STAGE_SOURCE = textwrap.dedent(
    '''
    """A counting stage used by the runner tests."""
    import json
    from pathlib import Path

    SECTIONS = ("train",)
    CALLS = []


    def inputs(config):
        return [Path(config.lexicon)]


    def run(config):
        CALLS.append(config.train.max_steps)
        out = config.stage_dir("count")
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps({"calls": len(CALLS)}))
        return {"calls": len(CALLS)}
    '''
)


@pytest.fixture
def counting_stage(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "count_stage.py").write_text(STAGE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.setattr(runner, "STAGES", (runner.StageSpec("count", "count_stage"),))
    import count_stage

    count_stage.CALLS.clear()
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("atelectasis\n")
    return count_stage, lexicon


def make_config(tmp_path, lexicon, **train):
    return config_from_dict(
        {"name": "t", "work_dir": str(tmp_path / "work"), "lexicon": str(lexicon), "train": train}
    )


def test_second_run_is_skipped_and_changes_rerun(tmp_path, counting_stage):
    module, lexicon = counting_stage
    config = make_config(tmp_path, lexicon, max_steps=5)
    runner.run_all(config)
    runner.run_all(config)
    assert module.CALLS == [5], "unchanged inputs and config: skipped"
    runner.run_all(make_config(tmp_path, lexicon, max_steps=6))
    assert module.CALLS == [5, 6], "a config change reruns the stage"
    lexicon.write_text("atelectasis\npleural effusion\n")
    runner.run_all(make_config(tmp_path, lexicon, max_steps=6))
    assert module.CALLS == [5, 6, 6], "an input content change reruns the stage"
    runner.run_all(make_config(tmp_path, lexicon, max_steps=6), force=["count"])
    assert len(module.CALLS) == 4, "--force reruns"
    stamp = json.loads((tmp_path / "work" / "count" / ".stage.json").read_text())
    assert stamp["summary"] == {"calls": 4}


def test_failed_stage_leaves_no_stamp(tmp_path, counting_stage, monkeypatch):
    module, lexicon = counting_stage
    monkeypatch.setattr(module, "run", lambda config: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        runner.run_all(make_config(tmp_path, lexicon))
    assert runner.read_stamp(make_config(tmp_path, lexicon), "count") is None


def test_cli_runs_a_stage_and_reports_config_errors(tmp_path, counting_stage, capsys):
    module, lexicon = counting_stage
    path = tmp_path / "c.yaml"
    path.write_text(f"# test\nname: t\nwork_dir: {tmp_path / 'work'}\nlexicon: {lexicon}\n")
    assert cli.main(["run", str(path), "train.max_steps=7"]) == 0
    assert module.CALLS == [7]
    assert cli.main(["count", str(path), "train.max_steps=7"]) == 0
    assert module.CALLS == [7, 7], "a single stage command always runs"
    capsys.readouterr()
    assert cli.main(["run", str(path), "train.max_steps=x"]) == 2
    err = capsys.readouterr().err
    assert "train.max_steps: expected int, got 'x'" in err
    assert err.count("\n") == 1, "one line"


def test_only_and_force_take_comma_lists_and_refuse_unknown_stages(tmp_path, counting_stage, capsys):
    module, lexicon = counting_stage
    path = tmp_path / "c.yaml"
    path.write_text(f"name: t\nwork_dir: {tmp_path / 'work'}\nlexicon: {lexicon}\n")
    assert cli.main(["run", str(path), "--only", "count,count"]) == 0
    assert module.CALLS == [300]  # the default train.max_steps
    assert cli.main(["run", str(path), "--force", "all", "--only", "count"]) == 0
    assert len(module.CALLS) == 2
    capsys.readouterr()
    assert cli.main(["run", str(path), "--only", "count,segmnt"]) == 2
    err = capsys.readouterr().err
    assert "--only: unknown stage segmnt; stages: count" in err and len(module.CALLS) == 2


def test_stage_discovery_lists_only_existing_modules():
    names = runner.stage_names()
    assert all(name in runner.STAGE_ORDER for name in names)
    assert names == [n for n in runner.STAGE_ORDER if n in names], "in pipeline order"
    with pytest.raises(Exception, match="unknown stage"):
        runner.get_stage("does-not-exist")


def test_bare_keys_of_a_stage_command_name_its_own_section():
    assert cli._stage_overrides("train", ["resume=true", "seed=3", "model.base=base", "max_steps=5"]) == [
        "train.resume=true",
        "seed=3",
        "model.base=base",
        "train.max_steps=5",
    ]
    assert cli._stage_overrides("train", ["nonsense=1"]) == ["nonsense=1"], (
        "unknown keys are reported as such"
    )
    assert cli._stage_overrides("no-such-stage", ["resume=true"]) == ["resume=true"]
    assert cli._stage_overrides("synthesize", ["workers=1"]) == ["synthesize.workers=1"], "optional section"


def test_stat_inputs_track_the_users_audio_but_not_audio_under_the_work_dir(
    tmp_path, counting_stage, monkeypatch
):
    module, lexicon = counting_stage
    recording, written = tmp_path / "rec.wav", tmp_path / "work" / "normalize" / "x.wav"
    written.parent.mkdir(parents=True)
    recording.write_bytes(b"a" * 10)
    written.write_bytes(b"b" * 10)
    monkeypatch.setattr(module, "stat_inputs", lambda config: [recording, written], raising=False)
    config = make_config(tmp_path, lexicon)
    runner.run_all(config)
    written.write_bytes(b"b" * 20)  # rewritten by an earlier stage: not a reason to rerun this one
    runner.run_all(config)
    assert len(module.CALLS) == 1
    recording.write_bytes(b"a" * 20)  # the user replaced a recording under the same name
    runner.run_all(config)
    assert len(module.CALLS) == 2


def test_harmless_transformers_warnings_are_dropped_and_others_kept(caplog):
    import logging

    cli._configure_logging(0)
    source = logging.getLogger("transformers.generation.utils")
    with caplog.at_level(logging.WARNING):
        source.warning("The attention mask is not set with a batched input, and cannot be inferred ...")
        source.warning("Passing `generation_config` together with generation-related arguments=({'x'}) ...")
        source.warning("`eos_token_id` should consist of positive integers")
    assert [r.getMessage() for r in caplog.records] == ["`eos_token_id` should consist of positive integers"]
