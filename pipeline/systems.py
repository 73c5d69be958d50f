"""Evaluate's systems on its splits: which systems exist (base, adapted, each with a context), the splits'
records and audio, decoding every system on every split with a transcript cache, and the scores.

The evaluate stage (pipeline/stages/evaluate.py) and `dictune curve` (pipeline/curve/run.py) both use
these; see the stage's docstring for the cache key, the vocabulary prompt rule and the shared encoder
states. Logs carry counts and numbers, never text.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import DictuneError
from pipeline.files import atomic_write_text, sha256_file, sha256_json, sha256_paths
from pipeline.manifest import (
    Record,
    Reject,
    iter_jsonl,
    read_manifest,
    reference_norm,
    resolve_audio_path,
    write_jsonl,
)
from pipeline.training.export import adapted_model

logger = logging.getLogger("dictune")

STAGE = "evaluate"  # its folder holds the transcripts and the encoder states
TRANSCRIPTS_DIR = "transcripts"
ENCODER_STATES_DIR = "encoder_states"  # the base encoder's outputs per split, shared by the systems
REJECTS_NAME = "rejects.jsonl"
CACHE_VERSION = 2  # bump when the transcription code changes what it returns
MAX_AUDIO_SECONDS = 30.0  # Whisper's window; the segment stage cuts longer items
PROMPT_SEPARATOR = ", "
PROMPT_RULE = "ranked by frequency in the train split, then alphabetical; as many as fit"

@dataclass(frozen=True)
class System:
    name: str  # base or adapted, optionally +prompt, +retrieved or +irrelevant (config.EVALUATE_SYSTEMS)
    model_dir: Path  # Hugging Face Whisper directory
    prompt: str | None  # the static vocabulary prompt of +prompt, None otherwise
    adapter_dir: Path | None = None  # peft adapter merged on load (when train wrote no merged model)

    @property
    def context(self) -> str:
        """none | prompt | retrieved | irrelevant"""
        return self.name.split("+", 1)[1] if "+" in self.name else "none"

    @property
    def plain(self) -> str:
        """The same model without context (its first pass when retrieved)."""
        return self.name.split("+", 1)[0]

    @property
    def model_key(self) -> tuple[Path, Path | None]:
        return (self.model_dir, self.adapter_dir)


@dataclass(frozen=True)
class Split:
    name: str  # normalized split name, or the stem of an extra manifest
    path: Path  # the manifest
    records: tuple[Record, ...]  # the utterances that will be transcribed (rejects removed)
    kind: str  # "domain" or "general"


@dataclass(frozen=True)
class Prompt:
    text: str  # the prompt given to Whisper
    terms_used: int  # lexicon terms in it
    terms_total: int  # lexicon terms available
    tokens: int  # prompt tokens, <|startofprev|> included


# ---------------------------------------------------------------------------------------------- CLI hooks



def encoder_store(config: Config, base_dir: Path) -> Any:
    """The store of the base encoder's outputs on the evaluated clips (shared with `dictune curve`), or
    None with evaluate.share_encoder_states=false."""
    from pipeline.inference.encoder_states import EncoderStateStore

    if not config.evaluate.share_encoder_states:
        return None
    return EncoderStateStore(config.stage_dir(STAGE) / ENCODER_STATES_DIR, base_dir)


def score_all(config: Config, splits: list[Split], hyps: dict[str, dict[str, list[str]]]) -> dict[str, dict]:
    """scores[split][system]: pipeline.metrics.Scores on the scoring forms. Clinical errors are counted per
    report when the split has pieces of longer dictations (segment stage: `parent_id`), else per utterance."""
    from pipeline.metrics import score
    from pipeline.scoring_form import normalize_for_scoring

    lexicon = _lexicon(config)
    out: dict[str, dict] = {}
    for split in splits:
        refs = [reference_norm(r) for r in split.records]
        pieces = any("parent_id" in r.extra for r in split.records)
        reports = [str(r.extra.get("parent_id", r.id)) for r in split.records] if pieces else None
        out[split.name] = {
            system: score(refs, [normalize_for_scoring(h) for h in by_split[split.name]], lexicon, None, reports)
            for system, by_split in hyps.items()
        }
    return out


def report_options(config: Config, splits: list[Split]) -> Any:
    from pipeline.report import ReportOptions

    e = config.evaluate
    domain = next((s.name for s in splits if s.kind == "domain"), None)
    general = e.general_split if any(s.name == e.general_split for s in splits) else None
    return ReportOptions(domain, general, e.bootstrap_samples, config.seed, e.report_examples, e.report_terms)


# ---------------------------------------------------------------------------------------------- inputs


def load_splits(config: Config) -> tuple[list[Split], list[Reject]]:
    """The configured normalized splits and the extra manifests, each with unusable records rejected."""
    sources: list[tuple[str, Path]] = []
    for name in config.evaluate.splits:
        path = config.stage_dir("normalize") / f"{name}.jsonl"
        if not path.is_file():
            raise DictuneError(f"{path}: not found; run `dictune normalize CONFIG` first or drop {name!r} "
                               "from evaluate.splits")
        sources.append((name, path))
    taken = {name for name, _ in sources}
    for manifest in config.evaluate.manifests:
        path = Path(manifest)
        name = path.name.removesuffix(".gz").removesuffix(".jsonl")
        while name in taken:
            name += "_extra"
        taken.add(name)
        sources.append((name, path))
    splits, rejects = [], []
    lexicon = _lexicon(config) if config.evaluate.manifests else None
    for name, path in sources:
        records, bad = _usable_records(path)
        rejects += bad
        if not records:
            raise DictuneError(f"{path}: no usable utterance to evaluate (see {STAGE}/{REJECTS_NAME})")
        kind = _kind(config, name, records, lexicon if name not in config.evaluate.splits else None)
        splits.append(Split(name, path, tuple(records), kind))
        logger.info("evaluate: split %s (%s): %d utterances, %d rejected", name, kind, len(records), len(bad))
    return splits, rejects


def _lexicon(config: Config) -> Any:
    from pipeline.lexicon import load_lexicon

    return load_lexicon(config.lexicon) if config.lexicon else None


def _kind(config: Config, name: str, records: list[Record], lexicon: Any) -> str:
    """"general": evaluate.general_split, or an extra manifest (given with its `lexicon`) none of whose
    references holds a lexicon term (a plain-English set, e.g. a larger general-WER check); every other split
    is "domain"."""
    if name == config.evaluate.general_split:
        return "general"
    if lexicon is None:
        return "domain"
    return "domain" if any(lexicon.find(reference_norm(r).split()) for r in records) else "general"


def _usable_records(path: Path) -> tuple[list[Record], list[Reject]]:
    records, rejects, seen = [], [], set()
    for line, obj in iter_jsonl(path):
        try:
            record = Record.from_dict(obj)
        except (KeyError, TypeError, ValueError) as e:
            rejects.append(Reject(str(path), line, f"not a manifest record ({e!r})", STAGE))
            continue
        reason = None
        if record.id in seen:
            reason = "duplicate id"
        elif record.duration > MAX_AUDIO_SECONDS:
            reason = f"longer than {MAX_AUDIO_SECONDS:.0f} s; run the segment stage first"
        elif not resolve_audio_path(record, path).is_file():
            reason = "audio file not found"
        if reason:
            rejects.append(Reject(str(path), line, reason, STAGE, record.id, record.audio_filepath))
            continue
        seen.add(record.id)
        records.append(record)
    return records, rejects


def load_split_audio(split: Split) -> list[Any]:
    from pipeline.audio import load_mono

    arrays = []
    for record in split.records:
        offset = float(record.extra.get("offset", 0.0))
        duration = record.duration if "offset" in record.extra else None
        arrays.append(load_mono(resolve_audio_path(record, split.path), offset=offset, duration=duration))
    return arrays


# ---------------------------------------------------------------------------------------------- systems


def plan_systems(config: Config, base_dir: Path) -> tuple[list[System], Any, list[str]]:
    """The systems to evaluate (in evaluate.systems order, each after the system it retrieves from), the
    static prompt, and notes on what is skipped."""
    wanted, notes = config.evaluate.systems, []
    adapted = adapted_model(config, base_dir)
    if adapted is None and any(s.startswith("adapted") for s in wanted):
        notes.append(f"the train stage has not run (no model in {config.stage_dir('train')}): "
                     "only the base systems are evaluated")
    prompt = None
    if any(s.endswith("+prompt") for s in wanted):
        prompt, note = build_prompt(config, base_dir)
        if note:
            notes.append(note)
    if not config.lexicon and any(s.endswith(("+retrieved", "+irrelevant")) for s in wanted):
        notes.append("no lexicon is configured: the +retrieved and +irrelevant systems are skipped")
    systems = []
    for name in sorted(wanted, key=lambda n: "+retrieved" in n):  # first passes first, order kept otherwise
        if name.startswith("adapted") and adapted is None or name.endswith("+prompt") and prompt is None:
            continue
        if name.endswith(("+retrieved", "+irrelevant")) and not config.lexicon:
            continue
        model_dir, adapter_dir = adapted if name.startswith("adapted") else (base_dir, None)
        text = prompt.text if name.endswith("+prompt") else None
        systems.append(System(name, model_dir, text, adapter_dir))
    return systems, prompt, notes


def build_prompt(config: Config, model_dir: Path) -> tuple[Prompt | None, str | None]:
    """The vocabulary prompt (PROMPT_RULE), or None and a note saying why there is none."""
    from pipeline.inference.hf import fit_prompt, load_processor, prompt_limit, prompt_token_count
    from pipeline.lexicon import load_lexicon

    if not config.lexicon:
        return None, "no lexicon is configured: the +prompt systems are skipped"
    terms = rank_terms(load_lexicon(config.lexicon), config.stage_dir("normalize") / "train.jsonl")
    processor = load_processor(model_dir)
    limit = min(config.evaluate.prompt_max_tokens, prompt_limit(model_dir))
    text, used = fit_prompt(processor, terms, limit)
    if not used:
        return None, "not even one lexicon term fits the prompt budget: the +prompt systems are skipped"
    tokens = prompt_token_count(processor, text)
    logger.info("evaluate: vocabulary prompt of %d of %d terms, %d tokens", used, len(terms), tokens)
    return Prompt(text, used, len(terms), tokens), None


def rank_terms(lexicon: Any, train_manifest: Path) -> list[str]:
    """Lexicon terms as written, by occurrences in the train references (most first), ties alphabetical."""
    lines = [f" {reference_norm(r)} " for r in read_manifest(train_manifest)] if train_manifest.is_file() else []
    counts = {key: sum(line.count(f" {key} ") for line in lines) for key in lexicon.terms}
    ranked = sorted(counts, key=lambda key: (-counts[key], key))
    return [lexicon.display[key] for key in ranked]


# ---------------------------------------------------------------------------------------------- decoding


def decode_options(config: Config) -> dict[str, Any]:
    e = config.evaluate
    return {"num_beams": e.num_beams, "max_new_tokens": e.max_new_tokens, "bf16": e.bf16, "language": e.language}


def transcribe_all(
    config: Config, systems: list[System], splits: list[Split], out_dir: Path, encoder_store: Any = None
) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, dict]]]:
    """({system: {split: raw hypotheses}}, {system: {split: context info}}), from the cache where the key
    matches, else decoded. With an EncoderStateStore, systems that share an encoder share its outputs (the
    same transcripts, less time). A +retrieved system's contexts come from its plain system's hypotheses."""
    from pipeline.context import SystemContexts
    from pipeline.scoring_form import normalize_for_scoring

    model_hashes: dict[tuple[Path, Path | None], str] = {}
    audio_hashes = {s.name: _audio_hash(s) for s in splits}
    audio_cache: dict[str, list[Any]] = {}
    transcriber = None
    contexts = SystemContexts(config)
    hyps: dict[str, dict[str, list[str]]] = {}
    info: dict[str, dict[str, dict]] = {}
    for system in systems:
        if system.model_key not in model_hashes:
            model_hashes[system.model_key] = sha256_paths([p for p in system.model_key if p is not None])
        hyps[system.name], info[system.name] = {}, {}
        for split in splits:
            started = time.monotonic()
            prompts, terms = contexts.make(system, split, hyps.get(system.plain, {}).get(split.name))
            retrieval_seconds = time.monotonic() - started
            key = sha256_json({"version": CACHE_VERSION, "model": model_hashes[system.model_key],
                               "prompt": prompts, "options": decode_options(config),
                               "audio": audio_hashes[split.name]})
            base = out_dir / system.name / split.name  # + .jsonl (transcripts) and .key
            cached = _read_cache(base, key, split)
            if cached is None:
                if transcriber is None or (transcriber.model_dir, transcriber.adapter_dir) != system.model_key:
                    transcriber = None  # free the previous model first
                    transcriber = _make_transcriber(config, system)
                if split.name not in audio_cache:
                    audio_cache[split.name] = load_split_audio(split)
                logger.info("evaluate: transcribing %s with %s (%d utterances)", split.name, system.name,
                            len(split.records))
                states = None if encoder_store is None else encoder_store.states(
                    transcriber, audio_cache[split.name], audio_hashes[split.name], progress=True
                )
                started = time.monotonic()
                texts = transcriber.transcribe(audio_cache[split.name], prompt=prompts, progress=True,
                                               encoder_states=states)  # fmt: skip
                seconds = time.monotonic() - started
            else:
                texts, seconds = cached
                logger.info("evaluate: %s on %s: cached transcripts reused", system.name, split.name)
            decoded, texts = texts, contexts.correct(system, texts, terms)
            rows = (
                {"id": r.id, "hyp": h, "hyp_norm": normalize_for_scoring(h), "ref_norm": reference_norm(r),
                 "context_terms": t} | ({"hyp_decoded": d} if d != h else {})
                for r, h, d, t in zip(split.records, texts, decoded, terms)
            )
            write_jsonl(_with(base, ".jsonl"), rows)
            atomic_write_text(_with(base, ".key"), json.dumps({"key": key, "seconds": round(seconds, 2)}) + "\n")
            hyps[system.name][split.name] = texts
            info[system.name][split.name] = {"terms": terms, "decode_seconds": seconds,
                                             "retrieval_seconds": retrieval_seconds}  # fmt: skip
    return hyps, info


def _with(base: Path, suffix: str) -> Path:
    return base.parent / (base.name + suffix)  # split names may contain dots


def _make_transcriber(config: Config, system: System) -> Any:
    from pipeline.inference.hf import Transcriber

    e = config.evaluate
    return Transcriber(system.model_dir, adapter_dir=system.adapter_dir, device=e.device, batch_size=e.batch_size,
                       num_beams=e.num_beams, max_new_tokens=e.max_new_tokens, language=e.language, bf16=e.bf16)


def _audio_hash(split: Split) -> str:
    items = [(r.id, sha256_file(resolve_audio_path(r, split.path)), r.extra.get("offset"), r.duration)
             for r in split.records]
    return sha256_json(items)


def _read_cache(base: Path, key: str, split: Split) -> tuple[list[str], float] | None:
    """(the cached raw hypotheses, the seconds their decoding took) when the key matches and every
    utterance is there, else None."""
    try:
        stored = json.loads(_with(base, ".key").read_text(encoding="utf-8"))
        if stored.get("key") != key:
            return None
        rows = {row["id"]: row.get("hyp_decoded", row["hyp"]) for _, row in iter_jsonl(_with(base, ".jsonl"))}
    except (OSError, KeyError, ValueError, AttributeError, DictuneError):
        return None
    if any(r.id not in rows for r in split.records):
        return None
    return [rows[r.id] for r in split.records], float(stored.get("seconds", 0.0))
