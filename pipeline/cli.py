"""`dictune` command line: parses arguments, configures logging, calls the stage. No logic of its own.

    dictune [--debug] run CONFIG [key=value ...] [--force STAGE] [--only STAGE]   (overrides in any order)
    dictune <stage> CONFIG [key=value ...]          one stage, always rerun
    dictune model import SPEC --out DIR | dictune model info SPEC
    dictune <tool> ...                               score, transcribe, export (see --help)

Stage modules keep their top-level imports light (torch and transformers are imported inside
functions) so that `dictune --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from pipeline.errors import DictuneError

logger = logging.getLogger("dictune")

TOOLS_PACKAGE = "pipeline.tools"


def _tool_modules() -> dict[str, str]:
    """Commands that are not config-driven stages: each module in pipeline/tools/ defines
    add_arguments(parser) and main(args) -> int; the command name is the module name."""
    import pkgutil

    import pipeline.tools

    return {
        info.name: f"{TOOLS_PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(pipeline.tools.__path__)
        if not info.name.startswith("_")
    }


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (pytest swaps it per test)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


# transformers warnings that Whisper's own generate() triggers on every call and that do not apply here: it
# passes its generation_config together with suppress_tokens to GenerationMixin.generate, and Whisper's
# 30 s log-mel windows (or cached encoder outputs) need no attention mask. Dropped at the source logger.
HARMLESS_WARNINGS = {
    "transformers.generation.utils": (
        "The attention mask is not set with a batched input",
        "Passing `generation_config` together with generation-related arguments",
    ),
}


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def silence_harmless_warnings() -> None:
    """Drop the transformers warnings of HARMLESS_WARNINGS at their source logger (scripts call it too)."""
    for name, prefixes in HARMLESS_WARNINGS.items():
        source = logging.getLogger(name)  # the same object transformers logs through, imported or not
        source.filters[:] = [f for f in source.filters if not isinstance(f, _DropMessages)]
        source.addFilter(_DropMessages(prefixes))


def _configure_logging(verbosity: int) -> None:
    silence_harmless_warnings()
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("dictune %(levelname).1s %(message)s"))
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _StderrHandler)] + [handler]
    logger.setLevel(level)


def _load_config(args: argparse.Namespace):
    from pipeline.config import load_config

    # a stage's add_arguments may turn its options into overrides (e.g. evaluate --manifest)
    return load_config(args.config, [*args.overrides, *(getattr(args, "stage_overrides", None) or [])])


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.runner import run_all

    run_all(_load_config(args), force=args.force or (), only=args.only or ())
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    from pipeline.runner import get_stage, run_stage

    module = get_stage(args.stage).load()
    if hasattr(module, "main") and args.config is None:
        return module.main(args)  # config-less form, e.g. `dictune ingest --source PATH --out DIR`
    if args.config is None:
        raise DictuneError(f"{args.stage}: a CONFIG file is required")
    args.overrides = _stage_overrides(args.stage, args.overrides)
    run_stage(_load_config(args), args.stage, force=True)
    return 0


def _stage_overrides(stage: str, overrides: list[str]) -> list[str]:
    """A bare key that names a field of the stage's own section is read as that field:
    `dictune train CONFIG resume=true` is `train.resume=true`."""
    import dataclasses
    import typing

    from pipeline.config import Config

    hints = typing.get_type_hints(Config)
    section_types = [
        t for t in typing.get_args(hints.get(stage)) or (hints.get(stage),) if dataclasses.is_dataclass(t)
    ]
    if not section_types:
        return list(overrides)
    fields = {f.name for f in dataclasses.fields(section_types[0])}
    out = []
    for item in overrides:
        key, sep, _value = item.partition("=")
        out.append(
            f"{stage}.{item}" if sep and "." not in key and key not in hints and key in fields else item
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    from pipeline.runner import STAGES

    parser = argparse.ArgumentParser(
        prog="dictune", description="Adapt Whisper to a dictation domain with LoRA, and measure the gain."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run all stages in order, skipping unchanged ones")
    run.add_argument("config", help="YAML config")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=50")
    run.add_argument("--force", action="append", metavar="STAGE", help="rerun this stage ('all' for every)")
    run.add_argument("--only", action="append", metavar="STAGE", help="run only these stages")
    run.set_defaults(func=_cmd_run)

    tools = _tool_modules()
    for spec in STAGES:
        if spec.name in tools:  # a command of the same name takes the files directly; `run` runs the stage
            continue
        module = spec.load()
        doc = (module.__doc__ or spec.name).strip().splitlines()[0]
        stage = sub.add_parser(spec.name, help=doc, description=module.__doc__)
        has_main = hasattr(module, "main")
        stage.add_argument("config", nargs="?" if has_main else None, help="YAML config")
        stage.add_argument("overrides", nargs="*", help="key=value overrides")
        if hasattr(module, "add_arguments"):
            module.add_arguments(stage)
        stage.set_defaults(func=_cmd_stage, stage=spec.name)

    for name, module_name in tools.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or name).strip().splitlines()[0]
        tool = sub.add_parser(name, help=doc, description=module.__doc__)
        module.add_arguments(tool)
        tool.set_defaults(func=module.main)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that key=value overrides may also follow options (`run C --force x a.b=1`) and
    --debug may follow the command."""
    args, extra = parser.parse_known_args(argv)
    if "--debug" in extra:  # accepted after the command too
        args.debug, extra = True, [a for a in extra if a != "--debug"]
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if extra and (len(overrides) < len(extra) or not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


def _unexpected(error: BaseException, debug: bool) -> int:
    """One line for an error dictune does not know (its traceback goes to a debug log); exit status 1."""
    import traceback

    if debug:
        traceback.print_exc()
        return 1
    text = "".join(traceback.format_exception(error))
    log = None
    folders = (os.environ.get("DICTUNE_CACHE") or Path.home() / ".cache" / "dictune", tempfile.gettempdir())
    for folder in folders:
        try:
            log = Path(folder) / "logs" / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"dictune {' '.join(sys.argv[1:])}\n{text}", encoding="utf-8")
            break
        except OSError:
            log = None
    where = f"traceback in {log}" if log else "rerun with --debug for the traceback"
    first = (str(error).strip().splitlines() or [""])[0]
    print(f"dictune: error: unexpected {type(error).__name__}: {first} ({where})", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except DictuneError as e:
        print(f"dictune: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 2)
    except KeyboardInterrupt:
        print("dictune: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last resort: one line, the traceback in a file
        return _unexpected(e, args.debug)


if __name__ == "__main__":
    sys.exit(main())
