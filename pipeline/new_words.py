"""Seen and unseen lexicon terms: how each system does on terms its training text had, and on the others.

A lexicon term is *seen* when it occurs in the training text (the references of train.train_manifest,
train.extra_train_manifests, train.mix_manifests and train.replay_manifest, in scoring form), *unseen*
otherwise. Every domain split is scored twice more, once with each half of the lexicon as the term list: B-WER and term error on
seen terms and on unseen terms, with paired-bootstrap CIs for the comparisons that matter for context:

    X+ctx vs X          does the context help the same model?
    adapted+ctx vs base+ctx   does fine-tuning keep (or improve) what the context gives?

Retrieval quality: recall@k = share of an utterance's reference terms that were in its retrieved context.

report["new_words"] = {"seen_terms", "unseen_terms", "rows": [{split, system, wer, b_wer_seen,
b_wer_unseen, term_error_seen, term_error_unseen, unseen_occurrences}], "comparisons": [...],
"retrieval": {system: {split: {recall, terms_per_utterance, second_pass_seconds, first_pass_seconds}}}}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.lexicon import Lexicon
from pipeline.manifest import read_manifest, reference_norm

CONTEXT_SUFFIXES = ("+prompt", "+retrieved", "+irrelevant")


def training_manifests(config) -> list[Path]:
    """The manifests whose references the train stage learns from (existing files only)."""
    t = config.train
    paths = [Path(t.train_manifest or config.stage_dir("normalize") / "train.jsonl"),
             *map(Path, (*t.extra_train_manifests, *t.mix_manifests))]  # fmt: skip
    if t.replay_manifest and t.replay_ratio > 0:
        paths.append(Path(t.replay_manifest))
    return [p for p in paths if p.is_file()]


def split_lexicon(lexicon: Lexicon, texts_norm: Iterable[str]) -> tuple[Lexicon, Lexicon]:
    """(seen, unseen) halves of the lexicon by occurrence in the given scoring-form texts. Both halves match
    as the whole lexicon does (Lexicon.subset): "bibasilar" inside a seen "bibasilar atelectasis" is not an
    occurrence of the unseen term "bibasilar", and no reference word is counted in both halves."""
    seen = set()
    for text in texts_norm:
        seen |= {m.term for m in lexicon.find(text.split())}
    keys = list(lexicon.display)
    return lexicon.subset(k for k in keys if k in seen), lexicon.subset(k for k in keys if k not in seen)


def seen_unseen(config, lexicon: Lexicon) -> tuple[Lexicon, Lexicon]:
    texts = (reference_norm(r) for path in training_manifests(config) for r in read_manifest(path))
    return split_lexicon(lexicon, texts)


def base_system(name: str) -> str | None:
    """The system without context of a context system (adapted+retrieved -> adapted), else None."""
    for suffix in CONTEXT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def build(refs: dict[str, list[str]], hyps: dict[str, dict[str, list[str]]], seen: Lexicon, unseen: Lexicon,
          splits: Sequence[str], samples: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """The new_words block of the report (see the module docstring); refs[split] and hyps[system][split] are
    in scoring form."""
    from pipeline.bootstrap import paired_bootstrap
    from pipeline.metrics import score

    rows, comparisons = [], []
    for split in splits:
        scored = {name: (score(refs[split], by[split], seen, normalizer=None),
                         score(refs[split], by[split], unseen, normalizer=None))
                  for name, by in hyps.items() if split in by}  # fmt: skip
        for name, (s, u) in scored.items():
            rows.append({"split": split, "system": name, "wer": s.wer.rate,
                         "b_wer_seen": _rate(s.b_wer), "b_wer_unseen": _rate(u.b_wer),
                         "term_error_seen": s.terms.error_rate, "term_error_unseen": u.terms.error_rate,
                         "unseen_occurrences": u.terms.ref_occurrences})  # fmt: skip
        for a, b in _pairs(scored):
            for half, index in (("seen", 0), ("unseen", 1)):
                diff = paired_bootstrap(scored[a][index], scored[b][index], samples, seed, ("b_wer",))["b_wer"]
                if diff.delta is not None and diff.ci_low is not None:
                    comparisons.append({"split": split, "system": b, "baseline": a, "terms": half,
                                        **diff.to_dict()})  # fmt: skip
    return {"seen_terms": len(seen), "unseen_terms": len(unseen), "rows": rows, "comparisons": comparisons}


def _rate(rate: Any) -> float | None:
    return rate.rate if rate is not None else None


def _pairs(scored: dict[str, Any]) -> list[tuple[str, str]]:
    """(baseline, system) pairs: each context system against its system without context, and adapted+ctx
    against base+ctx."""
    out = []
    for name in scored:
        plain = base_system(name)
        if plain in scored:
            out.append((plain, name))
        if name.startswith("adapted+") and "base+" + name.removeprefix("adapted+") in scored:
            out.append(("base+" + name.removeprefix("adapted+"), name))
    return out


def recall_at_k(refs_norm: Sequence[str], contexts: Sequence[Sequence[str]], lexicon: Lexicon) -> dict[str, float]:
    """Share of reference term occurrences whose term was in the utterance's context, and terms per context."""
    key_of = {display: key for key, display in lexicon.display.items()}
    hits = total = 0
    for ref, terms in zip(refs_norm, contexts):
        given = {key_of.get(t, t) for t in terms}
        for match in lexicon.find(ref.split()):
            total += 1
            hits += match.term in given
    return {"recall": hits / total if total else None, "occurrences": total,
            "terms_per_utterance": sum(map(len, contexts)) / len(contexts) if contexts else 0.0}  # fmt: skip


