"""Reliability: a training run killed with SIGKILL resumes from an intact checkpoint and ends where an
uninterrupted run ends; a stage killed in the middle of writing leaves no partial output in sight and a
rerun completes; the bad-input corpus through `dictune run` loses nothing (every item is kept or rejected
with its reason, stage by stage).

Killed processes are real subprocesses (`python -m pipeline.cli ...`); where the kill must land at an
exact point, a small wrapper script holds the stage there with a monkeypatched sleep (the stage code has
no test hooks) and touches a marker file so the test knows when to kill.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from audio_signals import speech_like, write
from test_ingest import build_bad_corpus, check_outcome
from train_clips import write_corpus

from pipeline import cli
from pipeline.manifest import iter_jsonl, read_manifest, read_rejects
from pipeline.runner import STAMP_NAME

REPO = Path(__file__).resolve().parents[1]
KILL_WAIT_SECONDS = 180.0  # longest wait for a subprocess to reach the point where it is killed
POLL_SECONDS = 0.02
TRAIN_STEPS = 30  # long enough that the kill lands mid-run, short enough to resume quickly
KILL_AFTER_STEP = 3  # kill once a checkpoint of at least this step is complete
TERSE_MAX_TOKENS = 12  # generation limit of the model segment's word timer runs in the bad-corpus test


# ---------------------------------------------------------------------------------------------- helpers


def _write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """`python ARGS` from the repository root, one thread, offline; output to a file (a pipe could fill)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _kill_when(proc: subprocess.Popen, ready, log: Path) -> None:
    """SIGKILL `proc` as soon as ready() is true; fail if it exits or takes too long first."""
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"exited ({proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"kill point not reached in {KILL_WAIT_SECONDS:.0f} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(POLL_SECONDS)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:  # a failed wait: do not leave it running
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _hidden_temp(path: Path) -> bool:
    """A temp file or folder of pipeline.files (dot-prefixed, .tmp or .old): never read as an output."""
    return path.name.startswith(".") and path.name.endswith((".tmp", ".old"))


# ----------------------------------------------------------------------------------- kill -9 while training


def _train_data(work_dir: Path, model_dir: Path, manifest: Path) -> dict:
    return {
        "name": "killed",
        "work_dir": str(work_dir),
        "seed": 11,
        "threads": 1,
        "model": {"base": str(model_dir)},
        "train": {  # the default mode: decoder LoRA on cached encoder outputs (the cache is reused on resume)
            "precision": "fp32",  # bit-for-bit the same on machines with and without bf16
            "max_steps": TRAIN_STEPS,
            "batch_size": 4,
            "learning_rate": 1e-2,
            "warmup_steps": 2,
            "train_manifest": str(manifest),
            "dev_manifest": "",
            "eval_steps": 0,
            "save_steps": 1,  # a checkpoint every step: the kill often lands while one is being written
            "keep_checkpoints": 2,
            "log_steps": 5,
            "merge": False,
        },
    }


def _adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


TRAIN_HOLD_SCRIPT = """
import sys
import time
from pathlib import Path

from pipeline import cli
from pipeline.training import checkpoint

config, marker, partial = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
real_write = checkpoint.atomic_write_json


def atomic_write_json(path, obj):  # the state file goes last into a checkpoint's temp folder
    if Path(path).parent.name == partial:
        marker.touch()
        time.sleep(600)  # the test kills the process here: weights and optimizer written, state not
    real_write(path, obj)


checkpoint.atomic_write_json = atomic_write_json
sys.exit(cli.main(["train", config]))
"""


@pytest.fixture(scope="module")
def train_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("reliability_train"), "train", 8)


