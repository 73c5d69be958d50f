"""Fine-tune Whisper on the normalized training split: LoRA (or full) with dev evaluation and checkpoints.

    dictune train CONFIG [train.max_steps=50] [train.resume=true]
    accelerate launch --multi_gpu --num_processes 2 -m pipeline.cli train CONFIG   (DDP; CPU: gloo)

Reads <work_dir>/normalize/{train,dev}.jsonl (or train.train_manifest / train.dev_manifest) and writes
<work_dir>/train/: adapter/, merged/, train_config.json, metrics.json, logs/ (TensorBoard),
checkpoints/, rejects.jsonl and the encoder cache of the fast decoder-only mode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.config import Config

logger = logging.getLogger("dictune")

SECTIONS = ("train",)


def _manifests(config: Config) -> list[Path]:
    cfg, normalize = config.train, config.stage_dir("normalize")
    paths = [Path(cfg.train_manifest) if cfg.train_manifest else normalize / "train.jsonl"]
    paths += [Path(p) for p in (*cfg.extra_train_manifests, *cfg.mix_manifests)]
    if cfg.dev_manifest is None:
        paths.append(normalize / "dev.jsonl")
    elif cfg.dev_manifest:
        paths.append(Path(cfg.dev_manifest))
    paths += [Path(p) for p in (cfg.replay_manifest, cfg.general_dev_manifest) if p]
    return paths


def inputs(config: Config) -> list[Path]:
    paths = _manifests(config)
    if config.lexicon:
        paths.append(Path(config.lexicon))
    return paths


def run(config: Config) -> dict[str, Any]:
    from pipeline.training import fine_tune

    return fine_tune(config)
