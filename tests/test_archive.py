"""A report archive as text: folder, JSONL, CSV; every bad item is a reject or a one-line error."""

import json

import pytest

from pipeline.archive import read_archive
from pipeline.errors import DictuneError


def test_folder_jsonl_and_csv_give_the_same_reports(tmp_path):
    texts = ["No pleural effusion.", "Mild bibasilar atelectasis.\nNo pneumothorax."]
    folder = tmp_path / "reports"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"r{i}.txt").write_text(text, encoding="utf-8")
    jsonl = tmp_path / "reports.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"r{i}", "findings": t}) + "\n" for i, t in enumerate(texts)))
    csv_file = tmp_path / "reports.csv"
    csv_file.write_text('id,report\nr0,No pleural effusion.\nr1,"Mild bibasilar atelectasis.\nNo pneumothorax."\n')
    for path, fields in ((folder, ("text",)), (jsonl, ("findings",)), (csv_file, ("report",))):
        reports, rejects = read_archive(path, fields)
        assert [r.id for r in reports] == ["r0", "r1"] and rejects == []
        assert [r.text for r in reports] == ["No pleural effusion.", "Mild bibasilar atelectasis. No pneumothorax."]


def test_several_fields_are_joined_and_a_line_with_none_of_them_is_rejected(tmp_path):
    path = tmp_path / "a.jsonl"
    rows = [{"id": "a", "findings": "Small nodule.", "impression": "Follow up."}, {"id": "b", "body": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n[1, 2]\n{bad json\n")
    reports, rejects = read_archive(path, ("findings", "impression"))
    assert [(r.id, r.text) for r in reports] == [("a", "Small nodule. Follow up.")]
    assert [(r.line, r.id) for r in rejects] == [(2, "b"), (4, None), (5, None)]
    assert "no field findings / impression" in rejects[0].reason and "not a JSON object" in rejects[1].reason


def test_bad_files_in_a_folder_are_rejects_with_reasons_and_good_ones_are_kept(tmp_path):
    (tmp_path / "good.txt").write_text("Hepatic steatosis.")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait spots.".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "huge.txt").write_text("word " * 1_000_000)  # 5 MB on one line
    reports, rejects = read_archive(tmp_path)
    assert [r.id for r in reports] == ["good"]
    reasons = {r.id: r.reason for r in rejects}
    assert set(reasons) == {"binary", "latin1", "empty", "huge"}
    assert "binary" in reasons["binary"] and "UTF-8" in reasons["latin1"] and reasons["empty"] == "empty report"
    assert "5,000,000 characters" in reasons["huge"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no .txt report"),
        (lambda p: p / "missing.jsonl", "archive not found"),
        (lambda p: (p / "a.csv").write_text("id,body\n1,x\n") and p / "a.csv", "no column text (columns: id, body)"),
        (lambda p: (p / "a.jsonl").write_text("\n\n") and p / "a.jsonl", "holds no usable report (0 rejected)"),
        (lambda p: (p / "a.jsonl").write_bytes(b"\xff\xfe\x00\x01\n") and p / "a.jsonl", "first reject"),
        (lambda p: (p / "a.pdf").write_bytes(b"%PDF") and p / "a.pdf", "unknown archive format .pdf"),
    ],
)
def test_unusable_archives_stop_with_one_line_naming_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DictuneError) as error:
        read_archive(path)
    assert str(path) in str(error.value) and message in str(error.value) and "\n" not in str(error.value)
