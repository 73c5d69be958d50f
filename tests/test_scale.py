"""Scale: Whisper sizes as random-weight models, the encoder-cache plan, streaming shards."""

from __future__ import annotations

import json

import pytest
from test_train import corpus, trainer_for  # noqa: F401 - corpus is a fixture

from pipeline.models.shapes import SHAPES, encoder_output_bytes, parameter_counts, shape_of
from pipeline.training.encoder_cache import plan_cache


def test_published_parameter_counts_of_the_sizes():
    millions = {name: round(parameter_counts(shape)["total"] / 1e6) for name, shape in SHAPES.items()}
    # openai/whisper's model card: 39 M, 74 M, 244 M, 769 M, 1550 M, 809 M
    assert millions["tiny.en"] == 38 and millions["base"] == 73 and millions["small"] == 242
    assert millions["medium"] == 764 and millions["large-v3"] == 1543 and millions["large-v3-turbo"] == 809
    assert shape_of("openai/whisper-large-v3-turbo").decoder_layers == 4
    with pytest.raises(Exception, match="unknown Whisper size 'huge'"):
        shape_of("huge")


def test_encoder_cache_plan_arithmetic_and_choice():
    tiny, turbo = SHAPES["tiny.en"], SHAPES["large-v3-turbo"]
    assert encoder_output_bytes(tiny) == 1500 * 384 * 2 and encoder_output_bytes(turbo) == 1500 * 1280 * 2
    small = plan_cache(3600, 384, "float16", budget_gb=100, free_bytes=10**12, on_gpu=False)  # 10 h of 10 s clips
    assert small.use and small.total_bytes == 3600 * 1500 * 384 * 2
    assert "3,600 clips x 1.15 MB" in small.reason and "4.1 GB" in small.reason
    big = plan_cache(360_000, 1280, "float16", budget_gb=100, free_bytes=10**13, on_gpu=False)  # 1,000 h
    assert not big.use and "1382.4 GB" in big.reason and "disk budget of 100 GB" in big.reason
    full_disk = plan_cache(3600, 384, "float16", budget_gb=100, free_bytes=4 * 10**9, on_gpu=False)
    assert not full_disk.use and "free disk space" in full_disk.reason
    gpu = plan_cache(3600, 384, "float16", budget_gb=100, free_bytes=10**12, on_gpu=True)
    assert not gpu.use and "GPU" in gpu.reason


def test_trainer_over_the_budget_encodes_on_the_fly(tiny_whisper_dir, corpus, tmp_path):  # noqa: F811
    trainer = trainer_for(tmp_path, corpus, tiny_whisper_dir, adapt="decoder", encoder_cache_budget_gb=0.0,
                          max_steps=1)  # fmt: skip
    assert not trainer.use_cache and trainer.mode_name() == "lora-decoder"
    summary = trainer.train()
    assert summary["encoder_cache"] is None and "over the disk budget of 0 GB" in summary["encoder_cache_plan"]
    assert not (tmp_path / "encoder_cache").exists()
    forced = trainer_for(tmp_path, corpus, tiny_whisper_dir, adapt="decoder", encoder_cache_budget_gb=0.0,
                         cache_encoder_outputs=True)  # fmt: skip
    assert forced.use_cache and "train.cache_encoder_outputs=true" in forced.data.cache_plan.reason
    config = json.loads((tmp_path / "work" / "train" / "train_config.json").read_text())
    assert "encoded on the fly" in config["resolved"]["encoder_cache_plan"]