@pytest.fixture(scope="module")
def straight_adapter(tiny_whisper_dir, train_corpus, tmp_path_factory) -> dict:
    """The adapter of the same training run, never interrupted."""
    from pipeline.config import config_from_dict
    from pipeline.training.trainer import Trainer

    work = tmp_path_factory.mktemp("straight")
    config = config_from_dict(_train_data(work, tiny_whisper_dir, train_corpus))
    Trainer(config, tiny_whisper_dir, progress=False).train()
    return _adapter(work / "train" / "adapter")


@pytest.mark.parametrize("moment", ["any", "checkpoint"])
def test_kill_9_during_training_then_resume_ends_like_an_uninterrupted_run(
    moment, tiny_whisper_dir, train_corpus, straight_adapter, tmp_path, caplog
):
    from safetensors.torch import load_file

    from pipeline.training.checkpoint import STATE_NAME, WEIGHTS_NAME, list_checkpoints

    config = _write_yaml(tmp_path / "c.yaml", _train_data(tmp_path / "work", tiny_whisper_dir, train_corpus))
    out = tmp_path / "work" / "train"
    checkpoints = out / "checkpoints"
    partial = checkpoints / f".step-{KILL_AFTER_STEP + 1:06d}.tmp"
    log, marker, script = tmp_path / "train.log", tmp_path / "held", tmp_path / "hold.py"
    if (
        moment == "any"
    ):  # the plain CLI, killed as soon as a checkpoint of step >= KILL_AFTER_STEP is complete

        def ready() -> bool:
            done = list_checkpoints(checkpoints)
            return bool(done) and done[-1][0] >= KILL_AFTER_STEP

        args = ["-m", "pipeline.cli", "train", str(config)]
    else:  # killed in the middle of writing the next checkpoint
        script.write_text(TRAIN_HOLD_SCRIPT, encoding="utf-8")
        args, ready = [str(script), str(config), str(marker), partial.name], marker.exists
    _kill_when(_start(args, log), ready, log)

    assert not (out / "metrics.json").exists() and not (out / "adapter").exists()  # killed mid-run
    step, newest = list_checkpoints(checkpoints)[-1]
    assert KILL_AFTER_STEP <= step < TRAIN_STEPS
    if moment == "checkpoint":
        assert step == KILL_AFTER_STEP and (partial / WEIGHTS_NAME).is_file()
        assert not (partial / STATE_NAME).exists()  # half-written, and not taken for a checkpoint
    assert json.loads((newest / STATE_NAME).read_text())["step"] == step  # complete and readable
    assert load_file(str(newest / WEIGHTS_NAME))

    with caplog.at_level(logging.INFO, logger="dictune"):
        assert cli.main(["train", str(config), "train.resume=true"]) == 0
    assert f"resumed from {newest} (step {step})" in caplog.text
    assert json.loads((out / "metrics.json").read_text())["steps"] == TRAIN_STEPS
    assert not [p for p in checkpoints.iterdir() if _hidden_temp(p)]  # a half-written one was swept away
    resumed = _adapter(out / "adapter")
    assert resumed.keys() == straight_adapter.keys()
    assert any(float(t.abs().max()) > 0 for k, t in resumed.items() if "lora_B" in k)  # it trained
    for key, tensor in straight_adapter.items():
        assert np.allclose(resumed[key].numpy(), tensor.numpy(), atol=1e-5), key

    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    assert PeftModel.from_pretrained(base, out / "adapter").peft_config["default"].r == 32


# -------------------------------------------------------------------------------------- kill during a write

HOLD_SCRIPT = """
import sys
import time
from pathlib import Path

import pipeline.stages.normalize as stage
from pipeline import cli

config, point, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])


def hold():
    marker.touch()
    time.sleep(600)  # the test kills the process here


if point == "audio":  # the second clip is in the temp audio folder, the others are not written yet
    real_item, done = stage.normalize_item, []

    def normalize_item(item, **kwargs):
        result = real_item(item, **kwargs)
        done.append(item)
        if len(done) == 2:
            hold()
        return result

    stage.normalize_item = normalize_item
else:  # half of the output manifest is written to its temp file
    real_write = stage.write_manifest

    def write_manifest(path, records, *args):
        def rows():
            for index, record in enumerate(records):
                if index == len(records) // 2:
                    hold()
                yield record

        return real_write(path, rows(), *args)

    stage.write_manifest = write_manifest
sys.exit(cli.main(["normalize", config]))
"""
CLIPS = 5


