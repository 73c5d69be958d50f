"""A simulated 1,000-hour corpus through ingest, shard writing and the streaming loader, against real
training steps; and the encoder-cache arithmetic that decides how training runs at each scale.

    cd <repo> && .venv/bin/python scripts/scale_check.py [--lines 360000] [--clips 20] [--num-proc 2]
        [--threads 2] [--steps 5] [--out-dir data/scale_check] [--out bench/scale.json]

1. Corpus: --clips real 10 s, 16 kHz mono WAV clips (radiology sentences spoken by espeak-ng or flite,
   padded/trimmed to 10 s; speech-like synthetic signals without either) and a JSONL manifest of --lines
   lines (360,000 x 10 s = 1,000 h), written line by line: unique ids, texts cycling over the sentences of
   data_manifests/radiology_demo/corpus/sentences.tsv, audio cycling over the clips. Texts and audio do
   not match: the check measures rates and memory, the training loss means nothing.
2. `dictune ingest --source MANIFEST --out DIR --num-proc N`, then write_shards(DIR/manifest.jsonl), each
   in its own subprocess: wall time and the peak over time of the summed VmRSS of the process and all its
   descendants (sampled every 0.2 s), the same for PSS (pages shared by forked workers counted once), and
   each process's VmHWM. The 2 GB target is judged on PSS: summed RSS counts the parent's pages again in
   every forked worker. ru_maxrss is not used: a child inherits its parent's across fork+exec. Shards are
   written from the ingest manifest, not from normalize's output as in `dictune run`: normalize would
   write 360,000 audio files, and write_shards takes ingest records as they are (text_norm is empty).
3. In a third subprocess (torch threads = --threads, as train's `threads` sets them): a real Trainer on
   the shards (train.streaming=true, tiny.en, adapt=decoder, the demo's LoRA targets and lexicon, so the
   contexts of context-aware training too; no dev set). First its DataLoader alone (trainer.data.loader:
   ShardStream batches of at most 80 s / 32 rows, target_ids, contexts, load_waveform, Collator log-mels)
   for --loader-batches batches or --loader-seconds: rows/s. Then --steps training steps in the mode the
   trainer picks (360,000 clips: encoder run on the fly without grad, LoRA decoder forward/backward): rows/s
   and s/step from metrics.json. With num_workers=0 (the default) the loader runs inside each step, so the
   step time includes loading its batch.
4. plan_cache + streaming_wanted with the config defaults, for tiny.en and large-v3-turbo at 10, 100 and
   1,000 h of 10 s clips, with this machine's free disk, on CPU and on a GPU: the mode the trainer picks.
5. A Markdown summary on stdout and a JSON at --out (atomic).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SENTENCES = REPO / "data_manifests/radiology_demo/corpus/sentences.tsv"
DEMO_CONFIG = REPO / "configs/radiology_demo.yaml"
RATE, CLIP_SECONDS, LIMIT_MB = 16000, 10.0, 2000
MODELS, HOURS = ("tiny.en", "large-v3-turbo"), (10, 100, 1000)


# ------------------------------------------------------------------------------------------ corpus


def sentences() -> list[tuple[str, str]]:
    with SENTENCES.open(encoding="utf-8", newline="") as handle:
        return [(row["modality"], row["text"]) for row in csv.DictReader(handle, delimiter="\t")]


def _synthetic(seed: int) -> np.ndarray:
    """Speech-like: harmonic bursts at ~4 syllables/s with a moving pitch, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(CLIP_SECONDS * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(150 + 40 * np.sin(2 * np.pi * 0.4 * t + seed)) / RATE
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.15 * sum(np.sin(k * phase) / k for k in range(1, 6)) * envelope
            + 0.002 * rng.standard_normal(t.size)).astype(np.float32)  # fmt: skip


def _speak(engine: str, text: str, raw: Path) -> np.ndarray:
    from pipeline.audio import load_mono

    args = ["-w", str(raw), text] if Path(engine).name == "espeak-ng" else ["-t", text, "-o", str(raw)]
    subprocess.run([engine, *args], check=True, capture_output=True)
    wave = load_mono(raw, RATE)
    raw.unlink()
    return 0.5 * wave / max(float(np.abs(wave).max()), 1e-6)


