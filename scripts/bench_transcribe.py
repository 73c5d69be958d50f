"""The same audio through faster-whisper (sequential int8 and float32, batched int8) on the CT2 export,
Hugging Face generate, and `dictune transcribe` (both engines): RTF, peak RSS and WER / term error of each,
side by side, and the RTF of each system against the fastest faster-whisper system (the best peer).

    .venv/bin/python scripts/bench_transcribe.py [--manifest M.jsonl | --clips 40 --voice flite:awb@1]
        [--long WAV [--long-ref TXT]] [--model tiny.en] [--adapter DIR] [--threads 1]
        [--out bench/transcribe.json]

Clips: a manifest (audio_filepath + text, e.g. the demo test split), or --clips radiology sentences
from the demo corpus spoken by --voice (cached under data/bench_transcribe/). --long adds one long
recording (e.g. a 3-minute dictation; its reference in --long-ref, default <wav stem>.ref.txt).
Models: the base (--model) with --adapter merged in is "the merged HF model"; its CT2 export (float16
weights, `dictune export --format ct2`) is what faster-whisper and `dictune transcribe --engine ct2` run.
Every system runs in its own subprocess (so peak RSS is per engine), greedy, --threads CPU threads.
faster-whisper gets dictune's decoding options, never its own defaults (timestamps, temperature fallback,
beam 5, conditioning on the previous window): beam_size=1, temperature=0 only, without_timestamps=True,
condition_on_previous_text=False, language "en", max_new_tokens as dictune's (fw_options below).
    fw-int8, fw-float32   WhisperModel.transcribe, one file at a time (30 s windows, no VAD)
    fw-batched            BatchedInferencePipeline.transcribe, one call per file, int8 like dictune-ct2,
                          dictune's batch size, and its VAD settings and chunk length (25 s)
    fw-batched-pack       the same pipeline, one call per set: each file is cut by faster-whisper's own VAD
                          and chunker as above, and all chunks go in as clip_timestamps over their
                          concatenation, so a decoder batch holds chunks of several files (dictune batches
                          the chunks of a group of files the same way; one call per file cannot fill a
                          batch with clips shorter than a chunk)
RTF = decoding wall time (audio reading included, model loading excluded) / audio duration.
"/ best fw": a system's RTF (and peak RSS) divided by those of the faster-whisper system with the lowest
RTF in that set; "best_fw" and "rtf_vs_best_fw" in the JSON.
Agreement: WER of one engine's transcripts against the other's (the first named as the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEMS = ("fw-int8", "fw-float32", "fw-batched", "fw-batched-pack", "hf-generate", "dictune-ct2", "dictune-ct2-f32",
           "dictune-hf")  # fmt: skip
AGREEMENT_PAIRS = (
    ("dictune-hf", "dictune-ct2"),
    ("dictune-hf", "dictune-ct2-f32"),
    ("hf-generate", "fw-float32"),
    ("dictune-ct2", "fw-batched"),
    ("fw-batched", "fw-batched-pack"),
)
CACHE_DIR = Path("data/bench_transcribe")
SAMPLE_RATE = 16000


# ---------------------------------------------------------------------------------------------- workers


def fw_options(system: str) -> dict:
    """faster-whisper's model, transcribe and VAD arguments for one fw-* system: dictune's decoding options
    (pipeline.config.TranscribeConfig defaults), never faster-whisper's own defaults."""
    from pipeline.config import TranscribeConfig

    o = TranscribeConfig()
    common = {"language": "en", "beam_size": o.num_beams, "temperature": 0.0, "without_timestamps": True,
              "condition_on_previous_text": False, "max_new_tokens": o.max_new_tokens}  # fmt: skip
    if system in ("fw-int8", "fw-float32"):
        return {"compute_type": system.split("-", 1)[1], "transcribe": {**common, "vad_filter": False}}
    vad = {
        "threshold": o.vad_threshold,
        "min_silence_duration_ms": o.min_pause_ms,
        "speech_pad_ms": o.speech_pad_ms,
    }
    # batched: dictune-ct2's compute type; transcribe(vad_parameters=dict) sets max_speech_duration_s = chunk_length
    return {"compute_type": o.compute_type, "vad": vad, "transcribe": {**common, "batch_size": o.batch_size,
            "chunk_length": int(o.max_chunk_seconds), "vad_filter": True, "vad_parameters": vad}}  # fmt: skip


