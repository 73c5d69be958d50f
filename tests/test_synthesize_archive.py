"""synthesize.archive: a report archive read by train voices, chosen to cover the lexicon's terms."""

from __future__ import annotations

import json
from collections import Counter

from test_synthesize import fake_engines, synth_config, write_corpus  # noqa: F401 (fixture)

from pipeline.config import ArchiveSynthConfig, config_from_dict
from pipeline.manifest import read_manifest, read_rejects
from pipeline.stages import synthesize as stage
from pipeline.tts.archive import Candidate, select
from pipeline.tts.corpus import Passage, sentence_key
from pipeline.typed_yaml import config_to_dict

ARCHIVE_LINES = [
    "Small hiatal hernia. Dr. XXXX was notified at [** 10:30 **].",
    "Moderate hiatal hernia with pneumobilia. The liver is normal.",
    "Pneumobilia after sphincterotomy. (...).",
    "A large hiatal hernia is again seen. Moderate hiatal hernia with pneumobilia.",
]


def _config(tmp_path, **archive):
    corpus = write_corpus(tmp_path / "corpus")
    lines = [*ARCHIVE_LINES, " ".join((corpus / "sentences.tsv").read_text().splitlines()[1].split("\t")[2:])]
    path = tmp_path / "archive.jsonl"
    path.write_text("".join(json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(lines)))
    (tmp_path / "terms.txt").write_text("nodule\nhiatal hernia\npneumobilia\ncholelithiasis\n")
    cfg = synth_config(tmp_path, train_voices={"flite:slt@1": 1.0, "flite:rms@1.1": 1.0},
                       archive=ArchiveSynthConfig(path=str(path), **archive))  # fmt: skip
    return config_from_dict({"name": "t", "work_dir": str(tmp_path / "work"), "lexicon": str(tmp_path / "terms.txt"),
                             "synthesize": config_to_dict(cfg)})  # fmt: skip


def test_archive_sentences_are_read_by_train_voices_to_cover_missing_terms(tmp_path, fake_engines):  # noqa: F811
    config = _config(tmp_path, repeats=2, voices=2)
    summary = stage.run(config)
    rows = read_manifest(tmp_path / "manifests" / "archive.jsonl")
    assert rows and {r.extra["voice"] for r in rows} <= {"flite:slt@1", "flite:rms@1.1"}  # never a test voice
    texts = Counter(r.text for r in rows)
    spoken = Counter()
    for text, n in texts.items():
        spoken.update({t: text.lower().count(t) * n for t in ("hiatal hernia", "pneumobilia")})
    assert spoken["hiatal hernia"] >= 2 and spoken["pneumobilia"] >= 2
    assert all("XXXX" not in t and "[**" not in t for t in texts)  # the de-identified sentence is never read
    archive = summary["archive"]
    assert archive["renderings"] == len(rows) and archive["reports"] == len(ARCHIVE_LINES) + 1
    assert archive["coverage"]["terms_training_lacks"] == 2  # hiatal hernia, pneumobilia (cholelithiasis: absent)
    assert archive["coverage"]["lacking_covered_before"] == 0 and archive["coverage"]["lacking_covered_after"] == 2
    reasons = [r.reason for r in read_rejects(config.stage_dir("synthesize") / "rejects.jsonl")]
    assert any("de-identification mark" in r for r in reasons) and any("no words to speak" in r for r in reasons)


def test_no_test_sentence_is_ever_read_for_training(tmp_path, fake_engines):  # noqa: F811
    config = _config(tmp_path, repeats=5)
    stage.run(config)
    tests = {sentence_key(r.text) for split in ("test", "test_general", "test_unseen")
             for r in read_manifest(tmp_path / "manifests" / f"{split}.jsonl")}  # fmt: skip
    assert tests
    assert not tests & {sentence_key(r.text) for r in read_manifest(tmp_path / "manifests" / "archive.jsonl")}
    rejects = read_rejects(config.stage_dir("synthesize") / "rejects.jsonl")
    held = [r for r in rejects if "a test sentence" in r.reason]
    assert held and all(r.source.endswith("archive.jsonl") and r.line == len(ARCHIVE_LINES) + 1 for r in held)


