"""Decoder context: what goes into Whisper's previous-text slot, built one way for training and inference.

Whisper conditions on `<|startofprev|> text` before `<|startoftranscript|>`. dictune fills that slot with

    none        nothing
    static      a fixed text per file: a term list (e.g. per exam type) and/or a prior report's text
    retrieved   two passes: a first decode without context, then the lexicon terms closest to its words
                (TermRetriever), ranked, as many as fit; then the second decode with them

Training (pipeline.training.data) puts the same kinds of text in the same slot with the same token code
(`prompt_ids`), so that the adapted model learns to use it instead of forgetting it.

Retrieval compares word n-grams of the first-pass hypothesis with every lexicon term twice: as letters
(rapidfuzz's normalized Indel similarity of the words glued together, so "infal trait" meets "infiltrate")
and as sounds (the same similarity of their Metaphone codes, by jellyfish: "plural" and "pleural" both
read PLRL). A term's score is its best n-gram's mean of the two, 0-100; n-grams much shorter or longer
than the term are not compared.

Nothing here logs transcript text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROMPT_SEPARATOR = ", "  # between terms of a term-list context
CONTEXT_MODES = ("none", "static", "retrieved")
MAX_NGRAM = 4  # longest hypothesis word n-gram compared with a term
LENGTH_RATIO = 0.6  # an n-gram is compared with a term when the shorter glued form is >= this share of the longer


def prompt_ids(tokenizer, text: str) -> list[int]:
    """`<|startofprev|>` + the tokens of " text": what transformers' get_prompt_ids and the ct2 engine give."""
    start = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    return [start, *tokenizer.encode(" " + text.strip(), add_special_tokens=False)]


def terms_text(terms: Sequence[str]) -> str:
    """A term-list context."""
    return PROMPT_SEPARATOR.join(terms)


def fit_terms(count_tokens: Callable[[str], int], terms: Sequence[str], max_tokens: int) -> tuple[str, int]:
    """The longest prefix of `terms` whose term-list context takes at most max_tokens (counted with
    count_tokens, `<|startofprev|>` included): (text, terms used). The one prompt fitter of the project."""
    lo, hi = 0, len(terms)  # binary search: the token count grows with the prefix length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(terms_text(terms[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return terms_text(terms[:lo]), lo


def term_context(count_tokens: Callable[[str], int], terms: Sequence[str], max_tokens: int
                 ) -> tuple[str | None, list[str]]:  # fmt: skip
    """A term-list context of as many of `terms` as fit: (text or None, the terms in it)."""
    text, used = fit_terms(count_tokens, terms, max_tokens)
    return (text or None), list(terms[:used])


def join_context(*parts: str | None) -> str | None:
    """Non-empty parts joined by a space (a prior report's text, then a term list), or None."""
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text or None


def _glue(words: Sequence[str]) -> str:
    return "".join(words)


def sound_alike(grams: Sequence[str], targets: Sequence[str], target_codes: Sequence[str] | None = None,
                dtype: Any = np.float32) -> np.ndarray:  # fmt: skip
    """Scores 0-100 of each gram (glued words) against each target: the mean of the Indel similarity of
    their letters and of their Metaphone codes, 0 where one is shorter than LENGTH_RATIO of the other.
    The one scoring rule of retrieval (TermRetriever) and snapping (pipeline.correction)."""
    import jellyfish
    from rapidfuzz.distance import Indel
    from rapidfuzz.process import cdist

    codes = list(target_codes) if target_codes is not None else [jellyfish.metaphone(t) for t in targets]
    letters = cdist(grams, targets, scorer=Indel.normalized_similarity, dtype=dtype)
    sounds = cdist([jellyfish.metaphone(g) for g in grams], codes, scorer=Indel.normalized_similarity, dtype=dtype)
    gram_lengths = np.array([len(g) for g in grams], dtype=dtype)[:, None]
    target_lengths = np.array([len(t) for t in targets], dtype=dtype)[None, :]
    comparable = np.minimum(gram_lengths, target_lengths) >= LENGTH_RATIO * np.maximum(gram_lengths, target_lengths)
    return np.where(comparable, 50.0 * (letters + sounds), 0.0)


