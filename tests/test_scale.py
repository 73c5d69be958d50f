"""Scale: Whisper sizes as random-weight models, the encoder-cache plan, streaming shards."""

from __future__ import annotations

import json

import pytest
from test_train import corpus, trainer_for  # noqa: F401 - corpus is a fixture

from pipeline.models.shapes import SHAPES, encoder_output_bytes, parameter_counts, shape_of
from pipeline.training.encoder_cache import plan_cache


def test_published_parameter_counts_of_the_sizes():
    millions = {name: round(parameter_counts(shape)["total"] / 1e6) for name, shape in SHAPES.items()}
    # openai/whisper's model card: 39 M, 74 M, 244 M, 769 M, 1550 M, 809 M
    assert millions["tiny.en"] == 38 and millions["base"] == 73 and millions["small"] == 242
    assert millions["medium"] == 764 and millions["large-v3"] == 1543 and millions["large-v3-turbo"] == 809
    assert shape_of("openai/whisper-large-v3-turbo").decoder_layers == 4
    with pytest.raises(Exception, match="unknown Whisper size 'huge'"):
        shape_of("huge")


def test_encoder_cache_plan_arithmetic_and_choice():
    tiny, turbo = SHAPES["tiny.en"], SHAPES["large-v3-turbo"]
    assert encoder_output_bytes(tiny) == 1500 * 384 * 2 and encoder_output_bytes(turbo) == 1500 * 1280 * 2
    small = plan_cache(3600, 384, "float16", budget_gb=100, free_bytes=10**12, on_gpu=False)  # 10 h of 10 s clips
    assert small.use and small.total_bytes == 3600 * 1500 * 384 * 2
    assert "3,600 clips x 1.15 MB" in small.reason and "4.1 GB" in small.reason
    big = plan_cache(360_000, 1280, "float16", budget_gb=100, free_bytes=10**13, on_gpu=False)  # 1,000 h
    assert not big.use and "1382.4 GB" in big.reason and "disk budget of 100 GB" in big.reason
    full_disk = plan_cache(3600, 384, "float16", budget_gb=100, free_bytes=4 * 10**9, on_gpu=False)
    assert not full_disk.use and "free disk space" in full_disk.reason
    gpu = plan_cache(3600, 384, "float16", budget_gb=100, free_bytes=10**12, on_gpu=True)
    assert not gpu.use and "GPU" in gpu.reason


def test_trainer_over_the_budget_encodes_on_the_fly(tiny_whisper_dir, corpus, tmp_path):  # noqa: F811
    trainer = trainer_for(tmp_path, corpus, tiny_whisper_dir, adapt="decoder", encoder_cache_budget_gb=0.0,
                          max_steps=1)  # fmt: skip
    assert not trainer.use_cache and trainer.mode_name() == "lora-decoder"
    summary = trainer.train()
    assert summary["encoder_cache"] is None and "over the disk budget of 0 GB" in summary["encoder_cache_plan"]
    assert not (tmp_path / "encoder_cache").exists()
    forced = trainer_for(tmp_path, corpus, tiny_whisper_dir, adapt="decoder", encoder_cache_budget_gb=0.0,
                         cache_encoder_outputs=True)  # fmt: skip
    assert forced.use_cache and "train.cache_encoder_outputs=true" in forced.data.cache_plan.reason
    config = json.loads((tmp_path / "work" / "train" / "train_config.json").read_text())
    assert "encoded on the fly" in config["resolved"]["encoder_cache_plan"]


# ---------------------------------------------------------------------------------------------- shards and streams


def _manifest(tmp_path, n):
    """n rows of 1-7 s; every 4 rows are the pieces of one cut dictation."""
    rows = [{"id": f"r{i}", "audio_filepath": f"a/{i}.wav", "duration": 1.0 + i % 7, "text": f"sentence {i}.",
             "parent_id": f"d{i // 4}", "segment_index": i % 4} for i in range(n)]  # fmt: skip
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, rows