def _fw(model_dir: str, system: str, paths: list[str], threads: int) -> tuple[list[str], float]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    opts = fw_options(system)
    model = WhisperModel(model_dir, device="cpu", compute_type=opts["compute_type"], cpu_threads=threads,
                         local_files_only=True)  # fmt: skip
    kwargs = opts["transcribe"]
    if system == "fw-batched-pack":
        return _fw_pack(BatchedInferencePipeline(model), paths, opts)
    engine = BatchedInferencePipeline(model) if system == "fw-batched" else model
    start = time.monotonic()
    hyps = []
    for path in paths:
        segments, _ = engine.transcribe(path, **kwargs)
        hyps.append(" ".join(s.text.strip() for s in segments if s.text.strip()))
    return hyps, time.monotonic() - start


def _fw_pack(pipe: object, paths: list[str], opts: dict) -> tuple[list[str], float]:
    """One BatchedInferencePipeline.transcribe call for all files: each file cut by faster-whisper's VAD and
    chunker exactly as its transcribe(vad_filter=True) does, the chunks concatenated and passed as
    clip_timestamps (no VAD then runs inside); without timestamps each chunk yields one segment, in order."""
    import numpy as np
    from faster_whisper.audio import decode_audio
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    kwargs = {k: v for k, v in opts["transcribe"].items() if k not in ("vad_filter", "vad_parameters")}
    chunk_s = kwargs["chunk_length"]
    vad = VadOptions(**opts["vad"], max_speech_duration_s=chunk_s)
    start = time.monotonic()
    pieces, owners, clips, offset = [], [], [], 0
    for i, path in enumerate(paths):
        audio = decode_audio(path, sampling_rate=SAMPLE_RATE)
        stamps = get_speech_timestamps(audio, vad)
        for chunk in collect_chunks(audio, stamps, max_duration=chunk_s)[0] if stamps else []:
            if not len(chunk):
                continue
            pieces.append(chunk)
            owners.append(i)
            clips.append({"start": offset / SAMPLE_RATE, "end": (offset + len(chunk)) / SAMPLE_RATE})
            offset += len(chunk)
    texts: list[list[str]] = [[] for _ in paths]
    if pieces:
        segments, _ = pipe.transcribe(np.concatenate(pieces), clip_timestamps=clips, **kwargs)
        segments = list(segments)
        if len(segments) != len(owners):
            raise RuntimeError(f"fw-batched-pack: {len(segments)} segments for {len(owners)} chunks")
        for owner, segment in zip(owners, segments):
            if segment.text.strip():
                texts[owner].append(segment.text.strip())
    return [" ".join(t) for t in texts], time.monotonic() - start


def _hf_generate(model_dir: str, paths: list[str], threads: int) -> tuple[list[str], float]:
    """The plain recipe: processor + model.generate per file (long-form generate past 30 s)."""
    import soundfile as sf
    import soxr
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    torch.set_num_threads(threads)
    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    start = time.monotonic()
    hyps = []
    for path in paths:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = (
            soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE)
            if rate != SAMPLE_RATE
            else audio.mean(axis=1)
        )
        long = len(audio) > 30 * SAMPLE_RATE
        kwargs = {"truncation": False, "padding": "longest"} if long else {}
        inputs = processor(
            audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True, **kwargs
        )
        with torch.inference_mode():
            tokens = model.generate(inputs.input_features, attention_mask=inputs.attention_mask,
                                    return_timestamps=long)  # fmt: skip
        hyps.append(processor.batch_decode(tokens, skip_special_tokens=True)[0].strip())
    return hyps, time.monotonic() - start


def _dictune(
    model: str, engine: str, compute_type: str, paths: list[str], threads: int
) -> tuple[list[str], float]:
    import dataclasses

    from pipeline.config import TranscribeConfig
    from pipeline.inference.batch import transcribe_files

    options = dataclasses.replace(TranscribeConfig(), engine=engine, compute_type=compute_type, threads=threads,
                                  formats=("json",))  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        summary = transcribe_files(paths, out, model, options=options)
        names = sorted(Path(out).glob("*.json"))
        by_file = {json.loads(p.read_text())["file"]: json.loads(p.read_text())["spoken"] for p in names}
    return [by_file[p] for p in paths], summary.wall_seconds


