"""Training audio from a group's report archive (`synthesize.archive`): the sentences of its signed
reports, read by the train voices, chosen so that every lexicon term is spoken `repeats` times within a
budget of minutes of audio.

    sentences    every sentence of every report (pipeline/archive.py reads the archive; split like the
                 demo corpus), kept as the formatted target text and read in its spoken form (the demo's
                 to_spoken: units, levels, list numbers)
    rejects      a sentence with a de-identification mark (XXXX, [** **], ___), one with no letters or
                 more than max_words words, a test sentence (the held-out rule: no test, test_unseen,
                 test_general or demo sentence is ever read for training), a repeat of an earlier sentence
    selection    greedy set cover, lazily evaluated: the next sentence is the one with the most uncovered
                 term occurrences per second of estimated audio, a term the real training text lacks
                 or the current model misses (`missed_from`: evaluate transcripts of a dev split, or the
                 review page's corrections store) weighing `priority_weight` times more; each sentence is read by at most `voices`
                 distinct train voices (never a test voice); it stops when every term is covered
                 `repeats` times or the budget is spent
    coverage     per term, the renderings of the demo training text and of the archive selection:
                 how many lexicon terms reach `repeats` before and after

Nothing here logs report text.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ArchiveSynthConfig
from pipeline.manifest import Reject
from pipeline.tts.corpus import Passage, sentence_key, split_sentences

DEID = re.compile(r"X{3,}|\[\*\*|\*\*\]|_{3,}")  # de-identification marks of report exports
WORDS_PER_SECOND = 2.5  # dictation pace, for the budget estimate before rendering
STAGE = "synthesize"


@dataclass(frozen=True)
class Candidate:
    passage: Passage
    terms: tuple[str, ...]  # lexicon terms (scoring form) in the sentence, with repeats
    seconds: float  # estimated audio length


def sentences(reports, held_out_keys: set[str], max_words: int) -> tuple[list[Passage], list[Reject]]:
    """The archive's usable sentences as passages (id: report id + sentence number) and the rejected ones."""
    seen: dict[str, str] = {}
    out, rejects = [], []
    for report in reports:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", report.id)[:40]
        stem = f"arc-{stem}-{hashlib.sha1(report.id.encode()).hexdigest()[:6]}"
        source, line = report.path, report.line
        for number, text in enumerate(_with_list_numbers(split_sentences(report.text)), 1):
            pid = f"{stem}-s{number:03d}"
            key = sentence_key(text)
            words = len(text.split())
            reason = None
            if DEID.search(text):
                reason = "de-identification mark in the sentence (cannot be spoken)"
            elif not re.search(r"[A-Za-z]", text) or not key:
                reason = "no words to speak"
            elif words > max_words:
                reason = f"{words} words: over synthesize.archive.max_words ({max_words})"
            elif key in held_out_keys:
                reason = "a test sentence: never read for training"
            elif key in seen:
                reason = f"repeats sentence {seen[key]}"
            if reason is not None:
                rejects.append(Reject(source, line, f"sentence {number}: {reason}", STAGE, id=pid))
                continue
            seen[key] = pid
            out.append(Passage(pid, text, "archive", source, line or 0))
    return out, rejects


def _with_list_numbers(parts: list[str]) -> list[str]:
    """A bare list number ("1.", split off before a capital) joined to the sentence it numbers."""
    out: list[str] = []
    for part in parts:
        if out and re.fullmatch(r"\d+\.", out[-1]):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def candidates(passages: list[Passage], lexicon) -> list[Candidate]:
    from pipeline.scoring_form import normalize_for_scoring

    out = []
    for passage in passages:
        terms = tuple(m.term for m in lexicon.find(normalize_for_scoring(passage.text).split()))
        if terms:
            out.append(Candidate(passage, terms, len(passage.text.split()) / WORDS_PER_SECOND))
    return out


