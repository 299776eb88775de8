"""The Makefile's torch choice: `make setup TORCH=auto|cpu|cuda` (docs/operations.md, "Setup").

What is checked here without installing anything (the install routes themselves need pip and a
network or a local wheel; they were run by hand, see the Makefile's comments):

- a TORCH value that is not a choice stops make with one line naming the choices;
- the choice is recorded in ``$(VENV)/.aptune-torch``, which the setup stamp depends on: an
  explicit TORCH is written (and only rewritten when it changes, so an unchanged choice does
  not re-run the setup), while a plain ``make`` keeps what an earlier ``make setup TORCH=...``
  chose and records ``auto`` only on first setup;
- the torch version the Makefile installs is the one pyproject.toml pins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def make(*args: str, torch_env: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the repository's Makefile with ``args``; TORCH from the environment only if given."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH", "MAKEFLAGS", "MFLAGS")}
    if torch_env is not None:
        env["TORCH"] = torch_env
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def record(venv: Path, *args: str, torch_env: str | None = None) -> str:
    """Make only the choice file in ``venv`` and return its content."""
    proc = make(f"VENV={venv}", str(venv / ".aptune-torch"), *args, torch_env=torch_env)
    assert proc.returncode == 0, proc.stderr
    return (venv / ".aptune-torch").read_text().strip()


def test_unknown_torch_choice_is_one_line_error(tmp_path: Path) -> None:
    proc = make(f"VENV={tmp_path / 'venv'}", "-n", "setup", "TORCH=gpu")
    assert proc.returncode != 0
    assert "TORCH=gpu is not a choice: use TORCH=auto, TORCH=cpu or TORCH=cuda" in proc.stderr
    assert not (tmp_path / "venv").exists()  # stopped before doing anything


def test_choice_is_recorded_kept_and_changed(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    choice = venv / ".aptune-torch"
    assert record(venv) == "auto"  # first setup with the default
    assert record(venv, "TORCH=cpu") == "cpu"  # an explicit choice replaces it
    stamp = choice.stat().st_mtime_ns
    time.sleep(0.02)
    assert record(venv, "TORCH=cpu") == "cpu"
    assert choice.stat().st_mtime_ns == stamp  # unchanged choice: untouched, the setup is not re-run
    assert record(venv) == "cpu"  # a plain `make test` keeps the chosen build
    assert choice.stat().st_mtime_ns == stamp
    assert record(venv, torch_env="cuda") == "cuda"  # TORCH from the environment counts as explicit
    assert record(venv, "TORCH=auto") == "auto"


def test_new_choice_makes_setup_out_of_date(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    choice, stamp = venv / ".aptune-torch", venv / ".aptune-installed"
    choice.write_text("cpu\n")
    stamp.touch()
    now = time.time()
    os.utime(choice, (now - 100, now - 100))
    os.utime(stamp, (now - 50, now - 50))  # the setup ran after the choice was made
    inputs = [ROOT / "pyproject.toml", ROOT / "requirements" / "assets.txt"]
    if any(p.stat().st_mtime > now - 50 for p in inputs):
        pytest.skip("pyproject.toml or requirements/assets.txt changed in the last minute")

    def setup_would_run() -> bool:
        """Run `make setup` for real with a Python that fails at once (PY=false): an up-to-date
        setup does nothing and succeeds; an out-of-date one starts its recipe and stops."""
        proc = make(f"VENV={venv}", f"PY={shutil.which('false')}", "setup")
        assert (proc.returncode == 0) != ("== 1/4 pip" in proc.stdout), proc.stdout + proc.stderr
        return proc.returncode != 0

    assert not setup_would_run()
    assert record(venv, "TORCH=cpu") == "cpu" and not setup_would_run()  # same choice: nothing to do
    assert record(venv, "TORCH=cuda") == "cuda" and setup_would_run()  # a new choice: set up again


def test_makefile_installs_the_pinned_torch() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    installed = re.search(r"^TORCH_VERSION := (\S+)$", makefile, re.M)
    assert pinned and installed and installed.group(1) == pinned.group(1)