def worker(job: dict) -> dict:
    started = time.monotonic()
    name, paths, threads = job["system"], job["paths"], job["threads"]
    if name.startswith("fw-"):
        hyps, seconds = _fw(job["ct2_dir"], name, paths, threads)
    elif name == "hf-generate":
        hyps, seconds = _hf_generate(job["hf_dir"], paths, threads)
    else:
        engine = "hf" if name == "dictune-hf" else "ct2"
        model = job["hf_dir"] if engine == "hf" else job["ct2_dir"]
        hyps, seconds = _dictune(model, engine, "float32" if name.endswith("f32") else "int8", paths, threads)
    total = time.monotonic() - started
    return {"hyps": hyps, "decode_s": seconds, "load_s": total - seconds, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's own peak RSS: /proc's VmHWM (per address space, so it starts afresh at exec), not
    ru_maxrss, which Linux carries over from the parent across fork + exec (every worker then showed the
    parent's peak, ~640 MB after it had exported the model)."""
    from pipeline.procmem import proc_kb

    try:
        peak = proc_kb("self", ("VmHWM",)).get("VmHWM")
    except OSError:
        peak = None
    if peak is not None:
        return peak / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- inputs


def synthesize_clips(count: int, voice_spec: str) -> list[tuple[str, str]]:
    """`count` radiology sentences spread over the corpus, spoken by one voice (cached wavs)."""
    import soundfile as sf

    from pipeline.tts import parse_voice, speak
    from pipeline.tts.corpus import read_corpus

    sentences = read_corpus("data_manifests/radiology_demo/corpus").sentences
    step = max(1, len(sentences) // count)
    voice = parse_voice(voice_spec)
    folder = CACHE_DIR / voice.spec.replace(":", "-").replace("@", "-")
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for passage in sentences[::step][:count]:
        path = folder / f"{passage.id}.wav"
        if not path.is_file():
            sf.write(path, speak(voice, passage.text), SAMPLE_RATE, subtype="PCM_16")
        clips.append((str(path), passage.text))
    return clips


def read_manifest_clips(path: Path, limit: int) -> list[tuple[str, str]]:
    from pipeline.manifest import iter_jsonl

    clips = []
    for _, obj in iter_jsonl(path):
        audio = Path(obj["audio_filepath"])
        clips.append((str(audio if audio.is_absolute() else (path.parent / audio).resolve()), obj["text"]))
    return clips[:: max(1, len(clips) // limit)][:limit]  # spread over the manifest (voices, modalities)


def prepare_models(args: argparse.Namespace) -> tuple[str, str]:
    """(merged HF dir, CT2 export dir), exported once per model/adapter into data/bench_transcribe/."""
    from pipeline.export import cached_ct2_export, export_model
    from pipeline.models import resolve_model

    base = Path(resolve_model(args.model))
    hf_dir = base
    if args.adapter:
        hf_dir = CACHE_DIR / "merged"
        export_model(base, args.adapter, "merged", hf_dir)
    ct2_dir = cached_ct2_export(hf_dir, None, "float16", cache_dir=str(CACHE_DIR))
    return str(hf_dir), str(ct2_dir)


# ---------------------------------------------------------------------------------------------- report


def run_set(
    name: str, clips: list[tuple[str, str]], args: argparse.Namespace, hf_dir: str, ct2_dir: str
) -> dict:
    import soundfile as sf

    from pipeline.lexicon import load_lexicon
    from pipeline.metrics import score

    lexicon = load_lexicon(args.lexicon) if args.lexicon else None
    paths, refs = [p for p, _ in clips], [t for _, t in clips]
    audio_s = sum(sf.info(p).duration for p in paths)
    results = {}
    for system in args.systems:
        job = {
            "system": system,
            "paths": paths,
            "threads": args.threads,
            "hf_dir": hf_dir,
            "ct2_dir": ct2_dir,
        }
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                              check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
        if done.returncode != 0:
            print(f"{name}/{system} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        out = json.loads(done.stdout.strip().splitlines()[-1])
        scores = score(refs, out["hyps"], lexicon)
        if system.startswith("fw-"):
            out["fw_options"] = fw_options(system)
        results[system] = {**{k: v for k, v in out.items() if k != "hyps"}, "rtf": out["decode_s"] / audio_s,
                           "wer": scores.wer.rate, "term_error": scores.terms.error_rate if scores.terms else None,
                           "hyps": out["hyps"]}  # fmt: skip
        print(
            f"  {name}/{system}: RTF {results[system]['rtf']:.3f}, WER {scores.wer.rate:.3f}", file=sys.stderr
        )
    agreement = {f"{b} vs {a}": score([*results[a]["hyps"]], [*results[b]["hyps"]]).wer.rate
                 for a, b in AGREEMENT_PAIRS if a in results and b in results}  # fmt: skip
    peers = [s for s in results if s.startswith("fw-")]
    best = min(peers, key=lambda s: results[s]["rtf"]) if peers else None
    for r in results.values():
        r["rtf_vs_best_fw"] = r["rtf"] / results[best]["rtf"] if best else None
        r["rss_vs_best_fw"] = r["peak_rss_mb"] / results[best]["peak_rss_mb"] if best else None
    return {"files": len(paths), "audio_s": audio_s, "best_fw": best, "systems": results,
            "agreement_wer": agreement}  # fmt: skip


def print_table(name: str, result: dict) -> None:
    systems, best = result["systems"], result.get("best_fw")
    print(
        f"\n### {name}: {result['files']} files, {result['audio_s']:.0f} s of audio; best fw = {best or '-'}\n"
    )
    print("| system | RTF | RTF / best fw | WER | term error | peak RSS MB | RSS / best fw | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for system, r in systems.items():
        ratio = f"{r['rtf_vs_best_fw']:.2f}" if best else "-"
        rss = f"{r['rss_vs_best_fw']:.2f}" if best else "-"
        term = f"{r['term_error']:.3f}" if r["term_error"] is not None else "-"
        print(f"| {system} | {r['rtf']:.3f} | {ratio} | {r['wer']:.3f} | {term} | {r['peak_rss_mb']:.0f} | {rss} "
              f"| {r['load_s']:.1f} |")  # fmt: skip
    if best and "dictune-ct2" in systems:
        print(
            f"- dictune-ct2 RTF / {best} RTF (the fastest faster-whisper system): "
            f"{systems['dictune-ct2']['rtf_vs_best_fw']:.2f}"
        )
    for pair, wer in result["agreement_wer"].items():
        print(f"- agreement ({pair}, WER of the first against the second): {wer:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help="clips with references (audio_filepath + text)")
    parser.add_argument("--clips", type=int, default=40, help="clips to use or synthesize")
    parser.add_argument(
        "--voice", default="flite:awb@1", help="voice for synthesized clips (a held-out test voice)"
    )
    parser.add_argument("--long", type=Path, help="a long recording (e.g. a 3-minute dictation)")
    parser.add_argument("--long-ref", type=Path, help="its reference text (default <stem>.ref.txt)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument(
        "--adapter", default=None, help="LoRA adapter: the merged model and its CT2 export are used"
    )
    parser.add_argument("--lexicon", default="configs/lexicons/radiology.txt", help="for the term error")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/transcribe.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_dir, ct2_dir = prepare_models(args)
    clips = (
        read_manifest_clips(args.manifest, args.clips)
        if args.manifest
        else synthesize_clips(args.clips, args.voice)
    )
    results = {"model": args.model, "adapter": args.adapter, "threads": args.threads, "hf_dir": hf_dir,
               "ct2_dir": ct2_dir, "load_average": os.getloadavg(), "sets": {}}  # fmt: skip
    results["sets"]["clips"] = run_set("clips", clips, args, hf_dir, ct2_dir)
    if args.long:
        ref_path = args.long_ref or args.long.with_suffix(".ref.txt")
        results["sets"]["long"] = run_set(
            "long", [(str(args.long), ref_path.read_text())], args, hf_dir, ct2_dir
        )
    for name, result in results["sets"].items():
        print_table(name, result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nload average {results['load_average']}; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