def select(pool: list[Candidate], covered: Counter, priority: set[str], cfg: ArchiveSynthConfig
           ) -> list[tuple[Candidate, int]]:  # fmt: skip
    """(candidate, reading number) pairs, in the order chosen (see the module docstring). `covered`:
    renderings per term already in the training data; updated in place."""
    def gain(c: Candidate) -> float:
        need = Counter()
        for term in c.terms:
            if covered[term] + need[term] < cfg.repeats:
                need[term] += 1
        return sum((cfg.priority_weight if t in priority else 1.0) * n for t, n in need.items()) / c.seconds

    budget, chosen, uses = cfg.minutes * 60.0, [], Counter()
    heap = [(-gain(c), i) for i, c in enumerate(pool)]
    heapq.heapify(heap)
    while heap and budget > 0:
        _, i = heapq.heappop(heap)
        fresh = gain(pool[i])
        if fresh <= 0:
            continue
        if heap and fresh < -heap[0][0] - 1e-12:  # gains only fall: re-queue with the fresh value
            heapq.heappush(heap, (-fresh, i))
            continue
        chosen.append((pool[i], uses[i]))
        uses[i] += 1
        budget -= pool[i].seconds
        covered.update(pool[i].terms)
        if uses[i] < cfg.voices:
            heapq.heappush(heap, (-gain(pool[i]), i))
    return chosen


def missed_terms(paths, lexicon) -> Counter:
    """Lexicon terms the current model missed: in the reference, or the radiologist's correction, but not in
    the hypothesis, counted per occurrence. Each path is an evaluate transcript file (JSONL rows with
    ref_norm and hyp_norm; a dev split, never a test one: ArchiveSynthConfig.problems refuses test*) or
    a corrections store (.sqlite of `dictune serve`: hypothesis and corrected text)."""
    from pipeline.errors import DictuneError
    from pipeline.manifest import iter_jsonl
    from pipeline.scoring_form import normalize_for_scoring

    def terms(text_norm: str) -> Counter:
        return Counter(m.term for m in lexicon.find(text_norm.split()))

    missed: Counter = Counter()
    for path in map(Path, paths):
        if not path.is_file():
            raise DictuneError(f"{path}: synthesize.archive.missed_from: not found")
        if path.suffix == ".sqlite":
            from pipeline.service.store import read_corrections

            pairs = [(normalize_for_scoring(c.corrected), normalize_for_scoring(c.hypothesis))
                     for c in read_corrections(path)]  # fmt: skip
        else:
            pairs = []
            for line, row in iter_jsonl(path):
                if "ref_norm" not in row or "hyp_norm" not in row:
                    raise DictuneError(f"{path}:{line}: synthesize.archive.missed_from: a row needs ref_norm and "
                                       "hyp_norm (an evaluate transcript file)")
                pairs.append((row["ref_norm"], row["hyp_norm"]))
        for ref, hyp in pairs:
            missed.update(terms(ref) - terms(hyp))
    return missed


def voices_for(passage: Passage, train_voices, count: int, seed: int) -> list:
    from pipeline.tts.plan import draw_voices, item_seed

    return draw_voices(train_voices, count, random.Random(item_seed(seed, "archive-voices", passage.id)))


def coverage(before: Counter, after: Counter, terms: set[str], lacking: set[str], repeats: int,
             missed: set[str] = frozenset()) -> dict:  # fmt: skip
    """How many of `terms` (the archive's) reach `repeats` renderings before and after the selection, overall,
    among the terms the training text `lacking`, and among those the current model `missed`."""
    def reached(counts: Counter, subset: set[str]) -> int:
        return sum(1 for t in subset if counts[t] >= repeats)

    lacking = terms & lacking
    model_misses = terms & set(missed)
    return {"archive_terms": len(terms), "terms_training_lacks": len(lacking), "repeats": repeats,
            "covered_before": reached(before, terms), "covered_after": reached(after, terms),
            "lacking_covered_before": reached(before, lacking),
            "lacking_covered_after": reached(after, lacking),
            "terms_model_misses": len(model_misses), "missed_covered_before": reached(before, model_misses),
            "missed_covered_after": reached(after, model_misses)}  # fmt: skip