def test_selection_takes_the_missing_terms_first_and_stops_at_the_budget():
    def cand(pid: str, terms: tuple[str, ...], seconds: float = 4.0) -> Candidate:
        return Candidate(Passage(pid, pid, "archive", "a.jsonl", 1), terms, seconds)

    pool = [cand("common", ("nodule", "nodule")), cand("rare", ("pneumobilia",)), cand("both", ("nodule", "ascites"))]
    covered = Counter({"nodule": 1})
    cfg = ArchiveSynthConfig(path="a.jsonl", minutes=8 / 60, repeats=2, voices=1, priority_weight=10)
    chosen = select(pool, covered, {"pneumobilia", "ascites"}, cfg)
    assert [c.passage.id for c, _ in chosen] == ["both", "rare"]  # gains 11 and 10; 8 s of budget: two of 4 s
    assert covered == Counter({"nodule": 2, "pneumobilia": 1, "ascites": 1})
    again = select(pool, Counter(), set(), ArchiveSynthConfig(path="a.jsonl", minutes=1, repeats=1, voices=3))
    assert len(again) == 2 and sorted(c.passage.id for c, _ in again) == ["both", "rare"]  # covered once: done


def test_archive_sentences_keep_list_numbers_with_their_sentence_and_reject_with_reasons():
    from pipeline.archive import ArchiveReport
    from pipeline.tts.archive import sentences

    report = ArchiveReport("r/1", "1. Hiatal hernia. 2. Pneumobilia. 2. Pneumobilia. Seen by XXXX. (...).", "a.jsonl", 3)
    kept, rejects = sentences([report], {sentence_key("Old test sentence.")}, max_words=60)
    assert [p.text for p in kept] == ["1. Hiatal hernia.", "2. Pneumobilia."]
    assert kept[0].id.startswith("arc-r_1-") and kept[0].line == 3
    assert [(r.line, r.reason.split(": ", 1)[1]) for r in rejects] == [
        (3, f"repeats sentence {kept[1].id}"),
        (3, "de-identification mark in the sentence (cannot be spoken)"),
        (3, "no words to speak"),
    ]


def test_terms_the_current_model_misses_come_from_dev_transcripts_or_corrections_never_a_test_split(tmp_path):
    import pytest

    from pipeline.config import config_from_dict
    from pipeline.errors import ConfigError
    from pipeline.lexicon import Lexicon
    from pipeline.manifest import write_jsonl
    from pipeline.service.store import CorrectionsStore
    from pipeline.tts.archive import missed_terms

    lexicon = Lexicon(["pleural effusion", "pneumobilia", "ascites"])
    dev = tmp_path / "dev.jsonl"
    write_jsonl(dev, [
        {"id": "a", "ref_norm": "small pleural effusion and ascites", "hyp_norm": "small plural infusion and ascites"},
        {"id": "b", "ref_norm": "pneumobilia", "hyp_norm": "pneumobilia"},
    ])  # fmt: skip
    store = CorrectionsStore(tmp_path / "store")
    store.save("default", b"RIFF....", ".wav", "new new mo bilia", "New pneumobilia.", "tiny.en")
    assert missed_terms([dev], lexicon) == Counter({"pleural effusion": 1})
    assert missed_terms([dev, store.path], lexicon) == Counter({"pleural effusion": 1, "pneumobilia": 1})
    base = {"name": "t", "work_dir": str(tmp_path / "w"), "synthesize": {"archive": {"path": "a.jsonl"}}}
    config_from_dict(base | {"synthesize": {"archive": {"path": "a.jsonl", "missed_from": [str(dev)]}}})
    with pytest.raises(ConfigError) as e:
        config_from_dict(base | {"synthesize": {"archive": {"path": "a.jsonl", "missed_from": ["x/test_unseen.jsonl"]}}})
    assert "synthesize.archive.missed_from" in str(e.value) and "test split" in str(e.value)
    # and the selection takes a missed term first, like a lacking one
    def cand(pid, terms):
        return Candidate(Passage(pid, pid, "archive", "a.jsonl", 1), terms, 4.0)

    pool = [cand("seen", ("ascites",)), cand("missed", ("pleural effusion",))]
    cfg = ArchiveSynthConfig(path="a.jsonl", minutes=4 / 60, repeats=1, voices=1, priority_weight=10)
    chosen = select(pool, Counter(), set(missed_terms([dev], lexicon)), cfg)
    assert [c.passage.id for c, _ in chosen] == ["missed"]
