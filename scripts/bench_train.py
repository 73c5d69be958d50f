"""Training speed side by side: the Hugging Face reference recipe against dictune's Trainer, with the same
LoRA config, the same data and the same batches, for the same number of steps.

    .venv/bin/python scripts/bench_train.py [--steps 10] [--batch-size 8] [--threads 1] [--model tiny.en]
        [--manifest M.jsonl | --config configs/radiology_demo.yaml] [--precision auto]
        [--out bench/train.json]

Runs (each in its own subprocess, so peak RSS is per run, with torch/OpenMP threads fixed to --threads):
  hf-reference     Seq2SeqTrainer + DataCollatorSpeechSeq2SeqWithPadding as in the transformers
                   speech-recognition example (log-mels precomputed with datasets.map, padded by the
                   feature extractor; labels padded by the tokenizer, -100 on padding, a leading
                   decoder-start token stripped), peft LoRA on the target modules wherever they occur
                   (encoder and decoder), no evaluation, bf16 autocast when the CPU supports it
  hf-decoder       the same recipe with LoRA on the decoder's target modules only (the encoder frozen but
                   run at every step): the like-for-like control for dictune-default
  dictune-both     dictune's Trainer with LoRA on encoder and decoder: like-for-like with hf-reference
  dictune-default  `dictune train` as configured by default: decoder LoRA on cached encoder outputs
                   (the fast mode), compared with hf-decoder
  hf-reference-w4, hf-decoder-w4
                   the two recipes with 4 DataLoader worker processes (not run by default): on a GPU the
                   recipe's loader in the training process is the bottleneck, so there a dictune run is
                   compared with the faster of its recipe's two runs (the peer's best configuration)
dictune's runs show no previous-text or term-list prompts (train.context_*_share = 0), as the recipe
shows none, so both learn the same task. Every run uses dictune's defaults for LoRA rank, alpha, dropout and target modules, learning rate, the
linear schedule, gradient clipping and AdamW (fused), --warmup steps, one precision (bf16 when the CPU
has it, else fp32; --precision fp32 for the equal-fp32 comparison) and one seed. The reference sees the
batches of dictune's batch plan in the same order (a sequential sampler over the items in plan order),
and tokenizes " " + text as dictune does, so both learn the same label ids.

Data: --manifest, else <work_dir>/normalize/train.jsonl of --config when the demo made one (non-empty), else
espeak-ng renderings of the demo corpus sentences (cached under data/bench_train/), else synthetic tone
clips (scripts/bench_train_modes.py). batch size x steps items are drawn from it (seeded).

Figures: s/step is the median wall time of the steps after the first (warm-up), cpu s/step the same in
process CPU time (the fairer figure on a shared machine), samples/s = batch size / s/step. prep s is
the work done once before training (the reference's feature extraction, dictune's encoder cache), and
end-to-end samples/s counts it together with every step. final loss is the mean training loss of the
last --last-k steps (the same batches for every run). Goal (issue 8): dictune >= 1.5x the reference
samples/s at equal loss (here: final loss within LOSS_TOLERANCE of the reference's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ESPEAK_DIR = REPO / "data" / "bench_train" / "espeak"  # cached renderings (git-ignored)
ESPEAK_VOICE = "espeak:en-us@1"
SPEEDUP_GOAL = 1.5  # dictune samples/s over the reference's (issue 8)
LOSS_TOLERANCE = 0.05  # "equal loss": final loss at most this fraction above the reference's
RESULT_PREFIX = "RESULT "
LOADER_WORKERS = 4  # DataLoader worker processes of the "-w4" recipe runs
RUNS = {  # name -> train.* settings of a dictune run, or ("hf", where LoRA goes, DataLoader workers)
    "hf-reference": ("hf", "both", 0),
    "hf-reference-w4": ("hf", "both", LOADER_WORKERS),
    "hf-decoder": ("hf", "decoder", 0),
    "hf-decoder-w4": ("hf", "decoder", LOADER_WORKERS),
    "dictune-both": {"adapt": "both"},
    "dictune-default": {},
}
DEFAULT_RUNS = ("hf-reference", "hf-decoder", "dictune-both", "dictune-default")
# each dictune run against its like-for-like recipe, in its best configuration among those run (fastest)
PEERS = {"dictune-both": ("hf-reference", "hf-reference-w4"), "dictune-default": ("hf-decoder", "hf-decoder-w4")}
# the recipe shows no previous-text or term-list prompts: dictune's runs are given none either
NO_CONTEXT = {"context_terms_share": 0.0, "context_previous_share": 0.0}


@dataclass(frozen=True)
class Settings:
    model_dir: str  # local Hugging Face Whisper directory
    manifest: str  # the items every run trains on (absolute audio paths)
    steps: int
    batch_size: int
    threads: int
    precision: str  # accelerate's value: bf16 | fp16 | no
    seed: int
    learning_rate: float
    warmup_steps: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- data


def source_manifest(args: argparse.Namespace, needed: int, tmp: Path) -> tuple[Path, str]:
    """The manifest to draw items from, and a few words saying what it is."""
    if args.manifest:
        return Path(args.manifest), "given manifest"
    from pipeline.config import load_config
    from pipeline.manifest import iter_jsonl

    demo = (
        load_config(args.config).stage_dir("normalize") / "train.jsonl"
        if Path(args.config).is_file()
        else None
    )
    if demo is not None and demo.is_file() and next(iter_jsonl(demo), None) is not None:
        return demo, f"demo normalized train split ({demo})"
    if shutil.which("espeak-ng"):
        return espeak_corpus(needed), f"espeak-ng renderings of demo sentences ({ESPEAK_VOICE})"
    from bench_train_modes import synthetic_corpus

    return synthetic_corpus(tmp / "synthetic", needed), "synthetic tone clips with radiology sentences"


def espeak_corpus(n: int) -> Path:
    """n demo corpus sentences spoken by espeak-ng at 16 kHz; rendered once, then reused."""
    import soundfile

    from pipeline.config import SynthesizeConfig
    from pipeline.tts import SAMPLE_RATE, parse_voice, speak
    from pipeline.tts.corpus import read_corpus

    manifest = ESPEAK_DIR / "train.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()] if manifest.is_file() else []
    if len(rows) >= n:
        return manifest
    sentences = read_corpus(REPO / SynthesizeConfig().corpus_dir).sentences
    voice = parse_voice(ESPEAK_VOICE)
    ESPEAK_DIR.mkdir(parents=True, exist_ok=True)
    for index in range(len(rows), min(n, len(sentences))):
        audio = speak(voice, sentences[index].text, seed=index)
        path = ESPEAK_DIR / f"{index:04d}.wav"
        soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        duration = len(audio) / SAMPLE_RATE
        rows.append({"id": f"espeak-{index}", "audio_filepath": str(path), "duration": duration,
                     "text": sentences[index].text})  # fmt: skip
    from pipeline.manifest import write_jsonl

    write_jsonl(manifest, rows)
    return manifest


def draw_items(source: Path, n: int, seed: int, out: Path) -> int:
    """Write n items of `source` (seeded draw, audio paths made absolute) to `out`; returns the count."""
    import numpy as np

    from pipeline.manifest import read_manifest, resolve_audio_path, write_manifest

    records = read_manifest(source)
    if not records:
        raise SystemExit(f"{source}: no items to train on")
    if len(records) > n:
        keep = np.random.default_rng(seed).choice(len(records), n, replace=False)
        records = [records[i] for i in sorted(keep)]
    records = [r.replace(audio_filepath=str(resolve_audio_path(r, source))) for r in records]
    return write_manifest(out, records)


# ---------------------------------------------------------------------------------------------- workers


class StepClock:
    """Wall and CPU seconds between consecutive step ends; the first interval starts at start()."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._last = (time.monotonic(), time.process_time())

    def start(self) -> None:
        self._last = (time.monotonic(), time.process_time())

    def tick(self, *_: Any) -> None:
        now = (time.monotonic(), time.process_time())
        self.wall.append(now[0] - self._last[0])
        self.cpu.append(now[1] - self._last[1])
        self._last = now


