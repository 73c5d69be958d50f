"""The unseen-term rule of the demo corpus: lexicon terms whose every sentence is held out of training.

A group's term list always outgrows its recordings. To measure what the model does with a term it never
heard in training, the demo holds some lexicon terms out of all training text: every sentence and report
that contains one leaves train / dev / long and is read by the held-out voices as `test_unseen`. The
lexicon keeps them (the group's term list knows them; its recordings do not).

The rule (seeded, spread over modalities):

1. Candidates are the lexicon terms that occur in at least one and at most `max_sentences` corpus
   sentences (rare terms: holding one out moves few sentences). Each belongs to the modality of most of
   its sentences.
2. Within each modality the candidates are ordered by a hash of (seed, term); modalities take turns in
   alphabetical order, each contributing its next candidate.
3. Terms are taken until the terms that occur in NO remaining (not held-out) sentence reach `share` of the
   terms that occur in the corpus. Those are the unseen terms: the chosen ones plus any term all of whose
   sentences were moved along with them.

Matching is on the scoring form (pipeline.lexicon.Lexicon.find on normalize_for_scoring), the same form
in which evaluate scores terms.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.tts.corpus import Passage


@dataclass(frozen=True)
class HeldOut:
    chosen: tuple[str, ...]  # terms picked by the rule (scoring form)
    unseen: frozenset[str]  # terms in no training sentence: chosen + those moved along with them
    sentences: frozenset[str]  # ids of the sentences that contain a chosen term (-> test_unseen)
    corpus_terms: int  # lexicon terms that occur in at least one corpus sentence


def passage_terms(lexicon, text: str) -> set[str]:
    """Lexicon terms (scoring form) that occur in a text."""
    from pipeline.scoring_form import normalize_for_scoring

    return {m.term for m in lexicon.find(normalize_for_scoring(text).split())}


def choose_held_out(
    sentences: Iterable[Passage], lexicon, share: float, max_sentences: int, seed: int
) -> HeldOut:
    """Apply the rule in this module's docstring."""
    from pipeline.tts.plan import unit

    sentences = list(sentences)
    terms_of = {p.id: passage_terms(lexicon, p.text) for p in sentences}
    modality_of = {p.id: p.modality or "" for p in sentences}
    occurs: dict[str, set[str]] = defaultdict(set)
    for sid, terms in terms_of.items():
        for term in terms:
            occurs[term].add(sid)
    by_modality: dict[str, list[str]] = defaultdict(list)
    for term, sids in occurs.items():
        if len(sids) <= max_sentences:
            counts = Counter(modality_of[s] for s in sids)
            modality = min(counts, key=lambda m: (-counts[m], m))  # ties: alphabetical, never set order
            by_modality[modality].append(term)
    for terms in by_modality.values():
        terms.sort(key=lambda t: unit(seed, "unseen-term", t))
    target = share * len(occurs)
    chosen: list[str] = []
    moved: set[str] = set()
    unseen: set[str] = set()
    turns = sorted(by_modality)
    while len(unseen) < target and any(by_modality.values()):
        for modality in turns:
            if by_modality[modality] and len(unseen) < target:
                term = by_modality[modality].pop(0)
                chosen.append(term)
                moved |= occurs[term]
                unseen = {t for t, sids in occurs.items() if sids <= moved}
    return HeldOut(tuple(chosen), frozenset(unseen), frozenset(moved), len(occurs))
