"""The unseen-term rule of the demo corpus: no held-out term in any training text, spread, deterministic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from pipeline.config import load_config
from pipeline.lexicon import Lexicon, load_lexicon
from pipeline.text import to_spoken
from pipeline.tts.corpus import Passage, read_corpus, split_sentences
from pipeline.tts.heldout import choose_held_out, passage_terms
from pipeline.tts.plan import make_plan

DEMO = "configs/radiology_demo.yaml"
TRAINING_SPLITS = ("train", "dev", "general_dev")


@pytest.fixture(scope="module")
def demo():
    config = load_config(DEMO)
    corpus = read_corpus(config.synthesize.corpus_dir)
    lexicon = load_lexicon(config.lexicon)
    s = config.synthesize
    held = choose_held_out(corpus.sentences, lexicon, s.unseen_term_share, s.unseen_max_sentences, config.seed)
    plan = make_plan(corpus, s, config.seed, to_spoken, lambda text: bool(passage_terms(lexicon, text) & held.unseen))
    return config, corpus, lexicon, held, plan


def test_no_unseen_term_in_any_training_text_of_the_demo_plan(demo):
    _, _, lexicon, held, plan = demo
    training = [i for i in plan if i.split in TRAINING_SPLITS or i.split_use == "train"]
    assert training
    for item in training:
        texts = split_sentences(item.passage.text) if item.split == "long" else [item.passage.text]
        for text in texts:
            assert not passage_terms(lexicon, text) & held.unseen, item.id
    unseen_items = [i for i in plan if i.split == "test_unseen"]
    assert unseen_items and all(passage_terms(lexicon, i.passage.text) & held.unseen for i in unseen_items)
    covered = set().union(*(passage_terms(lexicon, i.passage.text) for i in unseen_items)) & held.unseen
    assert len(covered) >= 0.8 * len(held.unseen), "the test_unseen subset covers most unseen terms"


def test_the_rule_holds_out_the_configured_share_spread_over_modalities(demo):
    config, corpus, lexicon, held, _ = demo
    share = config.synthesize.unseen_term_share
    assert share * held.corpus_terms <= len(held.unseen) <= (share + 0.05) * held.corpus_terms
    assert set(held.chosen) <= held.unseen
    modality = {p.id: p.modality for p in corpus.sentences}
    modalities = Counter(modality[s] for s in held.sentences)
    assert len(modalities) == 6 and min(modalities.values()) >= 5
    assert len(lexicon) >= len(held.unseen)  # the lexicon keeps them


def test_a_term_in_more_sentences_than_the_cap_is_never_chosen():
    sentences = [Passage(f"s{i}", text, "sentence", "x", i, m) for i, (text, m) in enumerate([
        ("pleural effusion", "cxr"), ("pleural effusion again", "cxr"), ("pleural effusion here", "cxr"),
        ("hydronephrosis", "us"), ("echogenic kidney", "us"), ("small pneumothorax", "cxr")])]  # fmt: skip
    lexicon = Lexicon(["pleural effusion", "hydronephrosis", "echogenic", "pneumothorax"])
    held = choose_held_out(sentences, lexicon, share=0.5, max_sentences=2, seed=1)
    assert "pleural effusion" not in held.chosen and len(held.unseen) == 2
    assert held.sentences == {s.id for s in sentences if passage_terms(lexicon, s.text) & held.unseen}


def test_the_choice_does_not_depend_on_python_hash_seeds():
    script = ("import json; from pipeline.config import load_config; from pipeline.lexicon import load_lexicon; "
              "from pipeline.tts.corpus import read_corpus; from pipeline.tts.heldout import choose_held_out; "
              f"c = load_config({DEMO!r}); s = c.synthesize; "
              "h = choose_held_out(read_corpus(s.corpus_dir).sentences, load_lexicon(c.lexicon), s.unseen_term_share, "
              "s.unseen_max_sentences, c.seed); print(json.dumps(sorted(h.unseen)))")  # fmt: skip
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
        for seed in (1, 2, 3)
    }
    assert len(outputs) == 1 and json.loads(outputs.pop())