def batch_order(durations: list[float], s: Settings) -> list[int]:
    """Item indices in the order dictune's batch plan feeds them, for s.steps batches."""
    import itertools

    from pipeline.train_config import TrainConfig
    from pipeline.training.data import BatchPlan

    defaults = TrainConfig()
    plan = BatchPlan(
        durations,
        len(durations),
        0,
        s.batch_size,
        s.seed,
        defaults.group_by_length,
        defaults.mega_batch_factor,
    )
    return [index for batch in itertools.islice(plan.iterate(0), s.steps) for index, _ in batch]


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """The collator of the transformers speech-recognition example (examples/pytorch/speech-recognition)."""

    processor: Any
    decoder_start_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        input_features = [{"input_features": feature["input_features"]} for feature in features]
        batch = self.processor.feature_extractor.pad(input_features, return_tensors="pt")
        label_features = [{"input_ids": feature["labels"]} for feature in features]
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def _reference_model(s: Settings, adapt: str) -> tuple[Any, Any]:
    """Processor and peft LoRA model, set up as the example and the peft Whisper notebooks do."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from pipeline.training.model_setup import is_multilingual_model, lora_target_regex

    processor = WhisperProcessor.from_pretrained(s.model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(s.model_dir)
    if is_multilingual_model(model):
        processor.tokenizer.set_prefix_tokens(language="en", task="transcribe")
    model.config.forced_decoder_ids = None
    model.config.suppress_tokens = []
    model.config.use_cache = False
    torch.manual_seed(s.seed)
    # "both": the target modules wherever they occur, as the recipes do; "decoder": the decoder's only
    targets = list(s.lora_target_modules) if adapt == "both" else lora_target_regex(adapt, s.lora_target_modules)
    lora = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                      target_modules=targets, bias="none")  # fmt: skip
    return processor, get_peft_model(model, lora)


def _reference_features(s: Settings, processor: Any) -> tuple[Any, Any, float]:
    """The example's `prepare_dataset` through datasets.map; returns (all items, batches in plan order, s)."""
    import datasets
    import soundfile

    from pipeline.manifest import read_manifest

    records = read_manifest(s.manifest)
    raw = datasets.Dataset.from_list([{"path": r.audio_filepath, "text": r.text} for r in records])

    def prepare_dataset(batch: dict[str, Any]) -> dict[str, Any]:
        audio, rate = soundfile.read(batch["path"], dtype="float32")
        batch["input_features"] = processor.feature_extractor(audio, sampling_rate=rate).input_features[0]
        batch["labels"] = processor.tokenizer(" " + batch["text"].strip()).input_ids
        return batch

    start = time.monotonic()
    vectorized = raw.map(prepare_dataset, remove_columns=raw.column_names)
    seconds = time.monotonic() - start
    return vectorized, vectorized.select(batch_order([r.duration for r in records], s)), seconds


