"""Crash-safe file writes: every file in a run directory is written whole or not at all.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX), so a run killed at any point never leaves a
half-written artefact for the resume logic to trust.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    For writers that take a path (safetensors, numpy, faiss); the target appears whole or not
    at all, and a failed write leaves no temporary file behind. The file gets the mode a plain
    ``open()`` would give it (0o666 less the umask): ``mkstemp`` creates its file 0o600, which
    would make every artefact of a shared run folder unreadable to the rest of the team.

    It writes whenever it is called: under ``accelerate launch`` the caller decides which
    process writes (``aptune.distributed.is_main``), as the run directory, the evaluation step and
    the trainer do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, new_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_folder_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary folder beside ``path``, then rename it to ``path``.

    For ``save_pretrained``-style writers that fill a folder: a killed write leaves no half
    folder under the final name. ``path`` must not exist yet. The folder gets the mode
    ``mkdir`` would give it (``mkdtemp`` makes it 0o700).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        write(tmp)
        os.chmod(tmp, new_mode(folder=True))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def new_mode(folder: bool = False) -> int:
    """The mode a plain ``open()`` (or ``mkdir``) gives a new file (folder) under the umask.

    Reading the umask means setting it, so it is set straight back.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return write_atomic(path, write)


def write_figure_atomic(path: str | Path, figure: Any) -> Path:
    """A matplotlib figure as PNG, whole or not at all; the figure is closed afterwards (pyplot
    keeps every figure it made alive until then)."""
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    finally:
        plt.close(figure)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    return write_text_atomic(path, text)


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file we wrote; a bad line names the file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    return rows
