"""Base models: import one as a Hugging Face dir, or describe it.

    dictune model import SPEC --out DIR [--force]    write SPEC as a Hugging Face Whisper dir at DIR
    dictune model info SPEC [--json]                 kind, resolved dir, size, special token ids
    dictune model random SIZE --out DIR [--seed N]   a random-weight model of a Whisper size (small,
                                                     medium, large-v3-turbo, ...) for code-path tests

SPEC is a builtin (tiny.en, base), a local Hugging Face or CTranslate2 Whisper dir, or a hub id
(used only when the hub is reachable). Builtins and CT2 dirs are imported once into the cache
(--cache-dir, else $DICTUNE_CACHE, else ~/.cache/dictune).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from pipeline.errors import DictuneError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    imp = sub.add_parser("import", help="write SPEC as a Hugging Face Whisper dir")
    imp.add_argument("spec", help="tiny.en, base, a local HF/CT2 dir, or a hub id")
    imp.add_argument("--out", required=True, help="directory to write (atomically)")
    imp.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    info = sub.add_parser("info", help="describe SPEC (importing it into the cache if needed)")
    info.add_argument("spec", help="tiny.en, base, a local HF/CT2 dir, or a hub id")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    rand = sub.add_parser("random", help="write a random-weight model of a Whisper size (no weights needed)")
    rand.add_argument("size", help="tiny.en, tiny, base, small, medium, large-v3, large-v3-turbo")
    rand.add_argument("--out", required=True, help="directory to write (atomically)")
    rand.add_argument("--seed", type=int, default=0)
    rand.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    for action in (imp, info, rand):
        action.add_argument("--cache-dir", default=None, help="import cache (default $DICTUNE_CACHE)")


def _checked_out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DictuneError(f"{out}: --out is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise DictuneError(f"{out}: exists and is not empty; pass --force to replace it")
    return out


def _random(args: argparse.Namespace) -> int:
    from pipeline.models.shapes import random_model

    print(random_model(args.size, _checked_out(args), args.seed, args.cache_dir))
    return 0


def _import(args: argparse.Namespace) -> int:
    from pipeline.files import atomic_dir
    from pipeline.models import import_ct2, locate

    out = _checked_out(args)
    source = locate(args.spec, args.cache_dir)
    with atomic_dir(out) as tmp:
        if source.format == "ct2":
            import_ct2(source.path, tmp)
        else:
            shutil.copytree(source.path, tmp, dirs_exist_ok=True)
    print(out)
    return 0


def _info(args: argparse.Namespace) -> int:
    from pipeline.models import locate, resolve_model
    from pipeline.models.info import model_info

    source = locate(args.spec, args.cache_dir)
    directory = resolve_model(args.spec, args.cache_dir)
    facts = {
        "spec": args.spec,
        "kind": source.kind,
        "format": source.format,
        "source": str(source.path),
        **dataclasses.asdict(model_info(directory)),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0


def main(args: argparse.Namespace) -> int:
    return {"import": _import, "info": _info, "random": _random}[args.model_command](args)
