"""Checkpoints: accelerate's save_state/load_state (optimizer, scheduler, grad scaler, RNG of every
process) plus the trainable weights only and a small JSON of the loop's own state.

    <work_dir>/train/checkpoints/step-000050/
        trainable.safetensors      trainable parameters, names as in the unwrapped model (LoRA: a few MB)
        optimizer.bin scheduler.bin random_states_<rank>.pkl ...   (accelerate)
        trainer_state.json         step, best dev score, evaluations, elapsed time; written last

A checkpoint is written to `.step-000050.tmp` and renamed when complete, so a run killed at any moment
leaves either the whole checkpoint or none. Frozen base weights are never copied into checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError
from pipeline.files import atomic_write_bytes, atomic_write_json

logger = logging.getLogger("dictune")

WEIGHTS_NAME = "trainable.safetensors"
STATE_NAME = "trainer_state.json"
STEP_DIR = re.compile(r"^step-(\d+)$")


def unwrap(model: Any) -> Any:
    """The module under DDP (and similar) wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def trainable_tensors(model: Any) -> dict[str, Any]:
    return {n: p.detach().contiguous().cpu() for n, p in unwrap(model).named_parameters() if p.requires_grad}


def save_trainable(model: Any, path: Path) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save(trainable_tensors(model), metadata={"format": "pt"}))


def load_trainable(model: Any, path: Path) -> None:
    """Load trainable weights saved by save_trainable; every trainable parameter must be present."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    params = dict(unwrap(model).named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors))[:3], sorted(set(tensors) - expected)[:3]
        raise DictuneError(
            f"{path}: weights do not match this model (missing {missing}, unexpected {extra}); "
            "was it trained with another train.mode/adapt/lora setting? Start fresh with train.resume=false"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)


def register_hooks(accelerator: Any) -> None:
    """Make save_state/load_state store only the trainable weights, under unwrapped names."""

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        if accelerator.is_main_process:
            for i, model in enumerate(models):
                save_trainable(model, Path(output_dir) / _weights_name(i))
        weights.clear()

    def load_hook(models: list, input_dir: str) -> None:
        for i, model in enumerate(models):
            load_trainable(model, Path(input_dir) / _weights_name(i))
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _weights_name(index: int) -> str:
    return WEIGHTS_NAME if index == 0 else WEIGHTS_NAME.replace(".", f"_{index}.", 1)


def save_checkpoint(
    accelerator: Any, root: Path, step: int, state: dict[str, Any], keep: int, protect: int | None
) -> Path:
    """Write checkpoint `step` atomically (every process takes part), then prune old ones."""
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_NAME, state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune(root, keep, protect)
    accelerator.wait_for_everyone()
    return final


def prune(root: Path, keep: int, protect: int | None) -> None:
    """Delete all but the newest `keep` checkpoints (and the protected step) and stale temp dirs."""
    steps = list_checkpoints(root)
    for step, path in steps[: max(0, len(steps) - keep)]:
        if step != protect:
            shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(".step-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with their state file), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    steps = list_checkpoints(root)
    return steps[-1][1] if steps else None


def read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DictuneError(
            f"{path / STATE_NAME}: unreadable checkpoint state ({e}); delete the checkpoint"
        ) from e