@dataclass(frozen=True)
class Retrieved:
    term: str  # as written in the lexicon
    score: float  # 0-100


class TermRetriever:
    """Ranks lexicon terms by how close they sound and look to the words of a hypothesis."""

    def __init__(self, lexicon, min_score: float = 75.0):
        import jellyfish

        self.lexicon = lexicon
        self.min_score = min_score
        self.keys = list(lexicon.terms)  # scoring form
        self._metaphone = jellyfish.metaphone
        self._glued = [_glue(k.split()) for k in self.keys]
        self._codes = [self._metaphone(g) for g in self._glued]

    def rank(self, hypothesis_norm: str) -> list[Retrieved]:
        """Terms scoring >= min_score against the hypothesis (scoring form), best first, ties alphabetical."""
        words = hypothesis_norm.split()
        grams = sorted({_glue(words[i : i + n]) for n in range(1, MAX_NGRAM + 1)
                        for i in range(len(words) - n + 1)})  # fmt: skip
        if not grams:
            return []
        scores = sound_alike(grams, self._glued, self._codes).max(axis=0)
        order = sorted((i for i in np.flatnonzero(scores >= self.min_score)),
                       key=lambda i: (-scores[i], self.keys[i]))  # fmt: skip
        return [Retrieved(self.lexicon.display[self.keys[i]], round(float(scores[i]), 1)) for i in order]

    def context(self, hypothesis_norm: str, count_tokens: Callable[[str], int], max_tokens: int,
                max_terms: int) -> tuple[str | None, list[str]]:  # fmt: skip
        """The retrieved context of one hypothesis: (text or None, the terms in it)."""
        return term_context(count_tokens, [r.term for r in self.rank(hypothesis_norm)][:max_terms], max_tokens)


def modality_terms(lexicon, records) -> dict[str, list[str]]:
    """Per modality (exam type) of the records, the lexicon terms of their references, most frequent
    first (ties alphabetical)."""
    from collections import Counter

    from pipeline.manifest import reference_norm

    counts: dict[str, Counter] = {}
    for record in records:
        modality = record.extra.get("modality")
        if modality:
            counts.setdefault(modality, Counter()).update(m.term for m in lexicon.find(reference_norm(record).split()))
    return {m: [lexicon.display[t] for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
            for m, c in sorted(counts.items())}  # fmt: skip


def irrelevant_contexts(lexicon, config, records, max_terms: int) -> list[list[str]]:
    """A wrong context per record: the terms of the next other modality (in sorted order) of the training
    text, minus any term of the record's own reference. Records without a modality get none."""
    from pipeline.manifest import read_manifest, reference_norm
    from pipeline.new_words import training_manifests

    train = [r for path in training_manifests(config) for r in read_manifest(path)]
    by_modality = modality_terms(lexicon, train)
    order = sorted(by_modality)
    out = []
    for record in records:
        modality = record.extra.get("modality")
        if modality not in by_modality or len(order) < 2:
            out.append([])
            continue
        other = order[(order.index(modality) + 1) % len(order)]
        own = {lexicon.display[m.term] for m in lexicon.find(reference_norm(record).split())}
        out.append([t for t in by_modality[other] if t not in own][:max_terms])
    return out


# ---------------------------------------------------------------------------------------------- inference


def read_context_file(path: str | Path, what: str) -> str:
    """A context file's text; a missing, unreadable, non-UTF-8 or empty file is a one-line DictuneError (a
    context must never be silently empty)."""
    from pipeline.errors import DictuneError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DictuneError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as e:
        raise DictuneError(f"{path}: {what} is not UTF-8 text ({e.reason}); save it as UTF-8") from None
    except OSError as e:
        raise DictuneError(f"{path}: {what} cannot be read ({e.strerror or e})") from None
    if not text.strip():
        raise DictuneError(f"{path}: {what} is empty")
    return text


def _term_lines(text: str) -> list[str]:
    return [t for t in (line.split("#", 1)[0].strip() for line in text.splitlines()) if t]


def fit_text(count_tokens: Callable[[str], int], text: str, max_tokens: int) -> str:
    """The longest end of `text` (whole words) whose context takes at most max_tokens: the words nearest
    the dictation are kept."""
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[len(words) - mid :])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[len(words) - lo :]) if lo else ""


