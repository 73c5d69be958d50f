"""Profiles: one model per radiologist or group, named by the API's `model` field.

A profile is an adapter dir (on the config's base model) or a whole model dir. Engines are loaded on
first use and kept, at most `max_loaded` of them; the least recently used is unloaded first. Decoding
goes through the project's one path (pipeline.inference.longform.transcribe_group with the engine of
`transcribe.engine`), with the context of `context:` (none, static, retrieved) and the request's prompt.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DictuneError
from pipeline.inference.confidence import Word

logger = logging.getLogger("dictune")

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Transcript:
    text: str  # the formatted report
    segments: list[dict[str, Any]]  # start, end, text (spoken form)
    duration: float
    model_id: str
    words: tuple[Word, ...] = ()  # the spoken words with their probabilities (none when serve.low_confidence is 0)


class UnknownProfile(DictuneError):
    pass


class Profiles:
    def __init__(self, config, base: str, adapter: str | None, profiles: dict[str, str], max_loaded: int,
                 max_mb: float = 0.0):  # fmt: skip
        self.config = config
        self.base = base
        self.specs: dict[str, tuple[str, str | None]] = {DEFAULT_PROFILE: (base, adapter)}
        for name, path in profiles.items():
            folder = Path(path)
            if (folder / "adapter_config.json").is_file():
                self.specs[name] = (base, str(folder))
            elif (folder / "config.json").is_file() or (folder / "model.bin").is_file():
                self.specs[name] = (str(folder), None)
            else:
                raise DictuneError(f"serve.profiles.{name}: {path} is neither an adapter dir (adapter_config.json)"
                                   " nor a model dir (config.json)")  # fmt: skip
        self.max_loaded = max_loaded
        self.max_mb = max_mb  # budget of the loaded engines' weight files (0: the count alone limits)
        self.sizes_mb: dict[str, float] = {}
        self._loaded: OrderedDict[str, tuple[Any, Any, threading.Lock]] = OrderedDict()  # engine, context, lock
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def model_id(self, name: str) -> str:
        model, adapter = self.specs[name]
        return f"{model}+{adapter}" if adapter else model

    def _engine(self, name: str) -> tuple[Any, Any, threading.Lock]:
        from pipeline.context import InferenceContext
        from pipeline.inference.engines import load_engine

        if name not in self.specs:
            raise UnknownProfile(f"unknown model {name!r}; choose one of: {', '.join(self.specs)}")
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            while len(self._loaded) >= self.max_loaded:
                gone, _ = self._loaded.popitem(last=False)
                logger.info("serve: profile %s unloaded (serve.max_loaded_profiles=%d)", gone, self.max_loaded)
            model, adapter = self.specs[name]
            options = self.config.transcribe
            engine = load_engine(model, adapter, options, self.config.model.cache_dir)
            budget = min(options.prompt_max_tokens, engine.max_prompt_tokens())
            context = InferenceContext(self.config.context, self.config.lexicon, engine.prompt_tokens, budget)
            self._loaded[name] = (engine, context, threading.Lock())
            self.sizes_mb[name] = weights_mb(engine.model_path, adapter)
            logger.info("serve: profile %s loaded (%s, %.0f MB of weights)", name, self.model_id(name),
                        self.sizes_mb[name])  # fmt: skip
            while self.max_mb and len(self._loaded) > 1 and self.loaded_mb() > self.max_mb:
                gone, _ = self._loaded.popitem(last=False)  # never the one just loaded: it is the newest
                logger.info("serve: profile %s unloaded (serve.max_profiles_mb=%g)", gone, self.max_mb)
            return self._loaded[name]

    def loaded_mb(self) -> float:
        return sum(self.sizes_mb[name] for name in self._loaded)

    def transcribe(self, name: str, audio: np.ndarray, prompt: str | None = None) -> Transcript:
        """One dictation: the context's static part (or the request's prompt), the retrieved second pass
        when configured, then the formatted report."""
        engine, ctx, busy = self._engine(name)
        with busy:  # one decode per profile at a time: the context keeps per-call state
            return self._decode(name, engine, ctx, audio, prompt)

    def _decode(self, name: str, engine: Any, ctx: Any, audio: np.ndarray, prompt: str | None) -> Transcript:
        from pipeline.inference.longform import SAMPLE_RATE, transcribe_group
        from pipeline.text import format_dictation

        static = ctx.static_for(prompt, []) if prompt and ctx.mode != "none" else ctx.default
        first = prompt if prompt and ctx.mode == "none" else static.text
        second = (lambda texts, owners: ctx.second_pass(texts, [static] * len(texts))) if ctx.retrieved else None
        (segments,) = transcribe_group(engine, [audio], self.config.transcribe, first, second,
                                       lambda texts, owners: ctx.correct(texts, [static] * len(texts)),
                                       with_words=self.config.serve.low_confidence > 0)  # fmt: skip
        spoken = " ".join(s.text for s in segments)
        return Transcript(format_dictation(spoken),
                          [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text} for s in segments],
                          len(audio) / SAMPLE_RATE, self.model_id(name),
                          tuple(w for s in segments for w in s.words))  # fmt: skip


WEIGHT_PATTERNS = ("model.bin", "*.safetensors", "pytorch_model*.bin")


def weights_mb(model_dir: Path, adapter: str | None = None) -> float:
    """An engine's memory estimate: the size of its model's (and adapter's) weight files, in MB."""
    folders = [Path(model_dir)] + ([Path(adapter)] if adapter else [])
    files = {f for folder in folders for pattern in WEIGHT_PATTERNS for f in folder.glob(pattern)}
    return sum(f.stat().st_size for f in files) / 2**20