def test_shards_keep_every_row_or_reject_it_with_its_line(tmp_path):
    import pyarrow.parquet as pq

    from pipeline.training.shards import read_index, write_shards

    path, rows = _manifest(tmp_path, 23)
    lines = path.read_text().splitlines()
    lines[4] = json.dumps({**rows[4], "text": "  "})
    lines[9] = json.dumps({**rows[9], "duration": 41.0})
    lines[12] = "{not json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = write_shards(path, tmp_path / "shards", rows_per_shard=5)
    assert index.shards == ("shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet", "shard-00003.parquet")
    assert index.rows == (5, 5, 5, 5) and index.total_rows == 20
    rejects = [json.loads(x) for x in (tmp_path / "shards" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" ")[0]) for r in rejects] == [(5, "empty"), (10, "audio"), (13, "invalid")]
    table = pq.read_table(tmp_path / "shards" / "shard-00000.parquet").to_pylist()
    assert table[0]["audio_filepath"] == str(tmp_path / "a" / "0.wav") and table[0]["line"] == 1
    assert [r["previous_text"] for r in table[:4]] == [None, "sentence 0.", "sentence 1.", "sentence 2."]
    assert read_index(tmp_path / "shards") == index
    (tmp_path / "shards" / "shard-00002.parquet").unlink()
    with pytest.raises(Exception, match="shard-00002.parquet: shard listed in index.json is missing"):
        read_index(tmp_path / "shards")


def test_stream_batches_by_seconds_disjoint_per_rank_and_resumable(tmp_path):
    from pipeline.training.shards import write_shards
    from pipeline.training.stream import ShardStream, StreamOptions

    path, _ = _manifest(tmp_path, 200)
    index = write_shards(path, tmp_path / "shards", rows_per_shard=25)  # 8 shards
    options = StreamOptions(batch_seconds=20.0, max_items=6, pool_rows=64)
    ranks = [ShardStream(index, 3, options, world_size=2, rank=r) for r in (0, 1)]
    seen = []
    for stream in ranks:
        batches = stream.iterate(0)
        ids, epoch0 = [], []
        while True:
            epoch, batch = next(batches)
            if epoch == 1:
                break
            epoch0.append(batch)
            ids += [r["id"] for r in batch]
        assert len(ids) == len(set(ids)) == 100  # each row of this rank's 4 shards once per epoch
        assert all(sum(r["duration"] for r in b) <= 20.0 and len(b) <= 6 for b in epoch0)
        seen.append(set(ids))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 200  # disjoint shards per rank
    straight = ranks[0].iterate(0)
    full = [next(straight) for _ in range(40)]  # past the first epoch
    resumed = ShardStream(index, 3, options, world_size=2, rank=0).iterate(27)
    assert [next(resumed) for _ in range(13)] == full[27:]
    other_seed = ShardStream(index, 4, options, world_size=2, rank=0).iterate(0)
    assert [next(other_seed) for _ in range(5)] != full[:5]
    # two readers in one process alternate: micro-batch 2k is reader 0's k-th batch, 2k+1 reader 1's
    both = ShardStream(index, 3, StreamOptions(20.0, 6, readers=2, pool_rows=64)).iterate(0)
    one = [next(both) for _ in range(10)]
    rank1 = ranks[1].iterate(0)
    assert one[0::2] == full[:5] and one[1::2] == [next(rank1) for _ in range(5)]


STREAMING = {"streaming": True, "rows_per_shard": 2, "stream_batch_seconds": 3.0, "stream_max_items": 4,
             "stream_pool_rows": 4, "adapt": "decoder", "dev_manifest": "", "lora_dropout": 0.0,
             "export_best": False, "merge": False, "warmup_steps": 1}  # fmt: skip


