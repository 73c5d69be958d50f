#!/usr/bin/env python3
"""Check the segment stage on long dictations (issue 4, first "Must show"); print numbers per file.

Two sets of long files:

  concat  synthetic: whole demo-corpus reports cut into phrase clips (at sentence ends and commas), each
          clip dictated with its spoken commands by an offline TTS voice, clips joined with 0.3-1.0 s
          of silence. Every reference token's clip, hence its time span, is known exactly.
  demo    the demo corpus's long dictations (data_manifests/radiology_demo/long.jsonl), when rendered.

Both go through the real stage (`pipeline.stages.segment.run` on a config naming them as ingest
manifests). Per file it prints: duration, pieces kept / rejected, the longest piece, and

  placed    concat only: share of reference words whose piece's audio contains their clip (exact);
  heard     every file: each piece transcribed again alone; share of words near the cuts that are heard
            on the side they were assigned to (an independent estimate of placement where no truth
            exists; misrecognitions lower it, so it is a lower bound of sorts);
  rebuilt   the piece texts, in order, give back the transcript word for word (kept items), and the
            planned pieces (kept + rejected) cover every token exactly once (all items).

Exit status 1 when a piece is longer than segment.max_seconds, placed < 98 % on a file, or a text check
fails. Uses one CPU thread.

    .venv/bin/python scripts/check_segmentation.py                       # 6 concat files + demo if present
    .venv/bin/python scripts/check_segmentation.py --concat 2 --voices flite:slt --no-demo
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000  # Hz
PAUSE_SECONDS = (0.3, 1.0)  # silence between clips, drawn uniformly
TRIM_TOP_DB = 45.0  # a clip's edges quieter than its peak by this much are silence (trimmed)
LEAD_SECONDS = 0.5  # silence before the first and after the last clip
PLACED_MIN = 0.98  # the Must-show bar
TIME_TOLERANCE = 0.05  # s: a clip may overhang its piece by this much
EDGE_TOKENS = 6  # tokens on each side of a cut checked by the re-transcription
DEFAULT_VOICES = (
    "flite:slt@1",
    "flite:rms@1",
    "flite:awb@1",
    "piper:joe@1",
    "espeak:en-us@1",
    "flite:kal16@1",
)
DEMO_MANIFEST = ROOT / "data_manifests/radiology_demo/long.jsonl"
DEMO_AUDIO = ROOT / "data/radiology_demo/audio/long"  # synthesize's rendered long dictations
CORPUS_DIR = ROOT / "data_manifests/radiology_demo/corpus"


# ---------------------------------------------------------------------------------------------- concat set


@dataclass(frozen=True)
class Clip:
    start: float  # s in the long file
    end: float
    first_token: int  # whitespace tokens [first_token, end_token) of the reference
    end_token: int


def phrases(report_text: str) -> list[tuple[str, bool]]:
    """(formatted fragment, ends a paragraph) for each clip: sentences, split again after commas."""
    from pipeline.tts.corpus import PARAGRAPH, split_sentences

    out = []
    for paragraph in report_text.split(PARAGRAPH):
        sentences = split_sentences(paragraph)
        for s, sentence in enumerate(sentences):
            parts = [p for p in sentence.replace(", ", ",\x00").split("\x00") if p.strip()]
            out += [(p.strip(), s == len(sentences) - 1 and i == len(parts) - 1) for i, p in enumerate(parts)]
    return out


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """Cut the engine's own leading and trailing silence, so a clip's span is its speech."""
    from pipeline.audio import trim_edges

    return trim_edges(samples, SAMPLE_RATE, top_db=TRIM_TOP_DB, margin_seconds=0.0)


def build_concat_item(text_fragments: list[tuple[str, bool]], voice_spec: str, seed: int, wav: Path):
    """Speak each fragment (with its commands) and join them with pauses; returns (reference, clips)."""
    import soundfile as sf

    from pipeline.audio import resample
    from pipeline.text import to_spoken
    from pipeline.tts import load, parse_voice

    rng = random.Random(seed)
    synth = load(parse_voice(voice_spec))  # (pipeline.tts.render, the function, is shadowed by its submodule)
    audio = [np.zeros(round(LEAD_SECONDS * SAMPLE_RATE), np.float32)]
    clips, reference, position, token = [], "", LEAD_SECONDS, 0
    for k, (fragment, paragraph_end) in enumerate(text_fragments):
        last = k == len(text_fragments) - 1
        spoken = to_spoken(fragment) + (" new paragraph" if paragraph_end and not last else "")
        samples, rate = synth.synthesize(spoken, seed=seed + k)
        samples = resample(np.asarray(samples, np.float32).reshape(-1), rate, SAMPLE_RATE)
        samples = trim_silence(samples / max(1e-6, float(np.abs(samples).max())))
        n_tokens = len(fragment.split())
        clips.append(Clip(position, position + len(samples) / SAMPLE_RATE, token, token + n_tokens))
        reference += fragment + ("" if last else "\n\n" if paragraph_end else " ")
        token += n_tokens
        pause = LEAD_SECONDS if last else rng.uniform(*PAUSE_SECONDS)
        audio += [samples, np.zeros(round(pause * SAMPLE_RATE), np.float32)]
        position += (len(samples) + round(pause * SAMPLE_RATE)) / SAMPLE_RATE
    signal = np.concatenate(audio)
    sf.write(wav, signal * 0.5, SAMPLE_RATE, subtype="PCM_16")
    return reference, clips, len(signal) / SAMPLE_RATE


def build_concat_set(out_dir: Path, count: int, voices: list[str], seed: int) -> tuple[list[dict], dict]:
    """`count` long files from the corpus reports; returns ingest-style rows and {id: clips}."""
    from pipeline.tts.corpus import read_corpus

    reports = sorted(read_corpus(CORPUS_DIR).reports, key=lambda r: r.id)
    random.Random(seed).shuffle(reports)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, truth = [], {}
    for i, report in enumerate(reports[:count]):
        voice = voices[i % len(voices)]
        item_id = f"concat-{report.id}-{voice.split(':')[1].split('@')[0]}"
        wav = out_dir / f"{item_id}.wav"
        reference, clips, seconds = build_concat_item(phrases(report.text), voice, seed + i, wav)
        rows.append(
            {
                "id": item_id,
                "audio_filepath": str(wav.resolve()),
                "duration": seconds,
                "text": reference,
                "voice": voice,
            }
        )
        truth[item_id] = clips
    return rows, truth


# ---------------------------------------------------------------------------------------------- demo set


def demo_rows_from_audio(audio_dir: Path) -> list[dict]:
    """Before synthesize has written long.jsonl: its rendered files `<report id>.<voice>.<key>.wav`,
    each with its report's formatted text (pipeline.tts.corpus.report_text, the long transcript)."""
    import soundfile as sf

    from pipeline.tts.corpus import read_corpus

    reports = {r.id: r.text for r in read_corpus(CORPUS_DIR).reports}
    rows = []
    for wav in sorted(audio_dir.glob("*.wav")):
        report_id = wav.name.split(".")[0]
        if report_id in reports:
            rows.append(
                {
                    "id": wav.stem,
                    "audio_filepath": str(wav.resolve()),
                    "duration": sf.info(wav).duration,
                    "text": reports[report_id],
                }
            )
    return rows


