"""Context-aware fine-tuning: the previous-text context each training item is shown, per (item, epoch).

An adapter trained without context learns to ignore Whisper's previous-text slot, which is the only way
to reach words its recordings lack. So training fills the slot as inference does (pipeline.context, the
same token code), drawn per item and epoch from the item's seeded generator:

    terms      (terms_share)     a term list: each of the item's own lexicon terms with probability
                                 keep_own, among distractors drawn from the whole lexicon (a count in
                                 `distractors`), shuffled; the model learns to use a listed term when it
                                 hears it and to ignore the others
    previous   (previous_share)  the text before the item: the previous piece of the same dictation when
                                 the item is a cut piece (parent_id, segment_index), else another training
                                 item of the same modality (a sentence of the same exam type); when
                                 streaming, the items are one batch and the previous piece's text comes
                                 with the row (previous_texts)
    none       (the rest)        an empty slot, as without context

Plain-English replay items get the same draw: their term lists hold distractors only. The loss covers
the target tokens only (pipeline.training.data.Collator masks the context).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.context import prompt_ids, terms_text

SALT = 7919  # separates this generator from the augmentation one of the same (seed, epoch, index)


@dataclass(frozen=True)
class ContextOptions:
    terms_share: float = 0.5  # items shown a term list
    previous_share: float = 0.2  # items shown the text before them
    distractors: tuple[int, int] = (2, 10)  # lexicon terms added to a term list, drawn uniformly in [lo, hi]
    keep_own: float = 0.8  # chance that each of the item's own terms is in its term list
    max_tokens: int = 64  # context tokens at most (<|startofprev|> included)

    @property
    def enabled(self) -> bool:
        return self.terms_share + self.previous_share > 0


class TrainingContexts:
    """Context token ids for training items (a list per item, in item order), drawn per (index, epoch)."""

    def __init__(self, items: Sequence, lexicon, tokenizer, options: ContextOptions, seed: int,
                 max_total_tokens: int, previous_texts: Sequence[str | None] | None = None):  # fmt: skip
        self.items = list(items)
        self.previous_texts = list(previous_texts) if previous_texts is not None else None  # given (streaming)
        self.lexicon_terms = list(lexicon.display.values()) if lexicon is not None else []
        self.own = [self._own_terms(lexicon, item.text_norm) for item in self.items]
        self.tokenizer = tokenizer
        self.options = options
        self.seed = seed
        self.max_total_tokens = max_total_tokens
        self._previous_index = self._previous(self.items)
        self._same_modality = self._by_modality(self.items)

    @staticmethod
    def _own_terms(lexicon, text_norm: str) -> list[str]:
        if lexicon is None:
            return []
        return list(dict.fromkeys(lexicon.display[m.term] for m in lexicon.find(text_norm.split())))

    @staticmethod
    def _previous(items: Sequence) -> dict[int, int]:
        """Item index -> index of the previous piece of the same cut dictation."""
        pieces = {(i.parent, i.order): n for n, i in enumerate(items) if i.parent is not None}
        return {n: pieces[(p, o - 1)] for (p, o), n in pieces.items() if (p, o - 1) in pieces}

    @staticmethod
    def _by_modality(items: Sequence) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for n, item in enumerate(items):
            groups.setdefault(item.modality or "", []).append(n)
        return groups

    def text(self, index: int, epoch: int) -> str | None:
        """The context shown to item `index` in `epoch` (None: an empty slot)."""
        o = self.options
        rng = np.random.default_rng([self.seed, epoch, index, SALT])
        u = rng.random()
        if u < o.terms_share and self.lexicon_terms:
            return self._terms(index, rng)
        if u < o.terms_share + o.previous_share:
            return self._previous_text(index, rng)
        return None

    def _terms(self, index: int, rng: np.random.Generator) -> str | None:
        o = self.options
        own = [t for t in self.own[index] if rng.random() < o.keep_own]
        count = int(rng.integers(o.distractors[0], o.distractors[1] + 1))
        picks = rng.choice(len(self.lexicon_terms), min(count, len(self.lexicon_terms)), replace=False)
        terms = list(dict.fromkeys(own + [self.lexicon_terms[i] for i in picks]))
        rng.shuffle(terms)
        return terms_text(terms) or None

    def _previous_text(self, index: int, rng: np.random.Generator) -> str | None:
        if self.previous_texts is not None and self.previous_texts[index]:
            return self.previous_texts[index]
        if index in self._previous_index:
            return self.items[self._previous_index[index]].text
        group = [n for n in self._same_modality.get(self.items[index].modality or "", []) if n != index]
        return self.items[group[int(rng.integers(len(group)))]].text if group else None

    def ids(self, index: int, epoch: int, labels: int) -> list[int]:
        """Context token ids for item `index` in `epoch` whose target takes `labels` tokens: within
        max_tokens and the decoder's room; a term list is cut at a separator, a text from its start."""
        text = self.text(index, epoch)
        if text is None:
            return []
        ids = prompt_ids(self.tokenizer, text)
        room = min(self.options.max_tokens, self.max_total_tokens - labels - 1)
        if len(ids) <= room:
            return ids
        if room < 2:
            return []
        return [ids[0], *ids[len(ids) - room + 1 :]]  # keep the end: the text nearest the target