def test_streamed_training_resumes_exactly(tiny_whisper_dir, corpus, tmp_path):  # noqa: F811
    import numpy as np
    from test_train import adapter_tensors, make_config

    from pipeline.training.trainer import Trainer

    settings = {**STREAMING, "max_steps": 6, "save_steps": 3, "keep_checkpoints": 1, "lora_dropout": 0.1}
    straight = Trainer(make_config(tmp_path / "a", corpus, **settings), tiny_whisper_dir, progress=False)
    assert straight.data.stream is not None and straight.data.items == []
    summary = straight.train()
    assert summary["train_sources"]["shards"] == {"items": 8, "hours": 0.002, "streamed": True,
                                                  "manifests": [str(corpus["train"])]}
    assert "streaming: encoded on the fly" in summary["encoder_cache_plan"] and summary["encoder_cache"] is None
    assert summary["streamed_rows_read"] >= 8 and summary["samples"] >= 6  # batches of <= 3 s: 2-4 clips

    class Killed(Exception):
        pass

    def kill_at_4(step: int) -> None:
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        Trainer(make_config(tmp_path / "b", corpus, **settings), tiny_whisper_dir, progress=False,
                on_step_end=kill_at_4).train()  # fmt: skip
    resumed = make_config(tmp_path / "b", corpus, resume=True, **settings)
    assert Trainer(resumed, tiny_whisper_dir, progress=False).train()["steps"] == 6
    a = adapter_tensors(tmp_path / "a" / "work" / "train" / "adapter")
    b = adapter_tensors(tmp_path / "b" / "work" / "train" / "adapter")
    assert any(float(t.abs().max()) > 0 for k, t in a.items() if "lora_B" in k)
    for key in a:
        assert np.allclose(a[key].numpy(), b[key].numpy(), atol=1e-6), key


def test_streamed_batches_draw_replay_and_take_extra_manifests(tiny_whisper_dir, corpus, tmp_path):  # noqa: F811
    from collections import Counter

    from test_train import make_config

    from pipeline.training.inputs import StreamBatches
    from pipeline.training.trainer import Trainer

    config = make_config(tmp_path, corpus, **STREAMING, extra_train_manifests=[str(corpus["dev"])],
                         replay_manifest=str(corpus["dev"]), replay_ratio=0.5)  # fmt: skip
    trainer = Trainer(config, tiny_whisper_dir, progress=False)
    shards = trainer.data.sources["shards"]
    assert shards["items"] == 12 and shards["manifests"] == [str(corpus["train"]), str(corpus["dev"])]
    assert trainer.data.sources[str(corpus["dev"])]["share"] == 0.5 and trainer.data.n_replay == 4
    batches = iter(StreamBatches(trainer.data, 0))
    first = [next(batches) for _ in range(40)]
    sources = Counter(entry.item.source for batch in first for entry in batch)
    assert 0.7 < sources["replay"] / sources["train"] < 1.3, sources  # half of all items, as configured
    again = iter(StreamBatches(trainer.data, 25))  # a resumed run draws the same replay items
    assert [[e.item.id for e in b] for b in (next(again) for _ in range(15))] == [
        [e.item.id for e in b] for b in first[25:]
    ]
    auto = make_config(tmp_path, corpus, **{**STREAMING, "streaming": "auto"})  # 0.002 h < 100 h: in memory
    assert Trainer(auto, tiny_whisper_dir, progress=False).data.stream is None


@pytest.mark.slow
def test_two_processes_streaming_disjoint_shards_equal_one_process_with_the_same_global_batch(
    tiny_whisper_dir, corpus, tmp_path  # noqa: F811
):
    """2 processes (one reader each, disjoint shards) against 1 process with both readers and 2 accumulated
    micro-batches: the same global batch at every step, so the same weights."""
    import os
    import subprocess
    import sys

    import numpy as np
    from test_train import DDP_SCRIPT, REPO, adapter_tensors, make_config

    from pipeline.training.trainer import Trainer
    from pipeline.typed_yaml import config_to_dict

    settings = {**STREAMING, "max_steps": 3, "stream_readers": 2, "rows_per_shard": 2}
    single = make_config(tmp_path / "one", corpus, gradient_accumulation_steps=2, **settings)
    Trainer(single, tiny_whisper_dir, progress=False).train()
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT + 'open(f"{out}/readers{rank}.json", "w").write(json.dumps(trainer.data.stream.readers))\n',
                      encoding="utf-8")  # fmt: skip
    config = make_config(tmp_path / "two", corpus, **settings)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(script), json.dumps(config_to_dict(config)), str(tiny_whisper_dir), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text()  # DDP kept them equal
    assert [json.loads((tmp_path / f"readers{r}.json").read_text()) for r in (0, 1)] == [[0], [1]]  # disjoint
    one = adapter_tensors(tmp_path / "one" / "work" / "train" / "adapter")
    two = adapter_tensors(tmp_path / "two" / "work" / "train" / "adapter")
    assert any(float(t.abs().max()) > 0 for k, t in one.items() if "lora_B" in k)
    for key in one:
        assert np.allclose(one[key].numpy(), two[key].numpy(), atol=1e-5), key


