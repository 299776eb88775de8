"""Run model-written code against its tests in a separate, limited process.

Code a model wrote is never executed in the aptune process. Each program runs in a fresh
``python -I -S`` child process, in a throwaway folder, with:

- an empty environment (nothing of the host's variables, tokens or paths is visible);
- resource limits set by the child on itself before the candidate runs: address space
  (``memory_mb``), CPU seconds, the size of any file it writes (so huge output stops), open files,
  no core dumps;
- a wall-clock timeout, after which the child's whole process group is killed;
- an audit hook (``sys.addaudithook``, which code in the child cannot remove) that refuses
  starting processes (``os.system``, ``subprocess``, ``fork``, ``exec``, ``spawn``), sockets,
  ``ctypes``, signals to other processes, changing directory, writing, deleting or renaming
  anything outside the throwaway folder, and reading files outside it and Python's own library;
- stdout and stderr to files in the folder, of which only the first ``OUTPUT_BYTES`` are read.

This is a guard against the mistakes and accidents of generated code (an infinite loop, a fork
bomb, a stray ``rm``), not a security boundary against a determined attacker: CPython's audit
hooks can be sidestepped by code that works hard enough at it. Untrusted code from an adversary
belongs in a container or VM; run aptune inside one for that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: bytes of stdout/stderr kept from a run
OUTPUT_BYTES = 8192
#: the exit code the child uses when the audit hook refused an operation
BLOCKED_EXIT = 97

Status = Literal["passed", "failed", "timeout", "blocked", "error"]


@dataclass(frozen=True)
class SandboxLimits:
    """How much a program may use."""

    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # the largest file it may write (its output included)
    open_files: int = 64


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    detail: str  # the reason, or the last line of the error output
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# The child's first code: limits, the audit hook, then the candidate program. It runs with -I -S
# (no site, no user paths, no PYTHON* variables) in the throwaway folder.
_PRELUDE = r'''
import os, resource, sys
sys.dont_write_bytecode = True
LIMITS = {limits!r}
for name, value in (("RLIMIT_AS", LIMITS["memory"]), ("RLIMIT_CPU", LIMITS["cpu"]), ("RLIMIT_FSIZE", LIMITS["file"]),
                    ("RLIMIT_NOFILE", LIMITS["files"]), ("RLIMIT_CORE", 0)):
    resource.setrlimit(getattr(resource, name), (value, value))
HERE = os.path.realpath(os.getcwd())
READABLE = tuple({{os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}}) + (HERE,)
BLOCKED = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
           "os.kill", "os.killpg", "os.chdir", "os.fchdir", "ctypes.", "socket.", "gc.get_referrers", "gc.get_objects",
           "sys._current_frames", "os.chroot", "pty.")
PATH_EVENTS = ("os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.symlink", "os.link",
               "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile")
LIST_EVENTS = ("os.listdir", "os.scandir")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _inside(path, roots):
    try:
        real = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "")
    except Exception:
        return False
    return any(real == r or real.startswith(r + os.sep) for r in roots)

def _refuse(what):
    os.write(2, ("blocked: " + what + "\n").encode())
    os._exit({blocked})

def _hook(event, args):
    if event.startswith(BLOCKED) or event in BLOCKED:
        _refuse(event)
    if event == "import" and str(args[0]).split(".")[0] in ("ctypes", "_ctypes", "multiprocessing", "_posixsubprocess"):
        _refuse("import " + str(args[0]))
    if event == "object.__setattr__" and len(args) > 1 and args[1] in ("__code__", "__globals__"):
        _refuse("rewriting a function")
    if event in PATH_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        if any(not _inside(p, (HERE,)) for p in paths):
            _refuse(event + " outside the working folder")
    if event in LIST_EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)) and not _inside(args[0], READABLE):
        _refuse(event + " " + os.fsdecode(args[0]))
    if event == "open" and args and not isinstance(args[0], int):
        path, mode, flags = args[0], args[1], args[2]
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
        if writing and not _inside(path, (HERE,)):
            _refuse("writing " + os.fsdecode(path))
        if not writing and not _inside(path, READABLE) and os.fsdecode(path) not in ("/dev/null", "/dev/urandom"):
            _refuse("reading " + os.fsdecode(path))

sys.addaudithook(_hook)
del _hook
with open("program.py", encoding="utf-8") as f:
    source = f.read()
exec(compile(source, "program.py", "exec"), {{"__name__": "__main__"}})
'''


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run ``source`` (a whole Python program: candidate code and its tests) in a limited child
    process; ``passed`` when it exits 0 within the limits."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aptune-sandbox-") as folder:
        work = Path(folder)
        (work / "program.py").write_text(source, encoding="utf-8")
        prelude = _PRELUDE.format(limits={"memory": limits.memory_mb * 2**20, "cpu": limits.cpu_s,
                                          "file": limits.file_mb * 2**20, "files": limits.open_files},
                                  blocked=BLOCKED_EXIT)
        (work / "prelude.py").write_text(prelude, encoding="utf-8")
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "prelude.py"], cwd=work, env={},
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            try:
                code = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return SandboxResult("timeout", f"timed out after {limits.timeout_s:g} s", time.perf_counter() - started)
            finally:
                _kill_group(proc)  # anything it left behind in its session
        stderr = _head(work / "stderr")
    seconds = time.perf_counter() - started
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if code == 0:
        return SandboxResult("passed", "exit 0", seconds)
    if code == BLOCKED_EXIT and last.startswith("blocked: "):
        return SandboxResult("blocked", last, seconds)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        reason = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGKILL": "killed"}.get(name, name)
        return SandboxResult("error", f"stopped by {name} ({reason})", seconds)
    return SandboxResult("failed", last[:300] or f"exit {code}", seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's process group (its session), ignoring one already gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
        pass


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(OUTPUT_BYTES).decode("utf-8", errors="replace")