def _normalize_setup(tmp_path: Path) -> Path:
    """A source of CLIPS speech-like clips, ingested; returns the config."""
    rows = []
    for i in range(CLIPS):
        write(tmp_path / "data" / f"c{i}.wav", speech_like(1.5 + 0.2 * i, seed=40 + i))
        rows.append(
            {"id": f"c{i}", "audio_filepath": f"c{i}.wav", "text": f"mild effusion number {i} period"}
        )
    source = tmp_path / "data" / "train.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = _write_yaml(
        tmp_path / "c.yaml",
        {
            "name": "t",
            "work_dir": str(tmp_path / "work"),
            "threads": 1,
            "ingest": {"sources": [{"name": "train", "path": str(source)}]},
            "normalize": {"num_proc": 1},
        },
    )
    assert cli.main(["run", str(config), "--only", "ingest"]) == 0
    return config


@pytest.mark.parametrize("point", ["audio", "manifest"])
def test_kill_during_a_stage_write_leaves_no_partial_output_and_a_rerun_completes(tmp_path, point):
    config = _normalize_setup(tmp_path)
    out = tmp_path / "work" / "normalize"
    script, marker, log = tmp_path / "hold.py", tmp_path / "held", tmp_path / "normalize.log"
    script.write_text(HOLD_SCRIPT, encoding="utf-8")
    _kill_when(_start([str(script), str(config), point, str(marker)], log), marker.exists, log)

    assert not (out / "train.jsonl").exists() and not (out / STAMP_NAME).exists()
    temps = [p for p in out.rglob("*") if _hidden_temp(p)]
    if point == "audio":
        assert not (out / "audio" / "train").exists()  # the folder appears only whole, by one rename
        partial = [p for p in temps if p.is_dir() and p.parent == out / "audio"]
        assert len(partial) == 1 and len(list(partial[0].glob("*.wav"))) == 2  # the kill hit mid-write
    else:  # the audio is complete in its temp folder, to be swapped in with the manifest
        manifests = [p for p in temps if p.parent == out]
        assert len(manifests) == 1 and manifests[0].name.startswith(".train.jsonl.")
        assert manifests[0].read_bytes().count(b"\n") <= CLIPS // 2  # half-written, and out of sight
        assert not (out / "audio" / "train").exists()
    visible = [p for p in out.rglob("*") if not any(_hidden_temp(q) for q in (p, *p.parents))]
    assert not [p for p in visible if p.suffix in (".jsonl", ".json")]

    assert cli.main(["run", str(config), "--only", "ingest", "--only", "normalize"]) == 0
    records, rejects = read_manifest(out / "train.jsonl"), read_rejects(out / "rejects.jsonl")
    assert (out / STAMP_NAME).is_file()
    assert sorted(r.id for r in records) + sorted(r.id for r in rejects) == [f"c{i}" for i in range(CLIPS)]
    audio_dir = (out / "audio" / "train").resolve()
    for record in records:
        path = Path(record.audio_filepath)
        assert path.parent == audio_dir and path.is_file()
        assert sf.info(str(path)).duration == pytest.approx(record.duration, abs=1e-3)
    assert sorted(p.name for p in audio_dir.iterdir()) == sorted(Path(r.audio_filepath).name for r in records)
    assert not [p for p in out.rglob("*") if _hidden_temp(p)], "the rerun removed the killed write's temps"


# ------------------------------------------------------------------------------- the bad corpus, end to end


