"""Mining a domain lexicon from report text (pipeline/lexicon_build.py, `dictune lexicon build`)."""

import json

from pipeline.cli import main
from pipeline.lexicon import load_lexicon
from pipeline.lexicon_build import BuildOptions, mine_terms

REPORTS = [
    "Mild bibasilar atelectasis. No pleural effusion or pneumothorax.",
    "Small left pleural effusion with bibasilar atelectasis.",
    "The heart is normal in size. No pneumothorax. Small pleural effusion on the right.",
    "Bibasilar atelectasis, improved. The lungs are otherwise clear, the heart is normal.",
    "A 5 mm noncalcified nodule. A 6 mm noncalcified nodule in the right lower lobe.",
]


def test_domain_words_rank_above_common_words_and_common_english_is_left_out():
    mined = mine_terms(REPORTS)
    words = [t.term for t in mined if t.kind == "word"]
    assert {"atelectasis", "bibasilar", "pneumothorax", "effusion", "pleural", "noncalcified"} <= set(words)
    assert not {"heart", "normal", "small", "lungs", "right", "the"} & set(words)  # Zipf >= 4 in English
    assert words.index("bibasilar") < words.index("effusion")  # rarer in English, as often here
    assert all(t.count >= 2 for t in mined)


def test_phrases_are_cohesive_runs_without_stopwords_numbers_or_units():
    phrases = [t.term for t in mine_terms(REPORTS) if t.kind == "phrase"]
    assert {"bibasilar atelectasis", "pleural effusion", "noncalcified nodule"} <= set(phrases)
    assert not any(w in p.split() for p in phrases for w in ("mm", "5", "or", "the", "no"))


def test_limits_keep_the_best_and_min_count_drops_the_rare():
    mined = mine_terms(REPORTS, BuildOptions(top_words=2, top_phrases=1, min_count=3))
    assert [t.kind for t in mined] == ["word", "word", "phrase"]
    assert all(t.count >= 3 for t in mined) and "noncalcified" not in {t.term for t in mined}


def test_cli_writes_a_lexicon_file_rejects_and_scores_against_a_reference(tmp_path, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, text in enumerate(REPORTS):
        (archive / f"{i}.txt").write_text(text)
    (archive / "scan.txt").write_bytes(b"\x00\x01binary")
    reference = tmp_path / "ref.txt"
    reference.write_text("atelectasis\npleural effusion\ncholelithiasis\nnoncalcified\npneumothorax\n")
    out = tmp_path / "mined.txt"
    assert main(["lexicon", "build", "--archive", str(archive), "--out", str(out), "--reference", str(reference)]) == 0
    scores = json.loads(capsys.readouterr().out)
    # cholelithiasis is not in the archive: recall counts only the reference words the archive has
    assert scores["words"]["reference"] == 3 and scores["words"]["hits"] == 3 and scores["words"]["recall"] == 1.0
    assert scores["phrases"] == {"top": scores["phrases"]["mined"], "mined": scores["phrases"]["mined"],
                                 "reference": 1, "hits": 1, "precision": scores["phrases"]["precision"],
                                 "recall": 1.0}  # fmt: skip
    mined = load_lexicon(out)  # the file is a lexicon dictune reads
    assert "bibasilar atelectasis" in mined and "atelectasis" in mined
    rejects = [json.loads(line) for line in (tmp_path / "mined.txt.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["stage"]) for r in rejects] == [("scan", "lexicon")] and "binary" in rejects[0]["reason"]
