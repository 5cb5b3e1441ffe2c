"""The one atomic-write helper: a reader sees the old file or the whole new one, never a part."""

import os

import pytest

from modelset.atomic import atomic_file, write_text


def test_a_finished_write_replaces_the_target_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "result.json"
    write_text(target, "old")
    with atomic_file(target) as tmp:
        assert os.path.dirname(tmp) == str(target.parent) and target.read_text() == "old"
        with open(tmp, "w") as fh:
            fh.write("new")
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


@pytest.mark.parametrize("where", ["while writing", "just before the rename"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, where):
    target = tmp_path / "result.json"
    write_text(target, "old")

    def fail():
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic_file(target, before_replace=fail if where != "while writing" else None) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            if where == "while writing":
                fail()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