def demo_rows(manifest: Path) -> list[dict]:
    """The rendered long dictations of the demo manifest (audio paths made absolute)."""
    from pipeline.manifest import iter_jsonl

    rows = []
    for _, obj in iter_jsonl(manifest):
        audio = Path(obj["audio_filepath"])
        audio = audio if audio.is_absolute() else (manifest.parent / audio).resolve()
        if audio.is_file():
            rows.append({**obj, "id": str(obj.get("id") or audio.stem), "audio_filepath": str(audio)})
    return rows


# ---------------------------------------------------------------------------------------------- scoring


def run_stage(work: Path, sets: dict[str, list[dict]], model: str, threads: int) -> dict:
    from pipeline.config import config_from_dict
    from pipeline.manifest import write_jsonl
    from pipeline.stages import segment

    for name, rows in sets.items():
        write_jsonl(work / "ingest" / f"{name}.jsonl", rows)
    config = config_from_dict(
        {
            "name": "check_segmentation",
            "work_dir": str(work),
            "threads": threads,
            "model": {"base": model},
            "ingest": {"sources": [{"name": n, "path": str(work / "ingest" / f"{n}.jsonl")} for n in sets]},
        }
    )
    started = time.perf_counter()
    summary = segment.run(config)
    return {"config": config, "summary": summary, "seconds": time.perf_counter() - started}


