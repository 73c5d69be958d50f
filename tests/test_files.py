import os

import pytest

from pipeline.files import atomic_dir, atomic_open, atomic_write_json, sha256_paths


def test_atomic_open_replaces_only_on_success(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"], "no temp file is left behind"
    with atomic_open(path) as handle:
        handle.write("new")
    assert path.read_text() == "new"


def test_atomic_dir_swaps_whole_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists(), "nothing is visible before the rename"
    assert (target / "a").read_text() == "1"
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_hash_of_paths_follows_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    first = sha256_paths([tmp_path / "d"])
    assert sha256_paths([tmp_path / "d"]) == first
    (tmp_path / "d" / "x").write_text("2")
    assert sha256_paths([tmp_path / "d"]) != first
    assert sha256_paths([tmp_path / "missing"]) != sha256_paths([tmp_path / "d"])


def test_atomic_write_json(tmp_path):
    atomic_write_json(tmp_path / "a" / "b.json", {"z": 1, "a": [1, 2]})
    assert (tmp_path / "a" / "b.json").read_text().startswith('{\n  "a"')


def test_artifacts_get_ordinary_permissions(tmp_path):
    atomic_write_json(tmp_path / "f.json", {})
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("1")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
