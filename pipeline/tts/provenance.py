"""Where a rendering came from: a digest of the rendered audio per voice, and the versions it depends on.

Every engine is deterministic given (voice, text, seed) on one machine with one set of packages, so two
`dictune synthesize` runs that plan the same items write byte-identical clips there. Across machines or
package versions they need not: onnxruntime (piper, kokoro) picks kernels by CPU instruction set, and the
Debian engines change with their packages. The synthesize summary keeps both, so a demo run that moved can be
traced to the voice whose audio changed, and to what changed under it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pipeline.manifest import Record

# instruction sets whose presence changes which float kernels onnxruntime and torch run
VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def audio_digests(records: dict[str, list[Record]], manifest_dir: str | Path) -> dict[str, str]:
    """{voice: sha256 of its clips' bytes, in id order} and "all": two runs rendered the same audio exactly
    when these agree, and a differing voice names the engine to look at (engine_versions)."""
    import hashlib

    by_voice: dict[str, list[Record]] = defaultdict(list)
    for rows in records.values():
        for r in rows:
            by_voice[r.extra["voice"]].append(r)
    digests, everything = {}, hashlib.sha256()
    for voice, rows in sorted(by_voice.items()):
        h = hashlib.sha256()
        for r in sorted(rows, key=lambda r: r.id):
            h.update(
                r.id.encode() + hashlib.sha256((Path(manifest_dir) / r.audio_filepath).read_bytes()).digest()
            )
        digests[voice] = h.hexdigest()[:16]
        everything.update(voice.encode() + h.digest())
    return {"all": everything.hexdigest()[:16], **digests}


def engine_versions() -> dict[str, str | None]:
    """What the rendered audio depends on besides the plan: the TTS packages (Python and Debian) and the CPU
    (onnxruntime's kernels differ by instruction set). None where a package is not installed."""
    import importlib.metadata
    import platform
    import subprocess

    out: dict[str, str | None] = {}
    for name in ("onnxruntime", "piper-tts", "kokoro-onnx", "numpy", "soxr", "librosa"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    for name in ("flite", "festival", "espeak-ng"):
        try:
            got = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True,
                                 timeout=10, check=False)  # fmt: skip
            out[name] = got.stdout.strip() if got.returncode == 0 and got.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            out[name] = None
    info = _cpuinfo()
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    vector = " ".join(f for f in flags if f in VECTOR_FLAGS)
    out["cpu"] = f"{cpu or platform.processor() or 'unknown'}" + (f" ({vector})" if vector else "")
    return out


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
