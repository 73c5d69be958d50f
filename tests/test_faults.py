"""Faults the runner must survive: a full disk (an OSError(ENOSPC) injected at the write layer, and a real
tmpfs when running as root), kill -9 at several points of a changed-config rerun, two runs on one work
dir. After each, a plain rerun reaches outputs identical to an undisturbed run; nothing good is listed as
a reject; a failed stage leaves no stamp.

Killed and concurrent runs are real subprocesses (`python HOLD_SCRIPT`) held at an exact point by a
monkeypatched sleep; everything else runs in this process on five short synthetic clips.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audio_signals import speech_like, write
from test_reliability import KILL_WAIT_SECONDS, POLL_SECONDS, _hidden_temp, _kill_when, _start, _write_yaml

from pipeline import audio, cli, files, manifest, runner
from pipeline.files import remove_stale_temps
from pipeline.runner import STAMP_NAME
from pipeline.worklock import hold_work_dir

CLIPS = 5
CHANGED = "normalize.trim_margin_seconds=0.3"  # a changed normalize key: the rerun replaces every output


def _enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("faults_data")
    rows = []
    for i in range(CLIPS):
        write(data / f"c{i}.wav", speech_like(1.5 + 0.2 * i, seed=40 + i))
        rows.append({"id": f"c{i}", "audio_filepath": f"c{i}.wav", "text": f"mild effusion number {i} period"})
    path = data / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(folder: Path, source: Path) -> Path:
    """A config with its work dir in `folder`, ingested."""
    config = _write_yaml(
        folder / "c.yaml",
        {"name": "t", "work_dir": str(folder / "work"), "threads": 1,
         "ingest": {"sources": [{"name": "train", "path": str(source)}]}, "normalize": {"num_proc": 1}},
    )  # fmt: skip
    assert cli.main(["run", str(config), "--only", "ingest"]) == 0
    return config


def _outputs(work: Path) -> dict[str, bytes]:
    """normalize's visible outputs (manifests, rejects, audio), the work dir's path taken out of them."""
    out = work / "normalize"
    found = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != STAMP_NAME and not any(_hidden_temp(p) for p in (path, *path.parents)):
            found[str(path.relative_to(out))] = path.read_bytes().replace(str(work.resolve()).encode(), b"<work>")
    return found


@pytest.fixture(scope="module")
def undisturbed(source, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """normalize's outputs of plain runs: 'original' config, then 'changed'."""
    config = _config(tmp_path_factory.mktemp("undisturbed"), source)
    work = config.parent / "work"
    assert cli.main(["run", str(config), "--only", "normalize"]) == 0
    original = _outputs(work)
    assert cli.main(["run", str(config), CHANGED, "--only", "normalize"]) == 0
    changed = _outputs(work)
    assert len([k for k in original if k.endswith(".wav")]) == CLIPS, "every clip kept"
    assert original.keys() == changed.keys() and original != changed
    return {"original": original, "changed": changed}


def _errors(captured) -> list[str]:
    """The CLI's error lines of captured stderr (log lines aside); a traceback fails the test."""
    assert "Traceback" not in captured.err
    return [line for line in captured.err.splitlines() if line.startswith("dictune: ")]


def _no_temps(work: Path) -> bool:
    return not [p for p in work.rglob("*") if _hidden_temp(p)]


# ---------------------------------------------------------------------------------------------- full disk


class _FullDisk:
    """ENOSPC from the write layer after `after` successful writes of the kind named by `target`."""

    def __init__(self, monkeypatch, target: str, after: int) -> None:
        self.calls, self.after = 0, after
        if target == "audio":
            real = audio.write_wav

            def write_wav(path, samples, rate):
                self._tick(path)
                real(path, samples, rate)

            monkeypatch.setattr(audio, "write_wav", write_wav)
        else:  # manifests and rejects (pipeline.manifest), transcripts (pipeline.files)
            real_open = files.atomic_open

            @contextlib.contextmanager
            def atomic_open(path, *args, **kwargs):
                self._tick(path)
                with real_open(path, *args, **kwargs) as handle:
                    yield handle

            monkeypatch.setattr(files, "atomic_open", atomic_open)
            monkeypatch.setattr(manifest, "atomic_open", atomic_open)

    def _tick(self, path) -> None:
        self.calls += 1
        if self.calls > self.after:
            raise _enospc(path)