def make_clips(folder: Path, n: int, texts: list[tuple[str, str]], engine: str | None) -> list[str]:
    """n clips of exactly 10 s (made once); returns their names relative to folder's parent."""
    from pipeline.audio import write_wav

    folder.mkdir(parents=True, exist_ok=True)
    size = int(CLIP_SECONDS * RATE)
    for i in range(n):
        path = folder / f"clip-{i:03d}.wav"
        if not path.is_file():
            wave = _speak(engine, texts[i % len(texts)][1], folder / "raw.wav") if engine else _synthetic(i)
            write_wav(path, np.pad(wave, (0, max(0, size - wave.size)))[:size], RATE)
    return [f"{folder.name}/clip-{i:03d}.wav" for i in range(n)]


def write_manifest(path: Path, lines: int, clips: list[str], texts: list[tuple[str, str]]) -> None:
    """The manifest, one line at a time (never held whole)."""
    from pipeline.files import atomic_open

    with atomic_open(path, "w") as handle:
        for n in range(lines):
            modality, text = texts[n % len(texts)]
            handle.write(json.dumps({"id": f"scale-{n:07d}", "audio_filepath": clips[n % len(clips)],
                                     "duration": CLIP_SECONDS, "text": text, "modality": modality}) + "\n")  # fmt: skip


# ------------------------------------------------------------------------------------------ measuring


def watch(cmd: list[str], log: Path, interval: float = 0.2) -> dict[str, Any]:
    """Run cmd; wall time, peak summed RSS/PSS of its process tree, VmHWM of each of its processes."""
    import psutil

    from pipeline.procmem import proc_kb

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    root, hwm, peak_rss, peak_pss, most = psutil.Process(proc.pid), {}, 0, 0, 0
    while proc.poll() is None:
        rss = pss = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                status = proc_kb(p.pid, ("VmRSS", "VmHWM"))
                pss += proc_kb(p.pid, ("Pss",), "smaps_rollup").get("Pss", 0)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            rss += status.get("VmRSS", 0)
            hwm[p.pid] = max(hwm.get(p.pid, 0), status.get("VmHWM", 0))
        peak_rss, peak_pss, most = max(peak_rss, rss), max(peak_pss, pss), max(most, len(tree))
        time.sleep(interval)
    wall = time.monotonic() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:4])}... failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    children = [v for pid, v in hwm.items() if pid != proc.pid]
    return {"wall_s": round(wall, 1), "peak_tree_rss_mb": round(peak_rss / 1024), "peak_tree_pss_mb": round(peak_pss / 1024),
            "main_vmhwm_mb": round(hwm.get(proc.pid, 0) / 1024), "children_seen": len(children),
            "max_child_vmhwm_mb": round(max(children, default=0) / 1024), "max_processes_at_once": most,
            "within_2gb": peak_pss <= LIMIT_MB * 1024, "log": str(log)}  # fmt: skip


def result_of(log: Path) -> dict[str, Any]:
    lines = [x for x in log.read_text().splitlines() if x.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :])


# ------------------------------------------------------------------------------------------ phases (subprocesses)


