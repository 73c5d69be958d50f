from pathlib import Path

import pytest

from pipeline.config import Config, config_from_dict, load_config
from pipeline.errors import ConfigError
from pipeline.typed_yaml import apply_overrides, config_to_dict

ROOT = Path(__file__).resolve().parents[1]


def all_config_files():
    """dictune configs (configs/accelerate holds accelerate's own launch configs)."""
    return sorted(p for p in (ROOT / "configs").rglob("*.y*ml") if "accelerate" not in p.parts)


def test_there_is_at_least_one_config():
    assert all_config_files(), "configs/ holds no YAML file"


@pytest.mark.parametrize("path", all_config_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_validates(path):
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.name
    assert path.read_text().startswith("#"), "each config opens with a comment saying what it is for"


def test_defaults_fill_missing_sections():
    config = config_from_dict({"name": "x"})
    assert config.model.base == "tiny.en"
    assert config.synthesize is None
    assert config.work_path == Path("work/x")
    assert config.stage_dir("train") == Path("work/x/train")


def test_all_problems_reported_at_once_with_dotted_keys():
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            {
                "name": "x",
                "seed": "one",
                "modle": {},
                "train": {"max_steps": 1.5, "mode": "lora", "bogus": 1},
                "segment": {"max_seconds": 90},
            }
        )
    problems = info.value.problems
    text = " | ".join(problems)
    assert "seed: expected int" in text
    assert "modle: unknown key (did you mean 'model'?)" in text
    assert "train.max_steps: expected int" in text
    assert "train.bogus: unknown key" in text
    assert len(problems) == 4  # value checks run only once the types are right


def test_value_checks_after_types():
    with pytest.raises(ConfigError, match=r"segment.max_seconds: must be in \(0, 30\]"):
        config_from_dict({"name": "x", "segment": {"max_seconds": 90}})
    with pytest.raises(ConfigError, match="train.mode"):
        config_from_dict({"name": "x", "train": {"mode": "qlora"}})


def test_required_name():
    with pytest.raises(ConfigError, match="name: required key is missing"):
        config_from_dict({})


def test_nested_list_of_sections():
    config = config_from_dict({"name": "x", "ingest": {"sources": [{"name": "train", "path": "a.jsonl"}]}})
    assert config.ingest.sources[0].path == "a.jsonl"
    assert config.ingest.sources[0].format == "auto"
    with pytest.raises(ConfigError, match="ingest.sources: name 'train' is used twice"):
        config_from_dict(
            {"name": "x", "ingest": {"sources": [{"name": "train", "path": "a"}, {"name": "train", "path": "b"}]}}
        )
    with pytest.raises(ConfigError, match=r"ingest.sources\[0\].path: required key is missing"):
        config_from_dict({"name": "x", "ingest": {"sources": [{"name": "train"}]}})


def test_overrides_parse_yaml_values_and_nest():
    data = apply_overrides({"name": "x", "train": {"max_steps": 3}}, ["train.max_steps=50", "model.base=base", "seed=7"])
    assert data == {"name": "x", "train": {"max_steps": 50}, "model": {"base": "base"}, "seed": 7}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(ConfigError, match="seed is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


def test_load_config_applies_overrides_and_reports_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# test\nname: demo\ntrain: {max_steps: 5}\n")
    config = load_config(path, ["train.max_steps=9"])
    assert config.train.max_steps == 9
    with pytest.raises(ConfigError, match=str(tmp_path / "missing.yaml")):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_config_is_frozen_and_round_trips():
    config = config_from_dict({"name": "x", "train": {"max_steps": 4}})
    with pytest.raises(AttributeError):
        config.name = "y"  # type: ignore[misc]
    again = config_from_dict(config_to_dict(config))
    assert again == config


def test_loader_workers_are_auto_or_a_count_and_auto_uses_them_only_on_a_gpu():
    from pipeline.training.state import GPU_LOADER_WORKERS, resolve_loader_workers

    assert config_from_dict({"name": "x"}).train.num_workers == "auto"
    assert config_from_dict({"name": "x", "train": {"num_workers": 3}}).train.num_workers == 3
    for bad in (-1, "many"):
        with pytest.raises(ConfigError, match="train.num_workers: must be auto or a count >= 0"):
            config_from_dict({"name": "x", "train": {"num_workers": bad}})
    assert resolve_loader_workers("auto", on_cuda=False, cpus=16) == 0
    assert resolve_loader_workers("auto", on_cuda=True, cpus=16) == GPU_LOADER_WORKERS
    assert resolve_loader_workers("auto", on_cuda=True, cpus=2) == 1  # one core stays with training
    assert resolve_loader_workers("AUTO", on_cuda=True, cpus=None) == 0
    assert resolve_loader_workers(2, on_cuda=False, cpus=1) == 2  # a count is taken as given
    assert resolve_loader_workers("auto", on_cuda=True, cpus=16, local_processes=8) == 1  # 8 GPUs share 16 cores
    assert resolve_loader_workers("auto", on_cuda=True, cpus=64, local_processes=8) == GPU_LOADER_WORKERS


def test_auto_precision_is_bf16_on_a_gpu_that_has_it_and_fp16_on_one_that_has_not(monkeypatch):
    import torch

    from pipeline.training.state import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto") == "fp16"
    assert resolve_precision("fp32") == "no" and resolve_precision("BF16") == "bf16"  # asked for: as asked