@dataclass(frozen=True)
class StaticContext:
    """The fixed part of one file's context: the prompt text and the term-list terms in it."""

    text: str | None = None
    terms: tuple[str, ...] = ()


class InferenceContext:
    """The context of `dictune transcribe` (and evaluate's systems): a static part for every window of a
    file (the options' files, or a manifest line's own `context_text` / `context_terms`), and in retrieved
    mode, per window, the lexicon terms closest to that window's first-pass text.

        ctx = InferenceContext(config.context, lexicon_path, engine.prompt_tokens, budget)
        static = ctx.static_for(text, terms)                       # or ctx.default
        first = engine.decode_chunks(chunks, static.text)
        second = engine.decode_chunks(chunks, ctx.second_pass(first, [static] * len(chunks)))
    """

    def __init__(self, options, lexicon_path: str | Path | None, prompt_tokens: Callable[[str], list[int]],
                 max_tokens: int):  # fmt: skip
        from pipeline.errors import DictuneError

        self.options = options
        self.mode = options.mode
        self.max_tokens = min(options.max_tokens, max_tokens)
        self._count = lambda text: len(prompt_tokens(text))
        text = read_context_file(options.text_file, "context text file") if options.text_file else None
        terms = _term_lines(read_context_file(options.terms_file, "context term list")) if options.terms_file else []
        if options.terms_file and not terms:
            raise DictuneError(f"{options.terms_file}: context term list holds only comments")
        self.default = self.static_for(text, terms)
        self.static, self.static_terms = self.default.text, list(self.default.terms)
        self.retriever = None
        if self.mode == "retrieved":
            if not lexicon_path:
                raise DictuneError("context: retrieved mode needs a lexicon (config `lexicon:` or --lexicon)")
            from pipeline.lexicon import load_lexicon

            self.retriever = TermRetriever(load_lexicon(lexicon_path), options.min_score)
        self.retrieved_terms: list[list[str]] = []  # per second-pass window, for the summary
        self._known = None  # context.correct's real-word test, built on first use

    @property
    def retrieved(self) -> bool:
        return self.retriever is not None

    def static_for(self, text: str | None, terms: Sequence[str]) -> StaticContext:
        """A file's fixed context: the end of `text` (a prior report; half the budget when terms are given),
        then as many of `terms` as fit. Nothing in mode none."""
        if self.mode == "none" or not (text or terms):
            return StaticContext()
        text_budget = self.max_tokens // 2 if terms else self.max_tokens  # a term list gets the rest
        text_part = fit_text(self._count, text, text_budget) if text else ""
        room = self.max_tokens - (self._count(text_part) if text_part else 0)
        terms_part, used = fit_terms(self._count, list(terms), room) if terms and room > 1 else ("", 0)
        return StaticContext(join_context(text_part, terms_part), tuple(terms[:used]))

    def second_pass(self, first_texts: Sequence[str], statics: Sequence[StaticContext] | None = None
                    ) -> list[str | None]:  # fmt: skip
        """Per window: its file's static part, then the retrieved terms that still fit."""
        from pipeline.scoring_form import normalize_for_scoring

        out = []
        for text, static in zip(first_texts, statics or [self.default] * len(first_texts)):
            room = self.max_tokens - (self._count(static.text) if static.text else 0)
            terms = [t for t in (r.term for r in self.retriever.rank(normalize_for_scoring(text)))
                     if t not in static.terms][: self.options.max_terms]  # fmt: skip
            part, used = fit_terms(self._count, terms, room) if room > 1 else ("", 0)
            self.retrieved_terms.append(terms[:used])
            out.append(join_context(static.text, part))
        return out

    def correct(self, texts: Sequence[str], statics: Sequence[StaticContext] | None = None) -> list[str]:
        """With context.correct: each second-pass text snapped to the terms of its window's context (the
        windows of the latest second_pass call, in the same order)."""
        if not self.options.correct:
            return list(texts)
        from pipeline.correction import KnownWords, snap_terms

        if self._known is None:
            lexicon = self.retriever.lexicon.display.values() if self.retriever else ()
            self._known = KnownWords(lexicon, self.options.correct_known_zipf)
        terms = self.retrieved_terms[len(self.retrieved_terms) - len(texts) :]
        statics = statics or [self.default] * len(texts)
        return [snap_terms(t, [*s.terms, *w], self.options.correct_min_score, self._known)
                for t, w, s in zip(texts, terms, statics)]  # fmt: skip

    def describe(self) -> dict:
        o = self.options
        info = {"mode": self.mode, "terms_file": o.terms_file, "text_file": o.text_file,
                "static_terms": len(self.static_terms),
                "static_tokens": self._count(self.static) if self.static else 0}  # fmt: skip
        if self.retrieved:
            info |= {"min_score": o.min_score, "max_terms": o.max_terms, "correct": o.correct}
        return info