def phase_shards(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.training.shards import write_shards

    index = write_shards(args.manifest, args.shard_dir, args.rows_per_shard)
    return {"rows": index.total_rows, "hours": index.hours, "shards": len(index.shards),
            "bytes": sum(p.stat().st_size for p in index.paths())}  # fmt: skip


def phase_train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from pipeline.config import config_from_dict, load_config
    from pipeline.training import resolve_base
    from pipeline.training.trainer import Trainer

    demo = load_config(DEMO_CONFIG)
    train = {"streaming": "true", "shard_dir": args.shard_dir, "max_steps": args.steps, "adapt": "decoder",
             "lora_target_modules": list(demo.train.lora_target_modules), "dev_manifest": "", "eval_steps": 0,
             "save_steps": 0, "log_steps": 1, "merge": False}  # fmt: skip
    config = config_from_dict({"name": "scale_check", "work_dir": args.work_dir, "seed": demo.seed,
                               "lexicon": str(REPO / demo.lexicon), "model": {"base": "tiny.en"}, "train": train})  # fmt: skip
    steps: list[tuple[float, float]] = []  # (wall, CPU) seconds of each step
    last = [time.monotonic(), time.process_time()]

    def tick(step: int) -> None:
        steps.append((time.monotonic() - last[0], time.process_time() - last[1]))
        last[:] = [time.monotonic(), time.process_time()]

    trainer = Trainer(config, resolve_base(config), progress=False, on_step_end=tick)
    batches, rows, n = iter(trainer.data.loader(0)), 0, 0
    t0, c0 = time.monotonic(), time.process_time()
    while n < args.loader_batches and time.monotonic() - t0 < args.loader_seconds:
        rows += len(next(batches)["labels"])
        n += 1
    loader_s, loader_cpu = time.monotonic() - t0, time.process_time() - c0
    del batches
    last[:] = [time.monotonic(), time.process_time()]
    trainer.train()
    metrics = json.loads((trainer.out_dir / "metrics.json").read_text())
    steady = [statistics.median(column) for column in zip(*(steps[1:] or steps))]
    return {"threads": torch.get_num_threads(), "loader_batches": n, "loader_rows": rows,
            "loader_seconds": round(loader_s, 2), "loader_cpu_seconds": round(loader_cpu, 2),
            "loader_rows_per_s": round(rows / loader_s, 1), "mode": metrics["mode"], "precision": metrics["precision"],
            "encoder_cache_plan": metrics["encoder_cache_plan"], "steps": metrics["steps"],
            "samples": metrics["samples"], "train_seconds": metrics["train_seconds"],
            "seconds_per_step": metrics["seconds_per_step"], "rows_per_step": metrics["samples"] / metrics["steps"],
            "train_rows_per_s": metrics["samples_per_second"], "step_seconds": [round(w, 2) for w, _ in steps],
            "steady_seconds_per_step": round(steady[0], 3), "steady_cpu_seconds_per_step": round(steady[1], 3)}  # fmt: skip


# ------------------------------------------------------------------------------------------ arithmetic


def cache_table(free: int) -> list[dict[str, Any]]:
    """The mode the trainer picks per model, corpus size and device (config defaults, this disk)."""
    from pipeline.models.shapes import SHAPES
    from pipeline.train_config import TrainConfig
    from pipeline.training.encoder_cache import plan_cache
    from pipeline.training.stream import streaming_wanted

    cfg, rows = TrainConfig(), []
    for model in MODELS:
        for hours in HOURS:
            clips = int(hours * 3600 / CLIP_SECONDS)
            stream = streaming_wanted(cfg.streaming, hours, cfg.streaming_min_hours)
            for device in ("cpu", "gpu"):
                plan = plan_cache(clips, SHAPES[model].d_model, cfg.encoder_cache_dtype, cfg.encoder_cache_budget_gb,
                                  free, device == "gpu")  # fmt: skip
                mode = "streamed, " if stream else "in memory, "
                mode += "cached on disk" if plan.use and not stream else "encoded on the fly"
                why = plan.reason.rsplit(", ", 1)[-1].rsplit(": ", 1)[0]  # the plan alone (streaming aside)
                rows.append({"model": model, "hours": hours, "clips": clips, "device": device, "streaming": stream,
                             "cache_gb": round(plan.total_bytes / 1e9, 1), "plan": why, "mode": mode})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------ main


def markdown(report: dict[str, Any]) -> str:
    c, t, out = report["corpus"], report["train"], []
    out.append(f"## scale_check: {c['lines']:,} lines x 10 s = {c['hours']:,.1f} h ({c['clips']} clips, {c['voice']}; "
               f"manifest {c['manifest_mb']} MB written in {c['write_s']} s)\n")  # fmt: skip
    out.append("| phase | wall s | peak tree RSS MB | peak tree PSS MB | main VmHWM MB | max child VmHWM MB | "
               "processes (at once) | PSS <= 2 GB |\n|---|---:|---:|---:|---:|---:|---:|---|")  # fmt: skip
    for name in ("ingest", "shards", "train_process"):
        m = report[name]
        out.append(f"| {name} | {m['wall_s']} | {m['peak_tree_rss_mb']:,} | {m['peak_tree_pss_mb']:,} | "
                   f"{m['main_vmhwm_mb']:,} | {m['max_child_vmhwm_mb']:,} | {m['children_seen'] + 1} "
                   f"({m['max_processes_at_once']}) | {'yes' if m['within_2gb'] else 'NO'} |")  # fmt: skip
    s = report["shard_index"]
    out.append(f"\ningest: {report['ingest_rows_per_s']:,.0f} lines/s; shards: {s['rows']:,} rows, {s['hours']:,.1f} h, "
               f"{s['shards']} shards, {s['bytes'] / 1e6:.1f} MB\n")  # fmt: skip
    out.append(f"- loader (torch threads {t['threads']}): {t['loader_rows']:,} rows in {t['loader_batches']} batches, "
               f"{t['loader_seconds']} s ({t['loader_cpu_seconds']} s CPU): **{t['loader_rows_per_s']:,.1f} rows/s**")  # fmt: skip
    out.append(f"- training ({t['mode']}, {t['precision']}, {t['encoder_cache_plan']}): {t['steps']} steps, "
               f"{t['rows_per_step']:.1f} rows/step, {t['seconds_per_step']} s/step (metrics.json; steady median "
               f"{t['steady_seconds_per_step']} s, {t['steady_cpu_seconds_per_step']} s CPU; steps {t['step_seconds']}): **{t['train_rows_per_s']} rows/s**")  # fmt: skip
    met = "met" if report["ratio"] >= 3 else "NOT met"
    out.append(f"- loader / training = **{report['ratio']:.1f}x** (target >= 3x: {met})\n")
    out.append(f"Encoder-cache plan (defaults; free disk here {report['free_disk_gb']:.0f} GB):\n")
    out.append("| model | hours | clips | cache GB | cache plan on CPU | trainer on CPU | trainer on GPU |")
    out.append("|---|---:|---:|---:|---|---|---|")
    table = report["cache_table"]
    for cpu, gpu in zip(table[::2], table[1::2]):
        out.append(f"| {cpu['model']} | {cpu['hours']:,} | {cpu['clips']:,} | {cpu['cache_gb']:,} | {cpu['plan']} | "
                   f"{cpu['mode']} | {gpu['mode']} |")  # fmt: skip
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=360_000)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--out-dir", default="data/scale_check")
    parser.add_argument("--out", default="bench/scale.json")
    parser.add_argument("--num-proc", type=int, default=2, help="ingest decoding workers (datasets.map)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the loader and training")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--loader-batches", type=int, default=200)
    parser.add_argument("--loader-seconds", type=float, default=60.0)
    parser.add_argument("--rows-per-shard", type=int, default=10_000)
    parser.add_argument("--phase", choices=("shards", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--shard-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = phase_shards(args) if args.phase == "shards" else phase_train(args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    from pipeline.files import atomic_write_json
    from pipeline.training.encoder_cache import cache_root_dir, free_bytes

    root = (REPO / args.out_dir).resolve()
    for name in ("ingest", "shards", "work"):
        shutil.rmtree(root / name, ignore_errors=True)
    texts = sentences()
    engine = shutil.which("espeak-ng") or shutil.which("flite")
    clips = make_clips(root / "clips", args.clips, texts, engine)
    manifest, t0 = root / "manifest.jsonl", time.monotonic()
    write_manifest(manifest, args.lines, clips, texts)
    report: dict[str, Any] = {"corpus": {"lines": args.lines, "hours": args.lines * CLIP_SECONDS / 3600, "clips": args.clips,
                                         "voice": Path(engine).name if engine else "synthetic", "manifest": str(manifest),
                                         "manifest_mb": round(manifest.stat().st_size / 1e6, 1),
                                         "write_s": round(time.monotonic() - t0, 1)}}  # fmt: skip
    me, py = str(Path(__file__).resolve()), sys.executable
    print(f"ingest of {args.lines:,} lines ...", flush=True)
    report["ingest"] = watch([py, "-m", "pipeline.cli", "ingest", "--source", str(manifest), "--out", str(root / "ingest"),
                              "--num-proc", str(args.num_proc)], root / "ingest.log")  # fmt: skip
    report["ingest_rows_per_s"] = args.lines / report["ingest"]["wall_s"]
    for name in ("manifest", "rejects"):
        with (root / "ingest" / f"{name}.jsonl").open("rb") as handle:
            report[f"ingest_{name}_lines"] = sum(1 for _ in handle)
    print(f"shards ... (ingest: {report['ingest']['wall_s']} s)", flush=True)
    common = ["--shard-dir", str(root / "shards"), "--rows-per-shard", str(args.rows_per_shard)]
    report["shards"] = watch([py, me, "--phase", "shards", "--manifest", str(root / "ingest/manifest.jsonl"), *common],
                             root / "shards.log")  # fmt: skip
    report["shard_index"] = result_of(root / "shards.log")
    print(f"loader and training ... (shards: {report['shards']['wall_s']} s)", flush=True)
    report["train_process"] = watch([py, me, "--phase", "train", "--threads", str(args.threads), "--steps", str(args.steps),
                                     "--loader-batches", str(args.loader_batches), "--loader-seconds",
                                     str(args.loader_seconds), "--work-dir", str(root / "work"), *common], root / "train.log")  # fmt: skip
    report["train"] = train = result_of(root / "train.log")
    report["ratio"] = train["loader_rows_per_s"] / train["train_rows_per_s"]
    report["free_disk_gb"] = free_bytes(cache_root_dir(None)) / 1e9
    report["cache_table"] = cache_table(free_bytes(cache_root_dir(None)))
    atomic_write_json(REPO / args.out if not Path(args.out).is_absolute() else args.out, report)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