def piece_rows(work: Path) -> dict[str, list[dict]]:
    from pipeline.manifest import iter_jsonl

    plan: dict[str, list[dict]] = {}
    for _, row in iter_jsonl(work / "segment" / "segments.jsonl"):
        plan.setdefault(row["parent_id"], []).append(row)
    return plan


def kept_texts(work: Path, split: str) -> dict[str, list[str]]:
    from pipeline.manifest import read_manifest

    texts: dict[str, list[str]] = {}
    for record in read_manifest(work / "segment" / f"{split}.jsonl"):
        if "parent_id" in record.extra:
            texts.setdefault(record.extra["parent_id"], []).append(record.text)
    return texts


def text_checks(reference: str, rows: list[dict], texts: list[str]) -> tuple[bool, bool]:
    """(covered: planned pieces tile the tokens exactly once, rebuilt: kept texts give the transcript)."""
    tokens = reference.split()
    ranges = sorted(tuple(r["ref_tokens"]) for r in rows if "ref_tokens" in r)
    edges = [0] + [b for _, b in ranges]
    covered = (
        bool(ranges) and all(a == edges[i] for i, (a, _) in enumerate(ranges)) and edges[-1] == len(tokens)
    )
    kept = [r for r in rows if r.get("kept")]
    rebuilt = len(kept) == len(rows) and " ".join(texts).split() == tokens
    return covered, rebuilt


def placed_share(reference: str, rows: list[dict], clips: list[Clip], normalize) -> tuple[int, int]:
    """(words whose piece contains their clip's audio, words) over all planned pieces."""
    tokens = reference.split()
    token_clip = {t: c for c in clips for t in range(c.first_token, c.end_token)}
    good = total = 0
    for row in rows:
        if "ref_tokens" not in row:
            continue
        a, b = row["ref_tokens"]
        for t in range(a, b):
            words = len(normalize(tokens[t]).split())
            clip = token_clip[t]
            inside = row["start"] - TIME_TOLERANCE <= clip.start and clip.end <= row["end"] + TIME_TOLERANCE
            good += words * inside
            total += words
    return good, total


def heard_share(
    reference: str, rows: list[dict], audio_path: str, offset: float, timer, normalize
) -> tuple[int, int]:
    """Re-transcribe each piece alone; count edge words heard on their own side of each cut.

    For each cut, the last EDGE_TOKENS tokens before it and the first after it are checked: a word
    counts as misplaced when the neighbouring piece's own transcript matches it (aligned against the
    neighbour's text extended by these edge tokens) while its own piece's does not.
    """
    from pipeline import alignment as al
    from pipeline.audio import load_mono
    from pipeline.stages.segment import command_words

    rows = sorted((r for r in rows if "ref_tokens" in r), key=lambda r: r["segment_index"])
    tokens = reference.split()
    samples = load_mono(audio_path, SAMPLE_RATE, offset)
    heard = []
    for row in rows:  # words of extended text [a - E, b + E) that this piece's own transcript matches
        a, b = row["ref_tokens"]
        lo, hi = max(0, a - EDGE_TOKENS), min(len(tokens), b + EDGE_TOKENS)
        piece = samples[round(row["start"] * SAMPLE_RATE) : round(row["end"] * SAMPLE_RATE)]
        aligned = al.align(" ".join(tokens[lo:hi]), timer(piece), normalize, command_words())
        matched = {lo + aligned.word_token[op.ref] for op in aligned.ops if op.kind in ("match", "merge")}
        heard.append(matched)
    wrong = checked = 0
    for k in range(len(rows) - 1):
        cut = rows[k]["ref_tokens"][1]
        for t in range(
            max(rows[k]["ref_tokens"][0], cut - EDGE_TOKENS),
            min(rows[k + 1]["ref_tokens"][1], cut + EDGE_TOKENS),
        ):
            own, other = (k, k + 1) if t < cut else (k + 1, k)
            words = len(normalize(tokens[t]).split())
            checked += words
            wrong += words * (t in heard[other] and t not in heard[own])
    return checked - wrong, checked


# ---------------------------------------------------------------------------------------------- report


