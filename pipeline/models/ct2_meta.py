"""What a CTranslate2 Whisper directory says besides its weights: tokenizer, special ids, generation config.

A CT2 Whisper directory holds `config.json` (alignment_heads, lang_ids, suppress_ids, suppress_ids_begin),
`tokenizer.json` (Hugging Face tokenizers format) and `vocabulary.txt` or `vocabulary.json` (one token per
id). The packaged tokenizer.json lacks the 1501 timestamp tokens `<|0.00|>`..`<|30.00|>` that the
vocabulary has: they are appended as NON-special tokens (transformers takes timestamp_begin as the last
special id + 1), so that len(tokenizer) equals the model's vocabulary size.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DictuneError

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperProcessor, WhisperTokenizer

logger = logging.getLogger("dictune")

NUM_TIMESTAMP_TOKENS = 1501  # <|0.00|> .. <|30.00|>
TIME_PRECISION_S = 0.02  # seconds per timestamp token
MAX_TARGET_TOKENS = 448  # Whisper's decoder context (max_length of generation)
MAX_INITIAL_TIMESTAMP_INDEX = 50  # first timestamp at most 1.0 s (openai/whisper default)
MULTILINGUAL_MIN_VOCAB = 51865  # openai/whisper: a vocabulary this large means a multilingual model
EOT = "<|endoftext|>"
TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class SpecialIds:
    eot: int  # end of transcript; also bos/pad
    sot: int  # start of transcript (decoder_start_token_id)
    no_timestamps: int
    prev_sot: int  # <|startofprev|>
    sot_lm: int  # <|startoflm|>
    no_speech: int  # <|nocaptions|>
    transcribe: int
    translate: int
    is_multilingual: bool
    lang_to_id: dict[str, int] = field(default_factory=dict)  # "<|en|>" -> id; empty when English-only


@dataclass(frozen=True)
class Ct2Meta:
    directory: Path
    config: dict[str, Any]  # CT2's config.json
    vocabulary: tuple[str, ...]  # token per id, timestamps included


def read_ct2_meta(ct2_dir: str | Path) -> Ct2Meta:
    """Read config.json and the vocabulary file of a CT2 Whisper directory."""
    directory = Path(ct2_dir)
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DictuneError(f"{config_path}: missing (a CTranslate2 Whisper dir needs config.json)") from None
    except json.JSONDecodeError as e:
        raise DictuneError(f"{config_path}: invalid JSON ({e})") from e
    if not isinstance(config, dict):
        raise DictuneError(f"{config_path}: expected a JSON object")
    return Ct2Meta(directory, config, tuple(_read_vocabulary(directory)))


def _read_vocabulary(directory: Path) -> list[str]:
    txt, js = directory / "vocabulary.txt", directory / "vocabulary.json"
    if txt.exists():
        tokens = txt.read_text(encoding="utf-8").split("\n")
        return tokens[:-1] if tokens and tokens[-1] == "" else tokens
    if js.exists():
        try:
            tokens = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DictuneError(f"{js}: invalid JSON ({e})") from e
        if isinstance(tokens, list):
            return [str(t) for t in tokens]
        raise DictuneError(f"{js}: expected a JSON list of tokens")
    raise DictuneError(f"{directory}: no vocabulary.txt or vocabulary.json (not a CTranslate2 model dir?)")


def timestamp_tokens() -> list[str]:
    return ["<|%.2f|>" % (i * TIME_PRECISION_S) for i in range(NUM_TIMESTAMP_TOKENS)]


def build_tokenizer(meta: Ct2Meta, vocab_size: int) -> WhisperTokenizer:
    """The packaged tokenizer.json plus the timestamp tokens, checked id by id against the vocabulary."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    path = meta.directory / "tokenizer.json"
    try:
        added = json.loads(path.read_text(encoding="utf-8"))["added_tokens"]
    except FileNotFoundError:
        raise DictuneError(
            f"{path}: missing; copy tokenizer.json from the model's Hugging Face repo"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DictuneError(f"{path}: not a Hugging Face tokenizers file ({e})") from e
    special = [t["content"] for t in added if t.get("special") and t["content"] != EOT]
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(path),
        unk_token=EOT,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        extra_special_tokens=special,
    )
    vocab = tokenizer.get_vocab()
    missing = [
        AddedToken(t, special=False, normalized=False, lstrip=False, rstrip=False)
        for t in timestamp_tokens()
        if t not in vocab
    ]
    tokenizer.add_tokens(missing)
    _check_tokenizer(tokenizer, meta, vocab_size, path)
    return tokenizer


def _check_tokenizer(tokenizer: WhisperTokenizer, meta: Ct2Meta, vocab_size: int, path: Path) -> None:
    if len(tokenizer) != vocab_size:
        raise DictuneError(
            f"{path}: the tokenizer has {len(tokenizer)} tokens with timestamps, the model has {vocab_size}"
        )
    if len(meta.vocabulary) != vocab_size:
        raise DictuneError(
            f"{meta.directory}: the vocabulary file has {len(meta.vocabulary)} tokens, the model {vocab_size}"
        )
    vocab = tokenizer.get_vocab()
    for index, token in enumerate(meta.vocabulary):
        if vocab.get(token) != index:
            raise DictuneError(
                f"{path}: token {token!r} has id {vocab.get(token)} in tokenizer.json but {index} in the "
                "vocabulary file (tokenizer from another model?)"
            )


