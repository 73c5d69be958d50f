"""Render more held-out sentences with a config's test voices, as one more test manifest (or, with
--voices train, plain-English replay read by its train voices).

    python scripts/render_test_set.py CONFIG SENTENCES.tsv [--split NAME] [--out-dir DIR] [--audio-dir DIR]
        [--renderings 1] [--voices test|train] [--general | --seen-terms] [--exclude-manifest M ...] [--workers 2]

SENTENCES.tsv has the header `id<TAB>text` (as the corpus' general.tsv). Each sentence is read by
`--renderings` of the config's synthesize.test_voices, round-robin as the demo's test splits are, never by a
train voice; the clips go under --audio-dir/<split>/ (already rendered ones are reused) and the manifest to
<out-dir>/<split>.jsonl, with <split>.rejects.jsonl beside it. A sentence is rejected, with its reason,
when the config's corpus holds it (training text must not be test text), when it repeats an earlier
sentence of the file, when a manifest named by --exclude-manifest holds it (e.g. another arm's training
audio, such as the archive's, or an earlier test set), or, with --general (a plain-English set that
measures forgetting), when it holds a lexicon term. With --seen-terms (a domain set for the seen terms) a sentence is kept only when it
holds a lexicon term that the config's training text holds (pipeline.new_words.seen_unseen: run `dictune
normalize` first) and none that it lacks. A failed rendering is rejected too. Score it with
`dictune evaluate CONFIG --manifest <out-dir>/<split>.jsonl`, and compare arms with scripts/compare_runs.py.

With --voices train the sentences are read by train voices instead (drawn by weight, distinct speakers, as
the demo's general_dev, but never augmented): plain-English replay against forgetting (train.replay_manifest, after `dictune
normalize`); keep such a file apart from every test set.

Used for the bounds "general WER / seen-term B-WER no worse than +0.5 pt" (README, "Training audio from the
archive"): the demo's 45 test_general and 56 test sentences give intervals 1.4-4 points wide, too wide.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_config
from pipeline.lexicon import load_lexicon
from pipeline.manifest import Reject, read_manifest, write_manifest, write_rejects
from pipeline.new_words import seen_unseen
from pipeline.text import to_spoken
from pipeline.tts.corpus import read_corpus, read_tsv, sentence_key, split_sentences
from pipeline.tts.heldout import passage_terms
from pipeline.tts.plan import PlanItem, Planner, parse_voices
from pipeline.tts.provenance import audio_digests
from pipeline.tts.render import manifest_record, render_missing

STAGE = "render_test_set"


def corpus_keys(corpus_dir: str, manifests=()) -> dict[str, str]:
    """{sentence key: why it is rejected} for every sentence of the corpus and of the given manifests."""
    corpus = read_corpus(corpus_dir)
    passages = corpus.sentences + corpus.general + corpus.reports
    reason = "the config's corpus holds this sentence: test text must not be training text"
    known = {sentence_key(s): reason for p in passages for s in split_sentences(p.text)}
    for path in manifests:
        reason = f"{path} holds this sentence (--exclude-manifest)"
        known.update({sentence_key(s): reason for r in read_manifest(path) for s in split_sentences(r.text)})
    return known


def term_reason(text: str, lexicon, seen=None) -> str | None:
    """Why a sentence does not belong to a general set (lexicon only) or a seen-term set (and `seen`)."""
    terms = passage_terms(lexicon, text)
    if seen is None:
        return f"holds lexicon terms {sorted(terms)} (--general)" if terms else None
    lacking = sorted(t for t in terms if t not in seen)
    if lacking:
        return f"holds lexicon terms the training text lacks: {lacking} (--seen-terms)"
    return None if terms else "holds no lexicon term of the training text (--seen-terms)"


def screen(passages, known: dict[str, str], lexicon, seen=None) -> tuple[list, list[Reject]]:
    """The passages to render and the rejected ones with their reasons."""
    kept, rejects, keys = [], [], set()
    for p in passages:
        key, reason = sentence_key(p.text), None
        if key in known:
            reason = known[key]
        elif key in keys:
            reason = "repeats an earlier sentence of this file"
        elif lexicon is not None:
            reason = term_reason(p.text, lexicon, seen)
        keys.add(key)
        if reason is None:
            kept.append(p)
        else:
            rejects.append(Reject(p.source, p.line, reason, STAGE, id=p.id))
    return kept, rejects


def plan(passages, split: str, cfg, renderings: int, seed: int, train_voices: bool) -> list[PlanItem]:
    """Test voices round-robin, as the demo's test splits are; train voices drawn by weight for each sentence,
    distinct speakers, as for the demo's general_dev, but never augmented and never with spoken commands."""
    planner = Planner(cfg, seed, to_spoken)
    if train_voices:
        for passage in passages:
            planner.train_like(split, passage, renderings, commands_fraction=0.0, augment=False)
    else:
        planner.round_robin(split, passages, renderings, commands=False)
    return planner.items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("sentences", type=Path, help="TSV with the header id<TAB>text")
    parser.add_argument("--split", help="manifest name (default: the TSV's stem)")
    parser.add_argument("--out-dir", type=Path, help="manifest folder (default: the TSV's folder)")
    parser.add_argument("--audio-dir", type=Path, help="default: data/<out-dir's name>/audio")
    parser.add_argument("--renderings", type=int, default=1, help="voices per sentence")
    parser.add_argument("--voices", choices=("test", "train"), default="test",
                        help="train: the config's train voices, for plain-English replay (never a test set)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--general", action="store_true", help="reject sentences holding a lexicon term")
    kind.add_argument("--seen-terms", action="store_true",
                      help="keep sentences holding lexicon terms of the training text and no other")
    parser.add_argument("--exclude-manifest", type=Path, action="append", default=[],
                        help="reject its sentences too, e.g. another arm's training audio or an earlier test set (repeatable)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    config = load_config(args.config)
    cfg = config.synthesize
    split = args.split or args.sentences.stem
    out_dir = args.out_dir or args.sentences.parent
    audio_dir = args.audio_dir or Path("data") / out_dir.resolve().name / "audio"
    train_voices, test_voices = parse_voices(cfg)
    voices = train_voices if args.voices == "train" else test_voices
    speakers = len({v.speaker for v in voices})
    if not 1 <= args.renderings <= speakers:
        parser.error(f"--renderings must be 1..{speakers} (the config's {args.voices} speakers)")
    passages = read_tsv(args.sentences, ("id", "text"), "general" if args.general else "sentence")
    screened = args.general or args.seen_terms
    lexicon = load_lexicon(config.lexicon) if screened and config.lexicon else None
    if screened and lexicon is None:
        parser.error("--general and --seen-terms need the config's lexicon (top-level `lexicon:`)")
    seen = seen_unseen(config, lexicon)[0] if args.seen_terms else None
    if seen is not None and not seen.terms:
        parser.error("--seen-terms: the config's training text holds no lexicon term (run `dictune normalize`)")
    for path in args.exclude_manifest:
        if not path.is_file():
            parser.error(f"{path}: --exclude-manifest not found")
    kept, rejects = screen(passages, corpus_keys(cfg.corpus_dir, args.exclude_manifest), lexicon, seen)
    items = plan(kept, split, cfg, args.renderings, config.seed, args.voices == "train")
    durations, results, _ = render_missing(items, audio_dir, cfg.voices_dir, args.workers, STAGE)
    errors = {r.id: r.error for r in results if r.error}
    records = []
    for item in items:
        if item.id in durations:
            records.append(manifest_record(item, durations[item.id], audio_dir, out_dir))
        else:
            reason = errors.get(item.id, "not rendered")
            rejects.append(Reject(item.passage.source, item.passage.line, f"{item.voice.spec}: {reason}", STAGE,
                                  id=item.id))
    records.sort(key=lambda r: r.id)
    write_manifest(out_dir / f"{split}.jsonl", records)
    write_rejects(out_dir / f"{split}.rejects.jsonl", rejects)
    digest = audio_digests({split: records}, out_dir)["all"] if records else "-"
    print(f"{out_dir / f'{split}.jsonl'}: {len(records)} clips of {len(kept)} sentences, "
          f"{sum(r.duration for r in records) / 60:.1f} min; {len(rejects)} rejected "
          f"({out_dir / f'{split}.rejects.jsonl'}); audio sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