def _fates(manifest: Path, kinds: dict[int, str], work: Path) -> dict[int, list[tuple[str, str]]]:
    """Source line -> what became of it: ("kept", normalize id) or (stage, reject reason), per piece."""
    ingest = read_manifest(work / "ingest" / "train.jsonl")
    check_outcome(manifest, kinds, ingest, read_rejects(work / "ingest" / "rejects.jsonl"))
    fates: dict[int, list[tuple[str, str]]] = {line: [] for line in kinds}
    for reject in read_rejects(work / "ingest" / "rejects.jsonl"):
        fates[reject.line].append(("ingest", reject.reason))
    line_of = {r.id: r.extra["source_line"] for r in ingest}  # ingest id -> source line

    segmented = read_manifest(work / "segment" / "train.jsonl")
    for record in segmented:  # a pass-through keeps its id; a piece names its parent
        line_of.setdefault(record.id, line_of[record.extra.get("parent_id", record.id)])
    segment_rejects = read_rejects(work / "segment" / "rejects.jsonl")
    for reject in segment_rejects:
        parent = reject.id.split("__")[0]
        assert reject.id == parent or reject.id.startswith(parent + "__")
        fates[line_of[parent]].append(("segment", reject.reason))
    plan = [row for _, row in iter_jsonl(work / "segment" / "segments.jsonl")]
    assert sum(1 for row in plan if not row["kept"]) == len(segment_rejects)
    assert {row["id"] for row in plan if row["kept"]} == {r.id for r in segmented if "parent_id" in r.extra}
    short = {r.id for r in ingest if r.duration <= 30.0}
    assert short <= {r.id for r in segmented}  # short items pass through segment untouched

    normalized = read_manifest(work / "normalize" / "train.jsonl")
    normalize_rejects = read_rejects(work / "normalize" / "rejects.jsonl")
    assert sorted([r.id for r in normalized] + [r.id for r in normalize_rejects]) == sorted(
        r.id for r in segmented
    )
    for record in normalized:
        fates[line_of[record.id]].append(("kept", record.id))
    for reject in normalize_rejects:
        fates[line_of[reject.id]].append(("normalize", reject.reason))
    return fates


def _terse_copy(model_dir: Path, out: Path) -> Path:
    """The tiny random Whisper with generation capped at a few tokens: segment's word timer runs the real
    transformers path over the 10-minute item without a random decoder babbling 448 tokens per window."""
    shutil.copytree(model_dir, out)
    generation = json.loads((out / "generation_config.json").read_text())
    generation["max_length"] = TERSE_MAX_TOKENS
    (out / "generation_config.json").write_text(json.dumps(generation))
    return out


def test_bad_corpus_through_dictune_run_loses_nothing(tiny_whisper_dir, tmp_path):
    manifest, kinds = build_bad_corpus(tmp_path)
    model_dir = _terse_copy(tiny_whisper_dir, tmp_path / "terse_whisper")
    work = tmp_path / "work"
    config = _write_yaml(
        tmp_path / "c.yaml",
        {
            "name": "bad",
            "work_dir": str(work),
            "threads": 1,
            "model": {"base": str(model_dir)},  # segment's word timer: no real model needed
            "ingest": {"sources": [{"name": "train", "path": str(manifest)}]},
            "normalize": {"num_proc": 1},
        },
    )
    stages = ("ingest", "segment", "normalize")
    assert cli.main(["run", str(config), *(f"--only={s}" for s in stages)]) == 0
    assert all((work / s / STAMP_NAME).is_file() for s in stages)
    fates = _fates(manifest, kinds, work)
    for line, fate in fates.items():
        assert fate, f"line {line} ({kinds[line]}) vanished"
        assert all(reason.strip() for stage, reason in fate if stage != "kept"), (line, fate)
    kept = {kinds[line] for line, fate in fates.items() if any(stage == "kept" for stage, _ in fate)}
    assert {"good", "stereo", "8khz", "good_flac"} <= kept  # the repairable items made it through
