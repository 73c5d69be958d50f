"""Run stages in order; skip a stage whose inputs and config are unchanged since it last finished.

Each stage module (pipeline/stages/<name>.py) exposes:
    SECTIONS: tuple[str, ...]        config sections (besides model, seed) that change its output
    inputs(config) -> list[Path]     files and folders whose content its output depends on
    stat_inputs(config) -> list[Path]  optional: many large files (audio named by manifests) compared by
                                     name, size and mtime instead of content; those under the work dir
                                     (written by an earlier stage) are left out
    run(config) -> dict              does the work, writes under config.stage_dir(name), returns a summary

    space_needed(config) -> int      optional: bytes of disk its outputs take (named when the disk fills)

After a stage finishes, a stamp `<work_dir>/<stage>/.stage.json` records the fingerprint (hash of the
config sections, the base model spec, the seed, the content of the inputs and the size and mtime of the
stat inputs). `dictune run` skips a stage whose stamp matches; `--force` reruns it. The stamp is removed
before a stage starts (before it replaces any output) and written last, so a run that is killed, or
stopped by a full disk, leaves no stamp that would vouch for a half-replaced set of outputs.

One run at a time per work dir: stages run while holding `<work_dir>/.dictune.lock` (pipeline.worklock);
a second run exits at once with the holder's pid.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.config import Config
from pipeline.errors import DictuneError
from pipeline.faults import EnvironmentFailure, describe, is_environment_error
from pipeline.files import (
    atomic_write_json,
    fsync_dir,
    remove_stale_sibling_temps,
    remove_stale_temps,
    sha256_json,
    sha256_paths,
    stat_signature,
)
from pipeline.typed_yaml import config_to_dict
from pipeline.worklock import hold_work_dir

logger = logging.getLogger("dictune")

STAMP_NAME = ".stage.json"
STAMP_VERSION = 1


@dataclass(frozen=True)
class StageSpec:
    name: str  # CLI subcommand and output folder name
    module: str  # import path of the stage module
    in_run: bool = True  # part of `dictune run`

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


# The order of `dictune run`.
STAGE_ORDER = ("synthesize", "ingest", "segment", "normalize", "train", "evaluate", "transcribe")
STAGES: tuple[StageSpec, ...] = tuple(StageSpec(name, f"pipeline.stages.{name}") for name in STAGE_ORDER)


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def get_stage(name: str) -> StageSpec:
    for spec in STAGES:
        if spec.name == name:
            return spec
    raise DictuneError(f"unknown stage {name!r}; built stages: {', '.join(stage_names()) or 'none'}")


def fingerprint(config: Config, spec: StageSpec, module: ModuleType | None = None) -> str:
    module = module or spec.load()
    sections = {name: config_to_dict(config.section(name)) for name in getattr(module, "SECTIONS", ())}
    inputs = [Path(p) for p in module.inputs(config)]
    stat_inputs = getattr(module, "stat_inputs", None)
    extra = (
        {"stat_inputs": stat_signature(_outside_work_dir(config, stat_inputs(config)))} if stat_inputs else {}
    )
    return sha256_json(
        {
            **extra,
            "stamp_version": STAMP_VERSION,
            "stage": spec.name,
            "model": config_to_dict(config.model),
            "seed": config.seed,
            "lexicon": config.lexicon,
            "sections": sections,
            "inputs": sha256_paths(inputs),
        }
    )


def _outside_work_dir(config: Config, paths: Iterable[Path]) -> list[Path]:
    """The user's recordings among paths. Audio a stage wrote under the work dir is left out: a stage that
    rewrites it on a rerun (new mtimes, same content) would otherwise rerun every stage after it."""
    work = config.work_path.resolve()
    return [p for p in map(Path, paths) if not p.resolve().is_relative_to(work)]


def read_stamp(config: Config, name: str) -> dict[str, Any] | None:
    path = config.stage_dir(name) / STAMP_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_stage(config: Config, name: str, force: bool = True) -> dict[str, Any]:
    """Run one stage (always, unless force=False and its stamp matches); returns its summary."""
    with hold_work_dir(config.work_path):
        return _run_stage(config, name, force)


def _run_stage(config: Config, name: str, force: bool) -> dict[str, Any]:
    spec = get_stage(name)
    module = spec.load()
    before = fingerprint(config, spec, module)
    stamp = read_stamp(config, name)
    if not force and stamp and stamp.get("fingerprint") == before:
        logger.info("%s: inputs and config unchanged, skipped", name)
        return {"skipped": True, **stamp.get("summary", {})}
    logger.info("%s: running", name)
    invalidate_stamp(config, name)  # before any output is replaced: a killed run leaves no stamp behind
    removed = remove_stale_temps(config.stage_dir(name)) + remove_stale_sibling_temps(config.stage_dir(name))
    if removed:
        logger.info("%s: removed %d temp file(s) left by an interrupted run", name, removed)
    start = time.monotonic()
    try:
        summary = module.run(config) or {}
    except Exception as e:
        if isinstance(e, EnvironmentFailure) or not is_environment_error(e):
            raise
        needed = getattr(module, "space_needed", None)
        raise EnvironmentFailure(describe(e, name, config.stage_dir(name), needed and needed(config))) from e
    elapsed = time.monotonic() - start
    # Fingerprint again: a stage may create its own inputs' parents (e.g. synthesized audio).
    after = fingerprint(config, spec, module)
    atomic_write_json(
        config.stage_dir(name) / STAMP_NAME,
        {"fingerprint": after, "seconds": round(elapsed, 2), "summary": summary},
    )
    logger.info("%s: done in %.1f s", name, elapsed)
    return summary


def invalidate_stamp(config: Config, name: str) -> None:
    """Remove a stage's stamp (durably) so that nothing vouches for outputs about to be replaced."""
    path = config.stage_dir(name) / STAMP_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def run_all(config: Config, force: Iterable[str] = (), only: Iterable[str] = ()) -> dict[str, Any]:
    """Run every stage of `dictune run` in order, skipping those whose stamp matches."""
    force, only = _stage_names(force, "--force", ("all",)), _stage_names(only, "--only")
    with hold_work_dir(config.work_path):
        return _run_all(config, force, only)


def _stage_names(values: Iterable[str], flag: str, extra: tuple[str, ...] = ()) -> set[str]:
    """Stage names given once each or comma-separated; an unknown name is an error, not a silent no-op."""
    names = {n.strip() for v in values for n in v.split(",") if n.strip()}
    known = [spec.name for spec in STAGES if spec.in_run]
    unknown = sorted(names - set(known) - set(extra))
    if unknown:
        raise DictuneError(f"{flag}: unknown stage {', '.join(unknown)}; stages: {', '.join([*known, *extra])}")
    return names


def _run_all(config: Config, force: set[str], only: set[str]) -> dict[str, Any]:
    results = {}
    for spec in STAGES:
        if not spec.in_run or (only and spec.name not in only):
            continue
        if getattr(config, spec.name, True) is None:
            logger.info("%s: not configured, skipped", spec.name)
            continue
        results[spec.name] = _run_stage(config, spec.name, force=spec.name in force or "all" in force)
    return results
