"""Decoder context: one token code for training and inference, retrieval ranking, training contexts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import TranscribeConfig
from pipeline.context import TermRetriever, fit_terms, prompt_ids, terms_text
from pipeline.lexicon import Lexicon
from pipeline.training.data import Collator, TrainItem
from pipeline.training.prompts import ContextOptions, TrainingContexts

LEXICON = Lexicon([
    "pleural effusion", "pleural", "bibasilar atelectasis", "atelectasis", "hydronephrosis", "echogenic",
    "infiltrate", "bullae", "pneumothorax", "cholelithiasis", "spondylolisthesis", "meningioma",
])  # fmt: skip


@pytest.fixture(scope="module")
def processor(tiny_whisper_dir):
    from pipeline.inference.hf import load_processor

    return load_processor(tiny_whisper_dir)


def test_training_and_both_engines_give_the_same_context_tokens(processor, tiny_whisper_dir):
    from faster_whisper.tokenizer import Tokenizer
    from tokenizers import Tokenizer as HfTokenizers

    text = terms_text(["pleural effusion", "bibasilar atelectasis", "L4-L5"])
    expected = list(processor.get_prompt_ids(text))  # what HfEngine / Transcriber give generate()
    assert prompt_ids(processor.tokenizer, text) == expected  # what training puts in the slot
    fast = HfTokenizers.from_file(str(tiny_whisper_dir / "tokenizer.json"))
    ct2 = Tokenizer(fast, multilingual=False, task="transcribe", language=None)
    assert [ct2.sot_prev, *ct2.encode(" " + text)] == expected  # what Ct2Engine.prompt_tokens gives


@pytest.mark.parametrize(
    "hypothesis, expected",
    [
        ("by bezel or eight lictasis without plural effusion", ["pleural effusion", "bibasilar atelectasis"]),
        ("patchy infal trait at the right base", ["infiltrate"]),
        ("no hydro nephrosis the kidneys are echo genic", ["hydronephrosis", "echogenic"]),
        ("small new mothorax on the left", ["pneumothorax"]),
        ("coli lithiasis without cholecystitis", ["cholelithiasis"]),
    ],
)
def test_retrieval_finds_the_term_a_sound_alike_hypothesis_means(hypothesis, expected):
    ranked = [r.term for r in TermRetriever(LEXICON, min_score=70).rank(hypothesis)]
    for term in expected:
        assert term in ranked[:4], (term, ranked)


def test_retrieval_of_plain_english_finds_nothing_and_ranks_by_score():
    retriever = TermRetriever(LEXICON, min_score=75)
    assert retriever.rank("we walked along the river to buy bread and apples") == []
    ranked = retriever.rank("no plural effusion")
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert ranked[0].term in ("pleural effusion", "pleural")


def test_fit_terms_keeps_whole_terms_within_the_budget():
    count = len  # one "token" per character: easy to check
    text, used = fit_terms(count, ["aaa", "bbbb", "cc"], 10)
    assert (text, used) == ("aaa, bbbb", 2) and count(text) <= 10
    assert fit_terms(count, ["toolongterm"], 5) == ("", 0)


def _item(n, text_norm, text="", parent=None, order=None, modality="chest", source="train"):
    return TrainItem(f"i{n}", None, 1.0, (50362, 11, 50256), text_norm, source, text or text_norm, parent, order,
                     modality)  # fmt: skip


def test_training_contexts_follow_the_configured_shares_and_are_deterministic(processor):
    items = [_item(n, "no pleural effusion", parent="rep" if n < 4 else None, order=n if n < 4 else None)
             for n in range(40)]  # fmt: skip
    options = ContextOptions(terms_share=0.5, previous_share=0.25, distractors=(2, 4), keep_own=1.0)
    contexts = TrainingContexts(items, LEXICON, processor.tokenizer, options, seed=3, max_total_tokens=448)
    texts = [contexts.text(n, epoch) for n in range(40) for epoch in range(10)]
    kinds = ["none" if t is None else "terms" if "pleural effusion" in t.split(", ") else "previous" for t in texts]
    shares = {k: kinds.count(k) / len(kinds) for k in ("terms", "previous", "none")}
    assert shares["terms"] == pytest.approx(0.5, abs=0.08)
    assert shares["previous"] == pytest.approx(0.25, abs=0.08)
    assert texts == [contexts.text(n, epoch) for n in range(40) for epoch in range(10)]  # same draw again
    assert contexts._previous_index == {1: 0, 2: 1, 3: 2}  # cut pieces see the piece before them


def test_training_context_ids_respect_the_budget_and_the_decoder_room(processor):
    items = [_item(0, "pleural effusion"), _item(1, "x")]
    options = ContextOptions(terms_share=1.0, previous_share=0.0, distractors=(10, 10), max_tokens=12)
    contexts = TrainingContexts(items, LEXICON, processor.tokenizer, options, seed=1, max_total_tokens=448)
    ids = contexts.ids(0, 0, labels=3)
    start = processor.tokenizer.convert_tokens_to_ids("<|startofprev|>")
    assert ids[0] == start and len(ids) == 12
    assert contexts.ids(0, 0, labels=446) == []  # no room left before the decoder's end


def test_collator_masks_the_context_and_feeds_it_as_inference_does():
    sot, prev, pad = 50257, 50360, 50256
    rows = [{"index": 0, "labels": (50362, 11, 12, pad), "prompt": [prev, 7, 8], "encoder_hidden_states": _h()},
            {"index": 1, "labels": (50362, 21, pad), "prompt": [], "encoder_hidden_states": _h()}]  # fmt: skip
    batch = Collator(None, decoder_start_id=sot, pad_id=pad)(rows)
    assert batch["decoder_input_ids"].tolist() == [[prev, 7, 8, sot, 50362, 11, 12], [sot, 50362, 21, pad, pad, pad, pad]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 50362, 11, 12, pad], [50362, 21, pad, -100, -100, -100, -100]]
    plain = Collator(None, decoder_start_id=sot, pad_id=pad)([{**r, "prompt": []} for r in rows])
    assert "decoder_input_ids" not in plain  # the model shifts the labels itself


def _h():
    import torch

    return torch.zeros(2, 4)


def test_loss_with_explicit_decoder_inputs_equals_the_shifted_labels_path(tiny_whisper_dir):
    import torch
    from transformers import WhisperForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import shift_tokens_right

    from pipeline.training.loss import WhisperSeq2SeqLoss

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    loss = WhisperSeq2SeqLoss(model, model, encoder_trainable=False)
    states = torch.randn(2, 10, model.config.d_model)
    labels = torch.tensor([[50362, 11, 12, 50256], [50362, 21, 50256, -100]])
    shifted = shift_tokens_right(labels, model.config.pad_token_id, model.config.decoder_start_token_id)
    with torch.no_grad():
        a = loss(labels, encoder_hidden_states=states)
        b = loss(labels, encoder_hidden_states=states, decoder_input_ids=shifted)
        reference = model(encoder_outputs=(states,), labels=labels).loss
    assert float(a) == pytest.approx(float(b), abs=1e-6)
    assert float(a) == pytest.approx(float(reference), abs=1e-5)


def test_ct2_engine_batches_contexts_of_different_lengths(tiny_whisper_dir):
    """CTranslate2 needs the start token at one position per batch: rows are grouped by context length and
    the result equals decoding each chunk alone."""
    from pipeline.inference.engines import load_engine

    engine = load_engine(str(tiny_whisper_dir), None, TranscribeConfig(engine="ct2", threads=1, max_new_tokens=6,
                                                                     compute_type="float32"))  # fmt: skip
    rng = np.random.default_rng(0)
    chunks = [0.01 * rng.standard_normal(16000 * (k + 1)).astype(np.float32) for k in range(4)]
    prompts = [None, "pleural effusion", "hydronephrosis, echogenic, bullae", "pleural effusion"]
    together = engine.decode_chunks(chunks, prompts)
    alone = [engine.decode_chunks([c], [p])[0] for c, p in zip(chunks, prompts)]
    assert together == alone


def test_inference_context_static_text_keeps_its_end_in_half_the_budget_and_terms_fill_the_rest(tmp_path):
    from pipeline.config import ContextConfig
    from pipeline.context import InferenceContext

    (tmp_path / "prior.txt").write_text("Old report. " * 3 + "Stable right lower lobe nodule.")
    (tmp_path / "terms.txt").write_text("# chest\npleural effusion\nnodule\natelectasis\n")
    options = ContextConfig(mode="static", terms_file=str(tmp_path / "terms.txt"), text_file=str(tmp_path / "prior.txt"))
    ctx = InferenceContext(options, None, lambda text: ["<prev>", *text.split()], max_tokens=10)
    (tmp_path / "terms.txt").write_text("# chest\npleural effusion\nnodule\natelectasis\nbronchiectasis\n")
    ctx = InferenceContext(options, None, lambda text: ["<prev>", *text.split()], max_tokens=10)
    assert ctx.static == "right lower lobe nodule. pleural effusion, nodule, atelectasis"  # text: half the budget
    assert len(ctx.static.split()) + 1 <= 10 and ctx.static_terms == ["pleural effusion", "nodule", "atelectasis"]