def report(work: Path, sets: dict[str, list[dict]], truth: dict, config, timer) -> bool:
    from pipeline.scoring_form import normalize_for_scoring as normalize

    plan = piece_rows(work)
    ok = True
    header = (
        f"{'set':6} {'file':34} {'dur s':>6} {'kept':>4} {'rej':>3} {'max s':>5} {'placed':>7} "
        f"{'heard':>7} {'covered':>7} {'rebuilt':>7}"
    )
    print(header)
    print("-" * len(header))
    totals = {"placed": [0, 0], "heard": [0, 0]}
    for split, rows in sets.items():
        texts = kept_texts(work, split)
        for item in rows:
            pieces = plan.get(item["id"], [])
            cut = [p for p in pieces if "ref_tokens" in p]
            if not cut:
                reason = pieces[0]["reason"] if pieces else "passed through (short)"
                print(f"{split:6} {item['id'][:34]:34} {item['duration']:6.1f}  rejected whole: {reason}")
                ok = False
                continue
            kept = sum(bool(p["kept"]) for p in cut)
            longest = max(p["end"] - p["start"] for p in cut)
            covered, rebuilt = text_checks(item["text"], cut, texts.get(item["id"], []))
            placed = "-"
            if item["id"] in truth:
                good, total = placed_share(item["text"], cut, truth[item["id"]], normalize)
                totals["placed"][0] += good
                totals["placed"][1] += total
                placed = f"{good / total:.1%}"
                ok &= good / total >= PLACED_MIN
            good, total = heard_share(
                item["text"], cut, item["audio_filepath"], float(item.get("offset", 0)), timer, normalize
            )
            totals["heard"][0] += good
            totals["heard"][1] += total
            heard = f"{good / total:.1%}" if total else "-"
            ok &= longest <= config.segment.max_seconds + 1e-6 and covered and (rebuilt or kept < len(cut))
            print(
                f"{split:6} {item['id'][:34]:34} {item['duration']:6.1f} {kept:4d} {len(cut) - kept:3d} "
                f"{longest:5.1f} {placed:>7} {heard:>7} {'yes' if covered else 'NO':>7} "
                f"{('yes' if rebuilt else 'NO') if kept == len(cut) else 'n/a':>7}"
            )
    for name, (good, total) in totals.items():
        if total:
            print(f"overall {name}: {good}/{total} words = {good / total:.2%}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", default="work/check_segmentation", help="scratch folder (audio, stage output)"
    )
    parser.add_argument("--concat", type=int, default=6, help="synthetic concatenated files to build")
    parser.add_argument("--voices", default=",".join(DEFAULT_VOICES), help="comma-separated TTS voices")
    parser.add_argument(
        "--demo", default=str(DEMO_MANIFEST), help="demo long.jsonl (skipped if not rendered)"
    )
    parser.add_argument(
        "--demo-audio", default=str(DEMO_AUDIO), help="rendered long files, when --demo is absent"
    )
    parser.add_argument("--no-demo", action="store_true", help="only the concat set")
    parser.add_argument("--model", default="tiny.en", help="model.base for the stage")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname).1s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    sets: dict[str, list[dict]] = {}
    truth: dict = {}
    if args.concat:
        started = time.perf_counter()
        sets["concat"], truth = build_concat_set(
            work / "concat_audio", args.concat, args.voices.split(","), args.seed
        )
        print(f"built {len(sets['concat'])} concat files in {time.perf_counter() - started:.0f} s")
    demo = Path(args.demo)
    if not args.no_demo:
        rows = demo_rows(demo) if demo.is_file() else demo_rows_from_audio(Path(args.demo_audio))
        if rows:
            sets["demo"] = rows
        else:
            print(f"demo: no rendered long dictations in {demo} (run `dictune synthesize CONFIG` first)")
    if not sets:
        print("nothing to check")
        return 1
    result = run_stage(work, sets, args.model, args.threads)
    audio_s = sum(r["duration"] for rows in sets.values() for r in rows)
    print(
        f"segment stage: {result['seconds']:.1f} s for {audio_s:.0f} s of audio; {json.dumps(result['summary'])}"
    )
    from pipeline.speech_timing import load_word_timer

    timer = load_word_timer(args.model, result["config"].segment, args.threads)
    ok = report(work, sets, truth, result["config"], timer)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