def run_reference(
    s: Settings, work_dir: str, adapt: str = "both", loader_workers: int = 0, save_to: str | None = None,
    save_steps: int = 0,
) -> dict[str, Any]:
    """The Hugging Face recipe: precomputed features, Seq2SeqTrainer, peft LoRA (on `adapt`); its
    DataLoader in the training process (the example's default) or in `loader_workers` processes. The
    trained adapter is saved to `save_to` when given, and every `save_steps` steps to
    <work_dir>/hf_out/checkpoint-<step> (the Trainer's own checkpoints, model only)."""
    import torch
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    setup_start = time.monotonic()
    processor, model = _reference_model(s, adapt)
    decoder_start = model.config.decoder_start_token_id
    vectorized, train_set, prep_seconds = _reference_features(s, processor)
    clock = StepClock()

    class _Clock(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            clock.start()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            clock.tick()

    training_args = Seq2SeqTrainingArguments(
        output_dir=str(Path(work_dir) / "hf_out"), per_device_train_batch_size=s.batch_size,
        learning_rate=s.learning_rate, warmup_steps=s.warmup_steps, max_steps=s.steps,
        lr_scheduler_type="linear",
        bf16=s.precision == "bf16", fp16=s.precision == "fp16", use_cpu=not torch.cuda.is_available(),
        eval_strategy="no", save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        save_only_model=True, logging_steps=1, report_to="none", seed=s.seed,
        train_sampling_strategy="sequential",  # the items are already in dictune's batch-plan order
        label_names=["labels"], disable_tqdm=True, dataloader_num_workers=loader_workers,
        dataloader_persistent_workers=loader_workers > 0,
    )  # fmt: skip
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        data_collator=DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start),
        processing_class=processor.feature_extractor,
        callbacks=[_Clock()],
    )
    setup_seconds = time.monotonic() - setup_start - prep_seconds
    trainer.train()
    if save_to:
        model.save_pretrained(save_to)
    labels = vectorized[0]["labels"]
    return {
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        "step_wall": clock.wall,
        "step_cpu": clock.cpu,
        "prep_seconds": prep_seconds,
        "setup_seconds": setup_seconds,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "optimizer": str(getattr(training_args.optim, "value", training_args.optim)),
        "first_labels": list(labels[1:] if labels[0] == decoder_start else labels),
    }


