"""Atomic writes (aptune.io): whole or nothing, and the file mode a plain open() would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aptune.io import (
    write_atomic,
    write_figure_atomic,
    write_folder_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path, umask, mask: int):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    text = write_text_atomic(tmp_path / "a.md", "# report\n")
    data = write_json_atomic(tmp_path / "b.json", {"k": 1})
    blob = write_atomic(tmp_path / "c.bin", lambda p: p.write_bytes(b"\0\1"))
    expected = 0o666 & ~mask
    assert _mode(plain) == expected  # the reference: what open() gives under this umask
    assert [_mode(p) for p in (text, data, blob)] == [expected] * 3


def test_figure_is_a_whole_png_with_the_umask_mode_and_is_closed(tmp_path: Path, umask):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    umask(0o022)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = write_figure_atomic(tmp_path / "plots" / "f.png", fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _mode(path) == 0o644
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in path.parent.iterdir()] == ["f.png"]  # no temporary left behind


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = write_text_atomic(tmp_path / "keep.txt", "old\n")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_folder_appears_whole_with_the_mkdir_mode(tmp_path: Path, umask):
    umask(0o022)

    def fill(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"\0")

    target = write_folder_atomic(tmp_path / "cache" / "tiny", fill)
    assert _mode(target) == 0o755  # mkdtemp alone gives 0o700: a shared cache others cannot read
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in target.parent.iterdir()] == ["tiny"]


def test_killed_folder_write_leaves_no_half_folder(tmp_path: Path):
    def fail(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomic(tmp_path / "tiny", fail)
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_writes_whatever_the_rank_and_the_run_directory_decides(tmp_path, monkeypatch):
    """The caller decides who writes: io writes when called; the run directory writes on the
    main process only (a second process of a launcher leaves the files to it)."""
    import aptune.run.run_dir as run_dir_module
    from aptune.io import write_json_atomic
    from aptune.run.run_dir import RunDir

    monkeypatch.setattr(run_dir_module, "is_main", lambda: False)
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").exists()
    run = RunDir(tmp_path / "run")
    run.start({"name": "x"}, {})
    run.write_rows(1, "pairs", [{"id": "a"}])
    assert not (tmp_path / "run" / "manifest.json").exists() and not run.is_done(1, "pairs")