def special_ids(tokenizer: WhisperTokenizer, vocab_size: int) -> SpecialIds:
    """Special token ids looked up by name; languages only for multilingual models."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = tokenizer.get_vocab()

    def need(token: str) -> int:
        if token not in vocab:
            raise DictuneError(f"the tokenizer has no {token} token (not a Whisper tokenizer?)")
        return vocab[token]

    multilingual = vocab_size >= MULTILINGUAL_MIN_VOCAB
    langs = {f"<|{code}|>": vocab[f"<|{code}|>"] for code in LANGUAGES if f"<|{code}|>" in vocab}
    return SpecialIds(
        eot=need(EOT),
        sot=need("<|startoftranscript|>"),
        no_timestamps=need("<|notimestamps|>"),
        prev_sot=need("<|startofprev|>"),
        sot_lm=need("<|startoflm|>"),
        no_speech=need("<|nocaptions|>"),
        transcribe=need("<|transcribe|>"),
        translate=need("<|translate|>"),
        is_multilingual=multilingual,
        lang_to_id=langs if multilingual else {},
    )


def suppress_tokens(meta: Ct2Meta, ids: SpecialIds) -> list[int]:
    """CT2's suppress_ids; when the converter left them out, Whisper's non-speech list plus the tasks."""
    values = meta.config.get("suppress_ids")
    if values is not None:
        return [int(v) for v in values]
    from transformers.models.whisper.configuration_whisper import NON_SPEECH_TOKENS, NON_SPEECH_TOKENS_MULTI

    logger.warning("%s: config.json has no suppress_ids; using Whisper's default list", meta.directory)
    base = NON_SPEECH_TOKENS_MULTI if ids.is_multilingual else NON_SPEECH_TOKENS
    extra = {ids.sot, ids.translate, ids.transcribe, ids.sot_lm, ids.prev_sot, ids.no_speech}
    return sorted(set(base) | extra)


def begin_suppress_tokens(meta: Ct2Meta, ids: SpecialIds) -> list[int]:
    values = meta.config.get("suppress_ids_begin")
    return [int(v) for v in values] if values is not None else [220, ids.eot]


def alignment_heads(meta: Ct2Meta, decoder_layers: int, decoder_heads: int) -> list[list[int]]:
    """CT2's alignment_heads; by default every head of the last half of the decoder (as CT2 does)."""
    values = meta.config.get("alignment_heads")
    if values:
        heads = [[int(layer), int(head)] for layer, head in values]
        bad = [h for h in heads if not (0 <= h[0] < decoder_layers and 0 <= h[1] < decoder_heads)]
        if bad:
            raise DictuneError(
                f"{meta.directory / 'config.json'}: alignment_heads {bad} do not exist in a decoder of "
                f"{decoder_layers} layers x {decoder_heads} heads"
            )
        return heads
    pairs = itertools.product(range(decoder_layers // 2, decoder_layers), range(decoder_heads))
    return [[layer, head] for layer, head in pairs]


def build_generation_config(
    meta: Ct2Meta, ids: SpecialIds, decoder_layers: int, decoder_heads: int
) -> GenerationConfig:
    """Greedy-by-default generation settings that reproduce faster-whisper's decoding of the same model.

    Multilingual models get lang_to_id/task_to_id and task="transcribe": without a task, transformers
    emits no <|transcribe|> after a detected language. English-only models get neither (else
    transformers runs language detection).
    """
    from transformers import GenerationConfig

    extra: dict[str, Any] = {}
    if ids.is_multilingual:
        extra = {
            "lang_to_id": dict(ids.lang_to_id),
            "task_to_id": {"transcribe": ids.transcribe, "translate": ids.translate},
            "task": "transcribe",
        }
    return GenerationConfig(
        decoder_start_token_id=ids.sot,
        bos_token_id=ids.eot,
        eos_token_id=ids.eot,
        pad_token_id=ids.eot,
        no_timestamps_token_id=ids.no_timestamps,
        prev_sot_token_id=ids.prev_sot,
        suppress_tokens=suppress_tokens(meta, ids),
        begin_suppress_tokens=begin_suppress_tokens(meta, ids),
        alignment_heads=alignment_heads(meta, decoder_layers, decoder_heads),
        is_multilingual=ids.is_multilingual,
        max_length=MAX_TARGET_TOKENS,
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        return_timestamps=False,
        **extra,
    )


def build_processor(tokenizer: WhisperTokenizer, n_mels: int) -> WhisperProcessor:
    """Whisper's log-mel front end (16 kHz, 30 s windows) with `n_mels` bins, plus the tokenizer."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    return WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=n_mels), tokenizer=tokenizer
    )