class SystemContexts:
    """The per-utterance contexts of an evaluate system (pipeline.systems.System) on a split:
    (prompts, the lexicon terms in each). +prompt: one static prompt; +retrieved: from the same model's
    first-pass hypotheses; +irrelevant: terms of another exam type."""

    def __init__(self, config):
        self.config = config
        self._lexicon = None
        self._retriever = None
        self._counter = None
        self._known = None

    def make(self, system, split, first_pass: list[str] | None) -> tuple[list, list[list[str]]]:
        n = len(split.records)
        if system.context == "prompt":
            return [system.prompt] * n, [[]] * n
        if system.context == "retrieved":
            from pipeline.errors import DictuneError
            from pipeline.scoring_form import normalize_for_scoring

            if first_pass is None:
                raise DictuneError(f"evaluate: {system.name} needs {system.plain} in evaluate.systems")
            out = [self.retriever().context(normalize_for_scoring(h), self.count_tokens(system),
                                            self.config.context.max_tokens, self.config.context.max_terms)
                   for h in first_pass]  # fmt: skip
            return [text for text, _ in out], [terms for _, terms in out]
        if system.context == "irrelevant":
            lists = irrelevant_contexts(self.lexicon(), self.config, split.records, self.config.context.max_terms)
            texts = [term_context(self.count_tokens(system), terms, self.config.context.max_tokens) for terms in lists]
            return [t for t, _ in texts], [u for _, u in texts]
        return [None] * n, [[]] * n

    def correct(self, system, texts: list[str], terms: list[list[str]]) -> list[str]:
        """Retrieved systems with context.correct: each transcript snapped to its context's terms."""
        c = self.config.context
        if system.context != "retrieved" or not c.correct:
            return texts
        from pipeline.correction import KnownWords, snap_terms

        if self._known is None:
            self._known = KnownWords(self.lexicon().display.values(), c.correct_known_zipf)
        return [snap_terms(text, t, c.correct_min_score, self._known) for text, t in zip(texts, terms)]

    def lexicon(self) -> object:
        from pipeline.lexicon import load_lexicon

        if self._lexicon is None:
            self._lexicon = load_lexicon(self.config.lexicon)
        return self._lexicon

    def retriever(self) -> object:
        if self._retriever is None:
            self._retriever = TermRetriever(self.lexicon(), self.config.context.min_score)
        return self._retriever

    def count_tokens(self, system) -> object:
        from pipeline.inference.hf import load_processor, prompt_token_count

        if self._counter is None:
            processor = load_processor(system.model_dir)  # the tokenizer: the same for base and adapted
            self._counter = lambda text: prompt_token_count(processor, text)
        return self._counter
