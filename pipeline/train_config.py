"""The train section of a config: every training default, once, with its value checks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "lora"  # lora (peft adapter) | full (fine-tune every weight of the adapted parts)
    max_steps: int = 300  # optimizer steps
    batch_size: int = 8  # items per device per micro-batch
    learning_rate: float = 1e-3  # peak learning rate (1e-3 suits LoRA; use ~1e-5 for full)
    resume: bool = False  # continue from the last checkpoint in <work_dir>/train
    # -- data
    train_manifest: str | None = None  # default <work_dir>/normalize/train.jsonl
    extra_train_manifests: tuple[str, ...] = ()  # more training manifests, e.g. cut long dictations
    dev_manifest: str | None = None  # default <work_dir>/normalize/dev.jsonl; "" = no dev evaluation
    replay_manifest: str | None = None  # plain-English items mixed into training against forgetting
    replay_ratio: float = 0.0  # share of training items drawn from replay_manifest, in [0, 0.9]
    # other manifests drawn into each epoch at a set share, e.g. report-archive audio (synthesize.archive):
    # {manifest: share of each epoch's items}; the shares and replay_ratio add up to at most 0.9
    mix_manifests: dict[str, float] = field(default_factory=dict)
    general_dev_manifest: str | None = None  # plain-English items for general WER during training (not test!)
    group_by_length: bool = True  # sort by duration within seeded mega-batches (less decoder padding)
    mega_batch_factor: int = 16  # a mega-batch holds this many batches
    max_label_tokens: int = 448  # longer targets are rejected (Whisper's decoder limit)
    prepend_space: bool = True  # tokenize " text" like Whisper's own outputs
    language: str = "en"  # multilingual bases only: language token of the targets
    task: str = "transcribe"  # multilingual bases only: transcribe | translate
    num_workers: int | str = "auto"  # DataLoader worker processes (0 = load in the training process);
    # auto: 0 on CPU (workers would take cores from the math), up to 4 on CUDA (pipeline/training/state.py)
    # -- streaming (pipeline/training/stream.py): big corpora are read from Parquet shards as training goes,
    # in batches of a total duration, instead of being loaded whole
    streaming: bool | str = "auto"  # auto (when the train manifest holds >= streaming_min_hours) | true | false
    streaming_min_hours: float = 100.0
    shard_dir: str | None = None  # default <work_dir>/normalize/shards/train (normalize writes them)
    rows_per_shard: int = 10_000  # rows per Parquet shard when shards are written
    stream_batch_seconds: float = 80.0  # streaming: speech per micro-batch, at most (batch_size does not apply)
    stream_max_items: int = 32  # streaming: rows per micro-batch, at most
    stream_readers: int = 0  # streaming: shard readers (0 = one per process); see pipeline/training/stream.py
    stream_pool_rows: int = 2048  # streaming: rows sorted by duration together before batches are cut
    # -- context-aware training (pipeline/training/prompts.py): Whisper's previous-text slot filled as at
    # inference, so the adapted model keeps using a vocabulary context; the shares are of training items
    context_terms_share: float = 0.5  # a term list: own lexicon terms among distractors
    context_previous_share: float = 0.2  # the text before the item (previous piece, or a same-exam sentence)
    context_distractors: tuple[int, int] = (2, 10)  # lexicon terms added to a term list, drawn in [lo, hi]
    context_keep_own: float = 0.8  # chance that each own term is in the item's term list
    # context tokens at most while training: every decoder position attends to all 1500 encoder frames, so
    # a step costs about (context + target tokens): 150 tokens made decoder-only steps 2.9x slower
    context_max_tokens: int = 64
    # -- model
    # which part learns: decoder | encoder | both. decoder (default): the encoder stays as pretrained, which
    # keeps it from fitting TTS voices when training on synthetic speech (Vasquez-Correa et al., TSD 2023)
    # and enables the fast mode (encoder outputs cached: ~10x faster steps on CPU)
    adapt: str = "decoder"
    lora_r: int = 32  # LoRA rank
    lora_alpha: int = 64  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")  # linear layer names inside each block
    gradient_checkpointing: bool = False  # trade ~30% speed for activation memory
    attention: str = "sdpa"  # sdpa (torch's fused attention) | eager
    quantize: str = "none"  # none | 4bit: QLoRA, the frozen base in NF4 (CUDA + bitsandbytes; train.mode=lora)
    # -- optimization
    lr_scheduler: str = "linear"  # linear | cosine | constant (after warmup)
    warmup_steps: int = 20  # linear warmup from 0 to learning_rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    precision: str = "auto"  # auto (bf16 where CPU or GPU has it, else fp16 on CUDA) | bf16 | fp16 | fp32
    # -- augmentation (all off by default; any of them disables the encoder cache)
    spec_augment: bool = False  # SpecAugment inside the model (time/feature masking of log-mels)
    mask_time_prob: float = 0.05  # SpecAugment: share of frames masked
    mask_feature_prob: float = 0.0  # SpecAugment: share of mel bins masked
    augment_prob: float = 0.5  # chance that each switched-on waveform augmentation hits an item
    noise: bool = False  # additive white/pink noise
    noise_snr_db: tuple[float, float] = (15.0, 40.0)  # SNR range of the added noise, dB
    speed: bool = False  # speed perturbation (tempo and pitch, by resampling)
    speed_range: tuple[float, float] = (0.9, 1.1)  # speed factor range
    gain: bool = False  # random gain
    gain_db: tuple[float, float] = (-6.0, 6.0)  # gain range, dB
    # -- fast decoder-only mode
    cache_encoder_outputs: bool | str = "auto"  # auto (when the encoder is frozen and no augmentation) | true | false
    encoder_cache_dtype: str = "float16"  # float16 | float32: storage of cached encoder outputs
    encoder_cache_dir: str | None = None  # default <model cache>/encoder_cache, shared by every run
    encoder_cache_budget_gb: float = 100.0  # auto: cache only when every clip's output fits in this
    # -- evaluation, checkpoints, logging
    eval_steps: int = 50  # dev evaluation every N steps (0 = only at the end)
    eval_max_items: int = 64  # dev items decoded per evaluation (0 = all), a fixed seeded subset
    eval_batch_size: int = 16  # items per batch when decoding dev
    generation_max_new_tokens: int = 128  # greedy decoding limit for dev transcripts
    early_stopping_patience: int = 0  # evaluations without a better dev term error before stopping (0 = off)
    save_steps: int = 50  # checkpoint every N steps (0 = only at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept (the best one is kept too)
    export_best: bool = True  # export the best checkpoint by dev term error (else the last step)
    log_steps: int = 10  # loss/lr to TensorBoard every N steps
    merge: bool = True  # also write merged/ (a plain model directory, no peft needed)

    def problems(self) -> list[str]:
        """Value checks of this section, each with its dotted key."""
        out = []
        choices = {
            "mode": ("lora", "full"), "adapt": ("encoder", "decoder", "both"),
            "lr_scheduler": ("linear", "cosine", "constant"), "precision": ("auto", "bf16", "fp16", "fp32"),
            "cache_encoder_outputs": ("auto", "true", "false"), "streaming": ("auto", "true", "false"),
            "attention": ("sdpa", "eager"), "quantize": ("none", "4bit"), "encoder_cache_dtype": ("float16", "float32"),
        }
        for key, allowed in choices.items():
            if str(getattr(self, key)).lower() not in allowed:
                out.append(f"train.{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        positive = ("max_steps", "batch_size", "gradient_accumulation_steps", "mega_batch_factor", "eval_batch_size",
                    "keep_checkpoints", "lora_r", "max_label_tokens", "generation_max_new_tokens", "rows_per_shard",
                    "stream_max_items", "stream_pool_rows")  # fmt: skip
        out += [f"train.{k}: must be >= 1" for k in positive if getattr(self, k) < 1]
        counts = ("stream_readers", "warmup_steps", "eval_steps", "save_steps", "log_steps", "early_stopping_patience",
                  "eval_max_items")  # fmt: skip
        out += [f"train.{k}: must be >= 0" for k in counts if getattr(self, k) < 0]
        if str(self.num_workers).lower() != "auto" and not (isinstance(self.num_workers, int) and self.num_workers >= 0):
            out.append(f"train.num_workers: must be auto or a count >= 0, got {self.num_workers!r}")
        if not 0.0 <= self.lora_dropout < 1.0 or not 0.0 <= self.augment_prob <= 1.0:
            out.append("train.lora_dropout / train.augment_prob: must be probabilities")
        shares = (self.context_terms_share, self.context_previous_share, self.context_keep_own)
        if min(shares) < 0 or max(shares) > 1 or self.context_terms_share + self.context_previous_share > 1:
            out.append("train.context_*_share / context_keep_own: probabilities, the two shares summing to <= 1")
        lo_hi = self.context_distractors
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1] or self.context_max_tokens < 2:
            out.append("train.context_distractors: [low, high] with 0 <= low <= high; context_max_tokens >= 2")
        if not 0.0 <= self.replay_ratio <= 0.9:
            out.append("train.replay_ratio: must be in [0, 0.9]")
        if self.replay_ratio > 0 and not self.replay_manifest:
            out.append("train.replay_ratio: set train.replay_manifest too")
        if any(r <= 0 for r in self.mix_manifests.values()) or self.replay_ratio + sum(self.mix_manifests.values()) > 0.9:
            out.append("train.mix_manifests: each share must be > 0, and they add up with replay_ratio to <= 0.9")
        for key in ("noise_snr_db", "speed_range", "gain_db"):
            pair = getattr(self, key)
            if len(pair) != 2 or pair[0] > pair[1]:
                out.append(f"train.{key}: expected [low, high]")
        if self.learning_rate <= 0:
            out.append("train.learning_rate: must be > 0")
        if self.stream_batch_seconds <= 0 or self.streaming_min_hours < 0:
            out.append("train.stream_batch_seconds: must be > 0; train.streaming_min_hours: >= 0")
        if self.quantize == "4bit" and self.mode != "lora":
            out.append("train.quantize: 4bit (QLoRA) trains LoRA adapters only; set train.mode=lora")
        if self.encoder_cache_budget_gb < 0:
            out.append("train.encoder_cache_budget_gb: must be >= 0")
        return out