@pytest.mark.parametrize(("target", "after"), [("audio", 0), ("audio", 3), ("manifest", 0)])
def test_full_disk_in_a_normalize_rerun_keeps_the_previous_outputs(
    target, after, source, undisturbed, tmp_path, monkeypatch, capsys
):
    config = _config(tmp_path, source)
    work = tmp_path / "work"
    assert cli.main(["run", str(config), "--only", "normalize"]) == 0
    assert _outputs(work) == undisturbed["original"]
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _FullDisk(patch, target, after)
        assert cli.main(["run", str(config), CHANGED, "--only", "normalize"]) == 1
    err = _errors(capsys.readouterr())
    assert len(err) == 1 and "normalize: stopped: no space left on device" in err[0], err
    assert "MB free on" in err[0] and "needs about" in err[0]
    assert not (work / "normalize" / STAMP_NAME).exists(), "no stamp for a failed stage"
    assert _outputs(work) == undisturbed["original"], "previous outputs intact, no good item rejected"
    assert _no_temps(work)
    assert cli.main(["run", str(config), CHANGED, "--only", "normalize"]) == 0
    assert _outputs(work) == undisturbed["changed"]


def test_full_disk_on_a_first_normalize_run_leaves_nothing_in_sight(source, tmp_path, monkeypatch, capsys):
    config = _config(tmp_path, source)
    out = tmp_path / "work" / "normalize"
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _FullDisk(patch, "audio", 2)
        assert cli.main(["normalize", str(config)]) == 1
    err = _errors(capsys.readouterr())
    assert len(err) == 1 and "no space left on device" in err[0]
    assert not [p for p in out.rglob("*") if p.is_file()], "no partial output, no rejects, no stamp"
    assert _no_temps(tmp_path / "work")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_real_full_tmpfs_during_a_normalize_rerun(source, undisturbed, tmp_path, capsys):
    """The issue's case on a real file system: a tmpfs work dir with room for one set of outputs."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    need = sum(len(v) for v in undisturbed["original"].values())
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount failed: {done.stderr.decode().strip()}")
    try:
        config = _config(mount, source)
        work = mount / "work"
        assert cli.main(["run", str(config), "--only", "normalize"]) == 0
        assert _outputs(work) == undisturbed["original"]
        with open(mount / "filler", "wb") as filler:  # leave less free than a second set of outputs needs
            filler.write(b"\0" * max(0, os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize - need // 2))
        capsys.readouterr()
        assert cli.main(["run", str(config), CHANGED, "--only", "normalize"]) == 1
        assert "no space left on device" in capsys.readouterr().err
        assert not (work / "normalize" / STAMP_NAME).exists()
        assert _outputs(work) == undisturbed["original"] and _no_temps(work)
        assert not [p for p in work.rglob("*.wav") if p.stat().st_size == 0]
        (mount / "filler").unlink()
        assert cli.main(["run", str(config), CHANGED, "--only", "normalize"]) == 0
        assert _outputs(work) == undisturbed["changed"]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# ---------------------------------------------------------------------------------------------- kill -9

HOLD_SCRIPT = """
import sys
import time
from pathlib import Path

import pipeline.stages.normalize as stage
from pipeline import cli, files, runner

config, point, marker, overrides = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]


def hold():
    marker.touch()
    time.sleep(600)  # the test kills the process here


def before(module, name, test=lambda *a: True):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        if test(*args):
            hold()
        return real(*args, **kwargs)

    setattr(module, name, wrapper)


if point == "audio":  # two clips written into the temp audio folder
    real_item, done = stage.normalize_item, []

    def normalize_item(item, **kwargs):
        result = real_item(item, **kwargs)
        done.append(item)
        if len(done) == 2:
            hold()
        return result

    stage.normalize_item = normalize_item
elif point == "manifest":  # all new audio in its temp folder, the manifest not yet written
    before(stage, "write_manifest")