def run_dictune(s: Settings, work_dir: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """dictune's Trainer on the same items, with the run's train.* overrides."""
    from pipeline.config import config_from_dict
    from pipeline.training.trainer import Trainer

    train = {
        "max_steps": s.steps,
        "batch_size": s.batch_size,
        "learning_rate": s.learning_rate,
        "warmup_steps": s.warmup_steps,
        "lora_r": s.lora_r,
        "lora_alpha": s.lora_alpha,
        "lora_dropout": s.lora_dropout,
        "lora_target_modules": list(s.lora_target_modules),
        "precision": {"no": "fp32"}.get(s.precision, s.precision),
        "train_manifest": s.manifest,
        "dev_manifest": "",
        "eval_steps": 0,
        "save_steps": 0,
        "log_steps": s.steps,
        "merge": False,
        **NO_CONTEXT,
        **overrides,
    }
    config = config_from_dict({"name": "bench", "work_dir": work_dir, "seed": s.seed, "train": train})
    clock, losses = StepClock(), []
    setup_start = time.monotonic()
    trainer = Trainer(config, s.model_dir, progress=False, on_step_end=clock.tick)
    setup_seconds = time.monotonic() - setup_start
    train_step = trainer._train_step

    def recorded_step(batches: Any) -> tuple[float, int]:
        loss, rows = train_step(batches)
        losses.append(loss)
        return loss, rows

    trainer._train_step = recorded_step
    clock.start()
    summary = trainer.train()
    cache = summary["encoder_cache"] or {}
    return {
        "losses": losses,
        "step_wall": clock.wall,
        "step_cpu": clock.cpu,
        "prep_seconds": cache.get("seconds", 0.0),
        "setup_seconds": setup_seconds - cache.get("seconds", 0.0),
        "trainable_params": summary["trainable_params"],
        "mode": summary["mode"],
        "first_labels": list(trainer.data.dataset.items[0].labels),
    }


def worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    s = Settings(**{**job["settings"], "lora_target_modules": tuple(job["settings"]["lora_target_modules"])})
    torch.set_num_threads(s.threads)
    overrides = RUNS[job["run"]]
    if isinstance(overrides, tuple):
        result = run_reference(s, job["work_dir"], overrides[1], overrides[2])
    else:
        result = run_dictune(s, job["work_dir"], overrides)
    if torch.cuda.is_available():  # on a GPU the memory that matters is the device's
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


# ---------------------------------------------------------------------------------------------- parent


def launch(run: str, s: Settings, work_dir: Path) -> dict[str, Any]:
    """One run in a subprocess; its peak RSS (with any children) comes from os.wait4 on that process."""
    work_dir.mkdir(parents=True, exist_ok=True)
    job = {"run": run, "settings": asdict(s), "work_dir": str(work_dir)}
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(s.threads),
        "MKL_NUM_THREADS": str(s.threads),
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    out_path, err_path = work_dir / "stdout.txt", work_dir / "stderr.txt"
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(job)], stdout=out, stderr=err, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    lines = [x for x in out_path.read_text().splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text()[-3000:]
        return {"run": run, "failed": f"exit status {proc.returncode}", "stderr_tail": tail}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result.update(run=run, peak_rss_mb=round(usage.ru_maxrss / 1024, 1), process_seconds=round(wall, 1))
    return result


def summarize(result: dict[str, Any], s: Settings, last_k: int) -> dict[str, Any]:
    """Per-run figures from the raw step times and losses."""
    walls, cpus, losses = result["step_wall"], result["step_cpu"], result["losses"]
    steady_wall, steady_cpu = walls[1:] or walls, cpus[1:] or cpus
    per_step = statistics.median(steady_wall)
    total = result["prep_seconds"] + sum(walls)
    return {
        "s_per_step": round(per_step, 4),
        "cpu_s_per_step": round(statistics.median(steady_cpu), 4),
        "samples_per_s": round(s.batch_size / per_step, 4),
        "first_step_s": round(walls[0], 3),
        "prep_s": round(result["prep_seconds"], 2),
        "e2e_samples_per_s": round(s.batch_size * len(walls) / total, 4),
        "first_loss": round(losses[0], 4),
        "final_loss": round(statistics.fmean(losses[-last_k:]), 4),
        "steps_done": len(losses),
        **({"peak_cuda_mb": result["peak_cuda_mb"]} if "peak_cuda_mb" in result else {}),
    }


def compare(runs: list[dict[str, Any]]) -> None:
    """Ratios of every dictune run to the reference, and whether the issue's goal is met."""
    done = {r["run"]: r for r in runs if "failed" not in r}
    for r in runs:
        peers = [done[name] for name in PEERS.get(r["run"], ()) if name in done]
        if "failed" in r or not peers:
            continue
        ref = max(peers, key=lambda peer: peer["samples_per_s"])
        speedup = r["samples_per_s"] / ref["samples_per_s"]
        equal_loss = r["final_loss"] <= ref["final_loss"] * (1 + LOSS_TOLERANCE)
        r["vs_reference"] = {
            "samples_per_s": round(speedup, 3),
            "e2e_samples_per_s": round(r["e2e_samples_per_s"] / ref["e2e_samples_per_s"], 3),
            "cpu_s_per_step": round(r["cpu_s_per_step"] / ref["cpu_s_per_step"], 3),
            "peak_rss": round(r["peak_rss_mb"] / ref["peak_rss_mb"], 3),
            "final_loss_diff": round(r["final_loss"] - ref["final_loss"], 4),
            "same_labels": r["first_labels"] == ref["first_labels"],
            "goal_met": bool(speedup >= SPEEDUP_GOAL and equal_loss),
            "peer": ref["run"],
        }


COLUMNS = (  # (header, key of a run's figures; "x:" + key for its ratio to the reference)
    ("trainable", "trainable_params"), ("s/step", "s_per_step"), ("cpu s/step", "cpu_s_per_step"),
    ("samples/s", "samples_per_s"), ("x ref", "x:samples_per_s"), ("prep s", "prep_s"),
    ("e2e smp/s", "e2e_samples_per_s"), ("x ref", "x:e2e_samples_per_s"), ("peak RSS MB", "peak_rss_mb"),
    ("x ref", "x:peak_rss"), ("final loss", "final_loss"), ("loss - ref", "x:final_loss_diff"),
)  # fmt: skip


def _cell(run: dict[str, Any], key: str) -> str:
    if not key.startswith("x:"):
        value = run[key]
        return f"{value:,}" if isinstance(value, int) else str(value)
    value = run.get("vs_reference", {}).get(key[2:])
    if value is None:
        return "-"
    return f"{value:+.4f}" if key.endswith("diff") else f"{value:.2f}x"


def print_table(runs: list[dict[str, Any]], s: Settings, data: str) -> None:
    precision = {"no": "fp32"}.get(s.precision, s.precision)
    print(
        f"\ntraining benchmark: {s.steps} steps x batch {s.batch_size}, {precision} (all runs), {s.threads} "
        f"thread(s), LoRA r={s.lora_r} alpha={s.lora_alpha} on {','.join(s.lora_target_modules)}; "
        f"data: {data}"
    )
    row = "{:<17}" + "{:>12}" * len(COLUMNS)
    print(row.format("run", *(header for header, _ in COLUMNS)))
    for r in runs:
        if "failed" in r:
            print(f"{r['run']:<17}FAILED: {r['failed']}")
        else:
            print(row.format(r["run"], *(_cell(r, key) for _, key in COLUMNS)))
    for r in runs:
        v = r.get("vs_reference")
        if v:
            print(
                f"{r['run']}: {v['samples_per_s']:.2f}x {v['peer']}'s samples/s, final loss "
                f"{v['final_loss_diff']:+.4f} vs {v['peer']}'s -> goal (>= {SPEEDUP_GOAL}x at equal loss) "
                + ("met" if v["goal_met"] else "NOT met")
                + ("" if v["same_labels"] else "; WARNING: label ids differ from the reference's")
            )


def settings_from(args: argparse.Namespace, model_dir: str, manifest: str) -> Settings:
    """The shared settings: dictune's defaults for LoRA and the optimizer, the rest from the command line."""
    from pipeline.train_config import TrainConfig
    from pipeline.training.state import resolve_precision

    d = TrainConfig()
    return Settings(
        model_dir, manifest, args.steps, args.batch_size, args.threads, resolve_precision(args.precision),
        args.seed, d.learning_rate, min(args.warmup, args.steps), d.lora_r, d.lora_alpha, d.lora_dropout,
        tuple(d.lora_target_modules),
    )  # fmt: skip


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Every run of args.runs on the same drawn items; returns what --out receives."""
    import torch
    import transformers

    from pipeline.models import resolve_model

    model_dir = str(resolve_model(args.model))
    needed = args.batch_size * args.steps
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        source, data = source_manifest(args, needed, Path(tmp))
        load_before = os.getloadavg()
        manifest = Path(tmp) / "items.jsonl"
        data = f"{data}, {draw_items(source, needed, args.seed, manifest)} items"
        s = settings_from(args, model_dir, str(manifest))
        for run in args.runs:
            print(f"running {run} ...", flush=True)
            result = launch(run, s, Path(tmp) / run)
            if "failed" in result:
                print(result["stderr_tail"], file=sys.stderr)
            else:
                result.update(summarize(result, s, min(args.last_k, len(result["losses"]))))
            runs.append(result)
    compare(runs)
    print_table(runs, s, data)
    for r in runs:
        r.pop("first_labels", None)
    machine = {"cpus": os.cpu_count(), "load_average_before": load_before,
               "load_average_after": os.getloadavg(), "torch": torch.__version__,
               "transformers": transformers.__version__}  # fmt: skip
    precision = {"no": "fp32"}.get(s.precision, s.precision)
    settings = {**asdict(s), "model": args.model, "data": data, "source_manifest": str(source),
                "last_k": args.last_k, "precision_name": precision}  # fmt: skip
    goal = {"speedup": SPEEDUP_GOAL, "loss_tolerance": LOSS_TOLERANCE}
    return {"settings": settings, "machine": machine, "runs": runs, "goal": goal}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny.en", help="builtin name or local Hugging Face Whisper dir")
    parser.add_argument("--manifest", help="training manifest (default: see Data above)")
    parser.add_argument(
        "--config", default="configs/radiology_demo.yaml", help="where to find the demo split"
    )
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="linear warmup steps (all runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--last-k", type=int, default=3, help="final loss = mean of the last k steps")
    parser.add_argument("--out", default="bench/train.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.steps < 2 or args.batch_size < 1:
        parser.error("--steps must be >= 2 (the first step is warm-up) and --batch-size >= 1")
    from pipeline.files import atomic_write_json

    results = bench(args)
    atomic_write_json(args.out, results)
    print(f"\nload average {results['machine']['load_average_before']} -> "
          f"{results['machine']['load_average_after']}; written {args.out}")  # fmt: skip
    return 1 if any("failed" in r for r in results["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