def test_qlora_is_gpu_only_and_attention_is_chosen(tiny_whisper_dir):
    import torch

    from pipeline.config import config_from_dict
    from pipeline.errors import ConfigError
    from pipeline.train_config import TrainConfig
    from pipeline.training.model_setup import setup_model

    with pytest.raises(ConfigError, match="train.quantize: 4bit .QLoRA. trains LoRA adapters only"):
        config_from_dict({"name": "q", "train": {"quantize": "4bit", "mode": "full"}})
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match=r"train.quantize=4bit \(QLoRA\) needs a CUDA GPU"):
            setup_model(tiny_whisper_dir, TrainConfig(quantize="4bit"))
    eager = setup_model(tiny_whisper_dir, TrainConfig(attention="eager"))
    sdpa = setup_model(tiny_whisper_dir, TrainConfig())
    assert eager.whisper.config._attn_implementation == "eager"
    assert sdpa.whisper.config._attn_implementation == "sdpa"
    features = torch.randn(1, 80, 3000)
    labels = torch.tensor([[50257, 400, 500, 50256]])
    with torch.no_grad():
        a = eager.whisper(input_features=features, labels=labels).loss
        b = sdpa.whisper(input_features=features, labels=labels).loss
    assert float(a) == pytest.approx(float(b), rel=1e-4)  # the same model, another attention kernel


def test_the_multi_node_accelerate_config_is_accelerates():
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "multi_node.yaml"
    cluster = ClusterConfig.from_yaml_file(str(path))
    assert cluster.num_processes == 16 and cluster.num_machines == 2 and cluster.mixed_precision == "bf16"


def test_a_random_multilingual_size_trains_one_step(tmp_path, capsys):
    """`dictune model random` builds a model that loads, speaks base's tokenizer and trains (tiny shape)."""
    import torch

    from pipeline.cli import main
    from pipeline.train_config import TrainConfig
    from pipeline.training.loss import WhisperSeq2SeqLoss
    from pipeline.training.model_setup import setup_model

    out = tmp_path / "tiny"
    assert main(["model", "random", "tiny", "--out", str(out)]) == 0
    assert main(["model", "random", "tiny", "--out", str(out)]) == 2  # not empty: --force needed
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    bundle = setup_model(out, TrainConfig(adapt="both"))
    assert bundle.is_multilingual and bundle.total_params > 37_000_000
    assert bundle.processor.tokenizer.convert_tokens_to_ids("<|en|>") == 50259
    loss_module = WhisperSeq2SeqLoss(bundle.model, bundle.whisper, bundle.encoder_trainable)
    labels = torch.tensor([bundle.processor.tokenizer(" No pneumothorax.").input_ids[1:]])
    loss = loss_module(labels=labels, input_features=torch.randn(1, 80, 3000))
    loss.backward()
    assert all(p.grad is not None for p in loss_module.parameters() if p.requires_grad)


def test_a_random_model_without_its_weights_is_refilled_with_the_same_tensors(tmp_path):
    """The GPU check carries a random model's small files only; the refill rebuilds the seeded weights."""
    from safetensors.torch import load_file

    from pipeline.errors import DictuneError
    from pipeline.models.shapes import random_model, refill_weights

    out = random_model("tiny.en", tmp_path / "tiny.en", seed=3)
    before = load_file(out / "model.safetensors")
    assert not refill_weights(out, seed=3)  # it has weights: left alone
    (out / "model.safetensors").unlink()
    assert refill_weights(out, seed=3)
    after = load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(torch_equal(before[k], after[k]) for k in before)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp left
    (out / "model.safetensors").unlink()
    assert refill_weights(out, seed=4)
    key = "model.encoder.conv1.weight"
    assert not torch_equal(load_file(out / "model.safetensors")[key], before[key])
    with pytest.raises(DictuneError, match="no config.json"):
        refill_weights(tmp_path)


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