elif point == "commit":  # new rejects and train.jsonl in place, the old audio folder still there
    real_replace = files.os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "train.jsonl":
            hold()

    files.os = __import__("types").SimpleNamespace(**{**vars(__import__("os")), "replace": replace})
elif point == "stamp":  # every output replaced, the stamp not yet written
    before(runner, "atomic_write_json", lambda path, obj: Path(path).name == runner.STAMP_NAME)
sys.exit(cli.main(["run", config, *overrides, "--only", "normalize"]))
"""


def _held_run(config: Path, point: str, tmp_path: Path, *overrides: str):
    script, marker, log = tmp_path / "hold.py", tmp_path / f"held-{point}", tmp_path / f"{point}.log"
    script.write_text(HOLD_SCRIPT, encoding="utf-8")
    return _start([str(script), str(config), point, str(marker), *overrides], log), marker, log


@pytest.mark.parametrize("point", ["audio", "manifest", "commit", "stamp"])
def test_kill_9_during_a_changed_config_rerun_then_the_original_config_reruns(
    point, source, undisturbed, tmp_path, caplog
):
    config = _config(tmp_path, source)
    work = tmp_path / "work"
    assert cli.main(["run", str(config), "--only", "normalize"]) == 0
    proc, marker, log = _held_run(config, point, tmp_path, CHANGED)
    _kill_when(proc, marker.exists, log)
    assert not (work / "normalize" / STAMP_NAME).exists(), "the stamp went before any output was replaced"
    with caplog.at_level("INFO", logger="dictune"):
        assert cli.main(["run", str(config), "--only", "normalize"]) == 0
    assert "normalize: running" in caplog.text and "unchanged, skipped" not in caplog.text
    assert _outputs(work) == undisturbed["original"]
    assert _no_temps(work)


# ---------------------------------------------------------------------------------------------- two runs


def test_a_second_run_on_a_busy_work_dir_exits_at_once_and_harms_nothing(
    source, undisturbed, tmp_path, capsys
):
    config = _config(tmp_path, source)
    work = tmp_path / "work"
    proc, marker, log = _held_run(config, "audio", tmp_path)
    try:
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(POLL_SECONDS)
        temps = [p for p in (work / "normalize").rglob("*") if _hidden_temp(p)]
        assert temps, "the first run is writing"
        capsys.readouterr()
        assert cli.main(["run", str(config), "--only", "normalize"]) == 2
        err = _errors(capsys.readouterr())
        assert len(err) == 1 and f"pid {proc.pid}" in err[0] and "one run per work dir" in err[0]
        assert all(p.exists() for p in temps), "the first run's temps are untouched"
    finally:
        _kill_when(proc, lambda: True, log)
    assert cli.main(["run", str(config), "--only", "normalize"]) == 0  # the lock died with its holder
    assert _outputs(work) == undisturbed["original"] and _no_temps(work)


def test_temps_of_a_live_process_are_kept_and_those_of_a_dead_one_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True)
    names = {
        f".train.jsonl.p{os.getpid()}.abcd1234.tmp": True,  # a live writer (this process)
        f".train.jsonl.p{int(dead.stdout)}.abcd1234.tmp": False,  # its writer exited
        ".train.jsonl.abcd1234.tmp": False,  # an older version's name (no pid)
    }
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f".audio.p{os.getpid()}.abcd1234.tmp").mkdir()
    assert remove_stale_temps(tmp_path) == 2
    assert {p.name for p in tmp_path.iterdir()} == {n for n, keep in names.items() if keep} | {
        f".audio.p{os.getpid()}.abcd1234.tmp"
    }


def test_the_work_dir_lock_is_reentrant_in_one_process_and_released(tmp_path):
    with hold_work_dir(tmp_path / "w"), hold_work_dir(tmp_path / "w"):
        assert (tmp_path / "w" / ".dictune.lock.owner").is_file()
    assert not (tmp_path / "w" / ".dictune.lock.owner").exists()
    code = f"from pipeline.worklock import hold_work_dir\nwith hold_work_dir({str(tmp_path / 'w')!r}): pass\n"
    env = {**os.environ, "PYTHONPATH": str(Path(runner.__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