# ---------------------------------------------------------------------------------------------- markdown


def markdown(block: dict[str, Any]) -> list[str]:
    """The report.md section: seen / unseen term errors per split and system, the CIs, retrieval."""
    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    lines = ["## New words: terms the training text had, and terms it did not", "",
             (f"{block['seen_terms']} lexicon terms occur in the training text (seen), {block['unseen_terms']} do "
             "not (unseen). B-WER: word errors inside those terms' occurrences."), "",
             "| split | system | WER | B-WER seen | B-WER unseen | term error seen | term error unseen |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in block["rows"]:
        lines.append(f"| {r['split']} | {r['system']} | {pct(r['wer'])} | {pct(r['b_wer_seen'])} | "
                     f"{pct(r['b_wer_unseen'])} | {pct(r['term_error_seen'])} | {pct(r['term_error_unseen'])} |")
    if block["comparisons"]:
        lines += ["", "B-WER differences (system − baseline, points) with 95% paired-bootstrap CIs:", "",
                  "| split | terms | system | baseline | difference | 95% CI |", "|---|---|---|---|---:|---|"]
        for c in block["comparisons"]:
            lines.append(f"| {c['split']} | {c['terms']} | {c['system']} | {c['baseline']} | "
                         f"{100 * c['delta']:+.1f} | [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] |")
    retrieval = block.get("retrieval") or {}
    if retrieval:
        lines += ["", ("Retrieval (two passes): recall@k = share of reference term occurrences whose term was in "
                  "the retrieved context; real-time factor (decoding seconds / audio seconds) of the first pass "
                  "and of retrieval + second pass; the second pass decodes each utterance with its own prompt."),
                  "", ("| system | split | recall@k | terms per context | audio s | RTF first pass "
                       "| RTF retrieval + second pass | overhead |"), "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for system, by_split in retrieval.items():
            for split, r in by_split.items():
                audio, first, second = (r.get(k) or 0.0 for k in
                                        ("audio_seconds", "first_pass_seconds", "second_pass_seconds"))
                lines.append(f"| {system} | {split} | {pct(r.get('recall'))} | {r['terms_per_utterance']:.1f} | "
                             f"{audio:.0f} | {_rtf(first, audio)} | {_rtf(second, audio)} | "
                             f"{f'{second / first:.1f}x' if first else '–'} |")
    return lines + [""]


def _rtf(seconds: float, audio: float) -> str:
    return f"{seconds / audio:.3f}" if audio else "–"


def report_block(config, splits, hyps: dict, info: dict) -> dict[str, Any]:
    """Seen vs unseen lexicon terms per domain split and system, and retrieval recall and cost
    (the new_words block of report.json)."""
    from pipeline.lexicon import load_lexicon
    from pipeline.scoring_form import normalize_for_scoring

    lexicon = load_lexicon(config.lexicon)
    seen, unseen = seen_unseen(config, lexicon)
    domain = [s for s in splits if s.kind == "domain"]
    refs = {s.name: [reference_norm(r) for r in s.records] for s in domain}
    norm = {name: {s.name: [normalize_for_scoring(h) for h in by[s.name]] for s in domain} for name, by in hyps.items()}
    block = build(refs, norm, seen, unseen, [s.name for s in domain], config.evaluate.bootstrap_samples,
                            config.seed)  # fmt: skip
    block["retrieval"] = {}
    for name, by_split in info.items():
        if not name.endswith("+retrieved"):
            continue
        plain = name.split("+", 1)[0]
        block["retrieval"][name] = {
            s.name: recall_at_k(refs[s.name], by_split[s.name]["terms"], lexicon)
            | {"first_pass_seconds": info[plain][s.name]["decode_seconds"],
               "second_pass_seconds": by_split[s.name]["decode_seconds"] + by_split[s.name]["retrieval_seconds"],
               "audio_seconds": sum(r.duration for r in s.records)}
            for s in domain
        }
    return block
