"""Transcribe the held-out splits with each system and report domain-term error before and after.

    dictune evaluate CONFIG [--manifest PATH ...]   -> <work_dir>/evaluate/report.{json,md}, *.png,
                                                      transcripts/<system>/<split>.jsonl, rejects.jsonl

Systems (evaluate.systems): `base` (config.model.base) and `adapted` (<work_dir>/train/merged, or the
base with <work_dir>/train/adapter when no merged model was written), each also with `+prompt` (a
vocabulary prompt), `+retrieved` (the lexicon terms closest to what a first pass heard) or `+irrelevant`
(lexicon terms of another exam type: the control for +retrieved); the adapted ones are skipped,
with a note in the report, until the train stage has run. Splits: <work_dir>/normalize/<split>.jsonl
for evaluate.splits, plus every manifest in evaluate.manifests or given with --manifest. evaluate.general_split
gives the headline's general WER; an extra manifest none of whose references holds a lexicon term is a
general split too (scored without the seen/unseen term tables); the first other split is the headline's.

The vocabulary prompt (PROMPT_RULE): the lexicon terms ranked by how often they occur in the train
split's references (most first, ties alphabetical), joined with ", ", as many as fit in
evaluate.prompt_max_tokens (at most Whisper's max_target_positions // 2 - 1 = 223 tokens).

Transcripts are cached: each transcripts/<system>/<split>.jsonl has a key (hash of the model files, the
prompt, the decoding options and the audio) in <split>.key, and a matching key means no decoding. So
rerunning evaluate after training decodes only the adapted systems. The base encoder's outputs on each
split are kept in encoder_states/ (inference.encoder_states.EncoderStateStore): the systems whose
encoder has the same weights (the base ones, and adapted ones when train.adapt=decoder) decode from
them instead of encoding the audio again, with the same transcripts. References are scored in their
`text_norm` form (normalize_for_scoring of the text when absent), hypotheses as
normalize_for_scoring(hyp), which interprets spoken dictation commands first (format_dictation), as the
references' text_norm did. Logs carry counts and numbers, never text.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.files import atomic_write_json
from pipeline.manifest import manifest_audio_paths, write_rejects
from pipeline.systems import (
    PROMPT_RULE,
    REJECTS_NAME,
    STAGE,
    TRANSCRIPTS_DIR,
    Split,
    System,
    decode_options,
    encoder_store,
    load_splits,
    plan_systems,
    report_options,
    score_all,
    transcribe_all,
)

logger = logging.getLogger("dictune")

SECTIONS = ("evaluate", "context")  # model, seed and lexicon are always part of the fingerprint
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


class _ManifestOption(argparse.Action):
    """--manifest PATH (repeatable) becomes the override evaluate.manifests=[...]."""

    def __call__(self, parser, namespace, values, option_string=None):
        paths = [*(getattr(namespace, "evaluate_manifests", None) or []), values]
        namespace.evaluate_manifests = paths
        namespace.stage_overrides = [f"evaluate.manifests={json.dumps(paths)}"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest", action=_ManifestOption, metavar="PATH", dest="evaluate_manifest",
        help="an extra manifest to transcribe and score (repeatable)",
    )


def inputs(config: Config) -> list[Path]:
    paths = [config.stage_dir("normalize") / f"{s}.jsonl" for s in config.evaluate.splits]
    paths += [Path(m) for m in config.evaluate.manifests]
    paths += [config.stage_dir("train") / name for name in ("merged", "adapter")]
    if config.lexicon:
        paths.append(Path(config.lexicon))
    code = ("text.py", "scoring_form.py", "metrics.py", "bootstrap.py", "inference/hf.py",
            "inference/encoder_states.py", "report.py", "clinical.py", "clinical_counts.py",
            "clinical_report.py")  # fmt: skip
    return paths + [_PACKAGE_DIR / name for name in code]


def stat_inputs(config: Config) -> list[Path]:
    """The audio its manifests name, compared by size and mtime (a replaced recording reruns the stage)."""
    return manifest_audio_paths(inputs(config))


# ---------------------------------------------------------------------------------------------- run


def run(config: Config) -> dict[str, Any]:
    from pipeline.models import resolve_model
    from pipeline.report import build_report, headline_table, write_report

    _set_threads(config.threads)
    out_dir = config.stage_dir(STAGE)
    splits, rejects = load_splits(config)
    write_rejects(out_dir / REJECTS_NAME, rejects)
    base_dir = Path(resolve_model(config.model.base, cache_dir=config.model.cache_dir))
    systems, prompt, notes = plan_systems(config, base_dir)
    store = encoder_store(config, base_dir)
    hyps, info = transcribe_all(config, systems, splits, out_dir / TRANSCRIPTS_DIR, store)
    if store is not None:
        removed = store.prune()
        logger.info("evaluate: %d clips encoded for shared encoder states, %d stale files removed",
                    store.encoded, removed)
    scores = score_all(config, splits, hyps)
    meta = _meta(config, systems, splits, prompt, notes)
    report = build_report(meta, scores, {s.name: [r.id for r in s.records] for s in splits},
                          report_options(config, splits))
    if config.lexicon:
        from pipeline.new_words import report_block

        report["new_words"] = report_block(config, splits, hyps, info)
    atomic_write_json(out_dir / "report.json", report)
    written = write_report(report, out_dir)
    print(headline_table(report))  # numbers only
    logger.info("evaluate: wrote %s", ", ".join(p.name for p in [out_dir / "report.json", *written]))
    return {"systems": [s.name for s in systems], "splits": {s.name: len(s.records) for s in splits},
            "rejects": len(rejects), "headline": report["headline"]["rows"]}


def _meta(config: Config, systems: list[System], splits: list[Split], prompt: Any, notes: list[str]) -> dict:
    prompt_info = None
    if prompt is not None:
        prompt_info = {"terms_used": prompt.terms_used, "terms_total": prompt.terms_total,
                       "tokens": prompt.tokens, "rule": PROMPT_RULE, "text": prompt.text}
    return {
        "name": config.name,
        "base_model": config.model.base,
        "systems": [s.name for s in systems],
        "notes": notes,
        "prompt": prompt_info,
        "decoding": decode_options(config) | {"batch_size": config.evaluate.batch_size},
        "splits": {s.name: {"utterances": len(s.records), "kind": s.kind, "manifest": str(s.path)} for s in splits},
    }


def _set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
