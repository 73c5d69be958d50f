"""Read a CTranslate2 `model.bin` without loading it: header, named variables, aliases.

Layout (binary version 6, little endian):
    uint32 version; string spec name; uint32 spec revision; uint32 variable count;
    per variable: string name, uint8 rank, rank x uint32 dims, uint8 dtype, uint32 nbytes, data bytes;
    uint32 alias count; per alias: string alias, string target.
A string is a uint16 length (including the trailing NUL) followed by the bytes.

The file is memory-mapped; a tensor is copied out (as float32) only when asked for. Every problem is
reported as one Ct2FormatError line naming the file and what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import DictuneError

if TYPE_CHECKING:
    from typing_extensions import Self

SUPPORTED_BINARY_VERSION = 6
# CTranslate2 DataType enum -> numpy dtype
CT2_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: the upper half of a float32
}
BFLOAT16_CODE = 5
MAX_RANK = 8


class Ct2FormatError(DictuneError):
    """A model.bin that is not a readable CTranslate2 model (bad magic, truncated, unexpected content)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason  # what is wrong, without the file name
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Ct2Variable:
    name: str
    shape: tuple[int, ...]
    dtype_code: int  # CTranslate2 DataType (see CT2_DTYPES)
    offset: int  # byte offset of the data in the file
    nbytes: int


@dataclass(frozen=True)
class Ct2Header:
    spec: str  # e.g. "WhisperSpec"
    revision: int
    variables: dict[str, Ct2Variable]
    aliases: dict[str, str]  # alias name -> target variable name
    end: int  # byte offset where the content ends (must equal the file size)


class _Cursor:
    """Sequential reads over a byte buffer with bounds checks that name the file."""

    def __init__(self, buf: np.ndarray, path: Path):
        self.buf = buf
        self.path = path
        self.pos = 0

    def fail(self, what: str) -> Ct2FormatError:
        return Ct2FormatError(self.path, f"corrupt CTranslate2 model.bin: {what}")

    def need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise self.fail(
                f"truncated: {what} needs bytes up to {self.pos + n}, the file has {len(self.buf)}"
            )

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, what: str) -> str:
        length = self.unpack("<H", what)
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        if not raw.endswith(b"\0"):
            raise self.fail(f"{what} is not NUL-terminated at byte {self.pos}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not UTF-8 at byte {self.pos - length}") from e


def _read_variable(cur: _Cursor, index: int) -> Ct2Variable:
    name = cur.string(f"name of variable {index}")
    rank = cur.unpack("<B", f"rank of {name}")
    if rank > MAX_RANK:
        raise cur.fail(f"variable {name} has rank {rank}")
    shape = tuple(cur.unpack("<I", f"shape of {name}") for _ in range(rank))
    code = cur.unpack("<B", f"dtype of {name}")
    if code not in CT2_DTYPES:
        raise cur.fail(f"variable {name} has unknown dtype code {code}")
    nbytes = cur.unpack("<I", f"size of {name}")
    expected = int(np.prod(shape, dtype=np.int64)) * CT2_DTYPES[code].itemsize
    if nbytes != expected:
        raise cur.fail(f"variable {name} declares {nbytes} bytes, its shape {shape} needs {expected}")
    cur.need(nbytes, f"data of {name}")
    var = Ct2Variable(name, shape, code, cur.pos, nbytes)
    cur.pos += nbytes
    return var


def read_header(buf: np.ndarray, path: Path) -> Ct2Header:
    """Walk the whole layout of a model.bin held in `buf` (a uint8 array) and check it is complete."""
    cur = _Cursor(buf, path)
    version = cur.unpack("<I", "binary version")
    if version != SUPPORTED_BINARY_VERSION:
        raise cur.fail(f"binary version {version}, expected {SUPPORTED_BINARY_VERSION} (bad magic)")
    spec = cur.string("spec name")
    revision = cur.unpack("<I", "spec revision")
    count = cur.unpack("<I", "variable count")
    variables: dict[str, Ct2Variable] = {}
    for index in range(count):
        var = _read_variable(cur, index)
        if var.name in variables:
            raise cur.fail(f"variable {var.name} appears twice")
        variables[var.name] = var
    aliases = {}
    for index in range(cur.unpack("<I", "alias count")):
        alias = cur.string(f"alias {index}")
        target = cur.string(f"target of alias {alias}")
        aliases[alias] = target
    for alias, target in aliases.items():
        if target not in variables:
            raise cur.fail(f"alias {alias} points to a missing variable {target}")
    if cur.pos != len(buf):
        raise cur.fail(f"{len(buf) - cur.pos} unexpected bytes after the end of the content at {cur.pos}")
    return Ct2Header(spec, revision, variables, aliases, cur.pos)


class Ct2File:
    """A memory-mapped model.bin: `names()`, `tensor(name)` (float32 copy), `scalar(name)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise Ct2FormatError(self.path, "model.bin not found") from None
        if size == 0:
            raise Ct2FormatError(self.path, "corrupt CTranslate2 model.bin: the file is empty")
        self._buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.header = read_header(self._buf, self.path)

    def names(self) -> set[str]:
        """Every variable and alias name."""
        return set(self.header.variables) | set(self.header.aliases)

    def variable(self, name: str) -> Ct2Variable:
        name = self.header.aliases.get(name, name)
        try:
            return self.header.variables[name]
        except KeyError:
            raise Ct2FormatError(self.path, f"variable {name} is missing (not a Whisper model?)") from None

    def raw(self, name: str) -> np.ndarray:
        """The variable's values in its stored dtype (a read-only view into the map)."""
        var = self.variable(name)
        data = self._buf[var.offset : var.offset + var.nbytes]
        return data.view(CT2_DTYPES[var.dtype_code]).reshape(var.shape)

    def tensor(self, name: str) -> np.ndarray:
        """A floating-point variable as a new float32 array."""
        var = self.variable(name)
        values = self.raw(name)
        if var.dtype_code == BFLOAT16_CODE:
            return (values.astype(np.uint32) << 16).view(np.float32)
        if values.dtype.kind != "f":
            raise Ct2FormatError(
                self.path,
                f"variable {name} is stored as {values.dtype} (a quantized model?); "
                "only float16/bfloat16/float32 CTranslate2 models can be imported",
            )
        return values.astype(np.float32)

    def scalar(self, name: str) -> int:
        var = self.variable(name)
        if var.shape not in ((), (1,)):
            raise Ct2FormatError(self.path, f"variable {name} should be a scalar, has shape {var.shape}")
        return int(self.raw(name).reshape(-1)[0])

    def close(self) -> None:
        """Drop the map; the file is unmapped once no view returned by raw() is alive."""
        self._buf = np.empty(0, dtype=np.uint8)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
