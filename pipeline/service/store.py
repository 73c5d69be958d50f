"""The corrections store: what a radiologist fixed on the review page, kept as training data.

    <store_dir>/corrections.sqlite   one row per saved correction (SQLite, WAL journal)
    <store_dir>/audio/<sha256>.<ext> the dictation's audio, named by its content

A save writes the audio first (temp file, fsync, rename, fsync of the folder), then commits the row: a crash
between the two leaves an audio file without a row, never a row without its audio. `recover()` (run when
the store opens) lists such orphans and moves them to audio/orphans/, so that every row has its audio and
every file under audio/ has its row. `ingest` reads the store as a source (format `corrections`); a
correction never enters a test split (ingest refuses a corrections source named like one).

Nothing here logs transcript text.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.files import atomic_write_bytes

logger = logging.getLogger("dictune")

DB_NAME = "corrections.sqlite"
AUDIO_DIR = "audio"
ORPHANS_DIR = "orphans"
SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    profile TEXT NOT NULL,
    audio_sha256 TEXT NOT NULL,
    audio_path TEXT NOT NULL,          -- relative to the store folder
    hypothesis TEXT NOT NULL,
    corrected TEXT NOT NULL,
    model_id TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Correction:
    id: int
    profile: str
    audio_sha256: str
    audio_path: str  # relative to the store folder
    hypothesis: str
    corrected: str
    model_id: str
    created: float
    updated: float


class CorrectionsStore:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        (self.folder / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    @contextlib.contextmanager
    def _connect(self, checkpoint: bool = False):
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
            if checkpoint:  # move the committed rows from the WAL into the database file, so ingest's
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fingerprint of that file changes
        finally:
            db.close()

    def save(self, profile: str, audio: bytes, suffix: str, hypothesis: str, corrected: str, model_id: str) -> int:
        """Store one correction (the audio first, then the row); returns its id."""
        digest = hashlib.sha256(audio).hexdigest()
        suffix = suffix.lower() if suffix.startswith(".") and suffix[1:].isalnum() else ".bin"
        relative = f"{AUDIO_DIR}/{digest}{suffix}"
        target = self.folder / relative
        if not target.exists():
            atomic_write_bytes(target, audio)  # temp file, fsync, rename, fsync of the folder
        now = time.time()
        with self._connect(checkpoint=True) as db:
            cursor = db.execute(
                "INSERT INTO corrections (profile, audio_sha256, audio_path, hypothesis, corrected, model_id,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (profile, digest, relative, hypothesis, corrected, model_id, now, now),
            )
            row = int(cursor.lastrowid)
        return row

    def rows(self) -> list[Correction]:
        return read_corrections(self.path)

    def recover(self) -> dict[str, int]:
        """Move audio files no row names to audio/orphans/ (a save cut between its two steps); count rows
        whose audio is missing (only a hand-deleted file can cause that)."""
        named = {row.audio_path for row in self.rows()}
        orphans = 0
        for path in sorted((self.folder / AUDIO_DIR).iterdir()):
            relative = f"{AUDIO_DIR}/{path.name}"
            if path.is_file() and relative not in named:
                destination = self.folder / AUDIO_DIR / ORPHANS_DIR / path.name
                destination.parent.mkdir(exist_ok=True)
                os.replace(path, destination)  # a temp file of a cut save, or audio without its row
                orphans += 1
        missing = sum(1 for relative in named if not (self.folder / relative).is_file())
        if orphans or missing:
            logger.warning("corrections store %s: %d audio file(s) without a row moved to %s/%s/, %d row(s) "
                           "without audio", self.folder, orphans, AUDIO_DIR, ORPHANS_DIR, missing)  # fmt: skip
        return {"orphans": orphans, "rows_without_audio": missing}


def read_corrections(path: str | os.PathLike) -> list[Correction]:
    """The rows of a store's database, read-only (for ingest; nothing is created or changed)."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30)
    try:
        return [Correction(*row) for row in db.execute(
            "SELECT id, profile, audio_sha256, audio_path, hypothesis, corrected, model_id, created, updated"
            " FROM corrections ORDER BY id")]  # fmt: skip
    finally:
        db.close()
