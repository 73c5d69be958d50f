"""Transcribe new dictations (config transcribe.inputs) with the adapted model into formatted reports.

The pipeline's last stage: `dictune run` transcribes the files or manifests listed in transcribe.inputs
with the train stage's model (the base model when train has not run) into <work_dir>/transcribe/
(txt, json, srt, vtt per file). For ad-hoc use, the `dictune transcribe` command takes files directly.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.files import atomic_dir
from pipeline.manifest import manifest_audio_paths

logger = logging.getLogger("dictune")

SECTIONS = ("transcribe", "context")


def inputs(config: Config) -> list[Path]:
    train = config.stage_dir("train")
    c = config.context
    files = [Path(p) for p in (c.terms_file, c.text_file) if p and c.mode != "none"]
    return [Path(p) for p in config.transcribe.inputs] + [train / "merged", train / "adapter"] + files


def stat_inputs(config: Config) -> list[Path]:
    """The audio its manifests name, compared by size and mtime (a replaced recording reruns the stage)."""
    return manifest_audio_paths(inputs(config))


def run(config: Config) -> dict[str, Any]:
    out_dir = config.stage_dir("transcribe")
    with atomic_dir(out_dir) as tmp:  # replaces the previous outputs whole (none of another input list stay)
        summary = _transcribe(config, tmp)
    return {**summary, "out_dir": str(out_dir)} if "out_dir" in summary else summary


def _transcribe(config: Config, out_dir: Path) -> dict[str, Any]:
    from pipeline.inference.batch import transcribe_files
    from pipeline.models import resolve_model
    from pipeline.training.export import adapted_model

    if not config.transcribe.inputs:
        logger.info("transcribe: transcribe.inputs is empty, nothing to do")
        return {"files": 0}
    base = resolve_model(config.model.base, config.model.cache_dir)
    adapted = adapted_model(config, base)
    model, adapter = adapted if adapted else (base, None)
    if adapted is None:
        logger.warning("transcribe: the train stage has not run; transcribing with the base model")
    summary = transcribe_files(
        list(config.transcribe.inputs),
        out_dir,
        model=str(model),
        adapter_dir=adapter,
        options=config.transcribe,
        cache_dir=config.model.cache_dir,
        lexicon=config.lexicon,
        context=config.context,
    )
    return {"model": "adapted" if adapted else "base", **dataclasses.asdict(summary)}
