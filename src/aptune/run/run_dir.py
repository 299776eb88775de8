"""The run directory: the one place that knows a run's file names and round layout.

Every stage reads its inputs and writes its outputs through a :class:`RunDir`; mining, the
methods, the reports and compare never spell a file name themselves. One folder per round;
a stage is finished exactly when its output file exists, because every file is written
atomically::

    RUN/manifest.json              config, versions, seeds, runtime (device, precision), stage status
    RUN/config.yaml                the resolved config this run was started with
    RUN/round-0/eval/metrics.json  the starting model, evaluated once
    RUN/round-N/answers.jsonl      mine:      every pool item, the model's answer, correct?
    RUN/round-N/weakness.jsonl     mine:      the items it got wrong, with its own answer
    RUN/round-N/retrieved.jsonl    retrieve:  similar cases (id, score, for which case)
    RUN/round-N/selected.jsonl     select:    the pool items a method trains on besides its mistakes
    RUN/round-N/pairs.jsonl        pairs:     preference pairs (prompt, chosen, rejected)
    RUN/round-N/sft_items.jsonl    sft_items: supervised items (prompt, response, source)
    RUN/round-N/train/             train:     adapter/, train_metrics.jsonl, train_result.json
    RUN/round-N/eval/metrics.json  eval:      domain, general and dev accuracy after training
    RUN/round-N/decision.json      decide:    accepted or rolled back, and whether to stop
    RUN/cache/                     embedding index cache (retrieval)
    RUN/report.md, report.html, plots/
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aptune.distributed import barrier, is_main
from aptune.io import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic, write_text_atomic

#: A round writes an adapter (~10-50 MB for small models), predictions and an index cache;
#: below this much free space a run would fail part-way, so it is refused up front.
MIN_FREE_BYTES = 512 * 2**20



@dataclass(frozen=True)
class Stage:
    """One resumable step of a round: its name, the file that marks it done, what it does."""

    name: str
    output: str  # relative to the round folder
    summary: str


#: Every stage any method runs, in the order a round runs them. A method picks its subset
#: (``round_stages``); ``eval`` and ``decide`` close every round of every method.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("mine", "weakness.jsonl", "the round's model answers the domain pool; the judge marks its mistakes"),
    Stage("retrieve", "retrieved.jsonl", "similar cases for the weakness cases, from the pool"),
    Stage("select", "selected.jsonl", "the pool items to train on besides the mistakes (dpo-all: all of them)"),
    Stage("pairs", "pairs.jsonl", "preference pairs: gold answer chosen, the model's own wrong answer rejected"),
    Stage("sft_items", "sft_items.jsonl", "the supervised training set: prompt and gold answer"),
    Stage("train", "train/train_result.json", "train the adapter on the round's pairs or items"),
    Stage("eval", "eval/metrics.json", "evaluate the round's model on the domain, general and dev views"),
    Stage("decide", "decision.json", "accept or roll back the round (general-capability gate); stop or go on"),
)}


class RunDirError(ValueError):
    """A run directory that cannot be used (unwritable, or started with another config)."""


@dataclass(frozen=True)
class RunDir:
    root: Path
    # When the current stage began (perf_counter): reset by start(), advanced by mark(), so each
    # stage records its own wall time and a resumed run's stages still add up to its true cost.
    _clock: list[float] = field(default_factory=lambda: [time.perf_counter()], init=False, repr=False, compare=False)

    def round_dir(self, round_index: int) -> Path:
        return self.root / f"round-{round_index}"

    def stage_output(self, round_index: int, stage: str) -> Path:
        """The file whose existence marks ``stage`` of ``round_index`` as finished."""
        return self.round_dir(round_index) / STAGES[stage].output

    def answers(self, round_index: int) -> Path:
        """Every pool item as the mining stage answered it (``weakness.jsonl`` holds the wrong ones)."""
        return self.round_dir(round_index) / "answers.jsonl"

    def train_dir(self, round_index: int) -> Path:
        return self.round_dir(round_index) / "train"

    def eval_dir(self, round_index: int) -> Path:
        return self.round_dir(round_index) / "eval"

    def predictions(self, round_index: int) -> Path:
        return self.eval_dir(round_index) / "predictions.jsonl"

    def train_metrics(self, round_index: int) -> Path:
        """The trainer's per-step log (loss, margin, lr) of a round."""
        return self.train_dir(round_index) / "train_metrics.jsonl"

    @property
    def cache_dir(self) -> Path:
        """Caches a run may rebuild (the retrieval embedding index)."""
        return self.root / "cache"

    @property
    def report_path(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def rounds_on_disk(self) -> list[int]:
        """Round numbers that have a folder, in order (round 0 included)."""
        found = [p.name.removeprefix("round-") for p in self.root.glob("round-*") if p.is_dir()]
        return sorted(int(r) for r in found if r.isdigit())

    def stage_records(self, round_index: int) -> dict[str, dict[str, Any]]:
        """The manifest's record of each finished stage of one round, by stage name."""
        stages = self.manifest().get("stages", {}) if self.manifest_path.exists() else {}
        prefix = f"round-{round_index}/"
        return {k.removeprefix(prefix): v for k, v in stages.items() if k.startswith(prefix)}

    def is_done(self, round_index: int, stage: str) -> bool:
        return self.stage_output(round_index, stage).exists()

    def is_done_everywhere(self, round_index: int, stage: str) -> bool:
        """``is_done``, with every process getting the same answer; every process must call it.

        Under a launcher the main process writes a stage's output. A process that looked a moment
        later than the others could see the file of a stage the main process had just begun and
        skip it, leaving the processes in different collectives (a deadlock, seen with a 0.1 s
        "pairs" stage on a loaded machine). The barrier after the look means no process starts
        the stage, and so writes its output, until all of them have looked."""
        done = self.is_done(round_index, stage)
        barrier()
        return done

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def adapter_dir(self, round_index: int) -> Path:
        return self.train_dir(round_index) / "adapter"

    def check_writable(self) -> None:
        """Fail before any work when the folder cannot be created or written to."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"  # one per process under a launcher
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"{self.root}: run directory is not writable ({exc.strerror or exc})") from None
        free = shutil.disk_usage(self.root).free
        if free < MIN_FREE_BYTES:
            raise RunDirError(
                f"{self.root}: only {free // 2**20} MiB free on this disk; a run needs at least "
                f"{MIN_FREE_BYTES // 2**20} MiB (adapters, predictions, index cache)"
            )

    def start(self, config: dict[str, Any], provenance: dict[str, Any],
              defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create or reopen the run; a rerun must use the same config (resume, not overwrite).

        ``defaults`` is the schema's default config: a key the saved config lacks, set to its
        default now, is a field added to aptune since the run began, not a change, so upgrading
        aptune does not strand runs already under way. Returns the saved values the reopened run
        keeps where a default has changed since it began (``former_defaults``; {} otherwise)."""
        self._clock[0] = time.perf_counter()
        self.check_writable()
        barrier()  # every process sees the folder as it was before the main process writes
        exists = self.manifest_path.exists()
        barrier()
        if exists:
            saved = read_json(self.manifest_path).get("config") or {}
            changed = config_changes(saved, config, defaults or {})
            if changed:
                raise RunDirError(
                    f"{self.manifest_path}: this run was started with a different config "
                    f"(changed: {', '.join(changed)}); use a new output folder"
                )
            return former_defaults(saved, config, defaults or {})
        if is_main():
            write_text_atomic(self.root / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            write_json_atomic(
                self.manifest_path,
                {"config": config, "provenance": provenance, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "stages": {}},
            )
        barrier()  # under a launcher only the main process wrote: the others wait for it
        return {}

    def mark(self, round_index: int, stage: str, *, resumed_s: float = 0.0, **info: Any) -> None:
        """Record a finished stage in the manifest (status only; outputs are the truth), with
        ``seconds``: the wall time since the previous stage ended or the run (re)started (``info``
        may set it, for a stage whose work was done elsewhere), plus ``resumed_s``: work on this
        stage that earlier, interrupted invocations did and this one resumed instead of redoing
        (a training checkpoint's elapsed time), also kept in the record. Without it a stage killed
        after 30 minutes of training and resumed for 5 would record 5.

        Every stage ends here; under a launcher all processes then wait (``barrier``) until the
        main process has written the stage's files, so the next stage reads them everywhere."""
        now = time.perf_counter()
        seconds, self._clock[0] = now - self._clock[0], now
        if is_main():
            manifest = read_json(self.manifest_path)
            manifest.setdefault("stages", {})[f"round-{round_index}/{stage}"] = {
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "seconds": round(seconds + resumed_s, 1),
                **({"resumed_s": round(resumed_s, 1)} if resumed_s else {}),
                **info,
            }
            write_json_atomic(self.manifest_path, manifest)
        barrier()

    def record(self, key: str, value: Any) -> None:
        """Set one top-level manifest entry (e.g. ``runtime``: the device and precision in use)."""
        if is_main():
            manifest = read_json(self.manifest_path)
            manifest[key] = value
            write_json_atomic(self.manifest_path, manifest)
        barrier()

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path)

    # Stage outputs are written by the main process only; every process computed the same
    # rows, and the stage's ``mark`` (a barrier) makes the others wait until they are on disk.
    def write_answers(self, round_index: int, rows: list[dict[str, Any]]) -> None:
        """The mining stage's two files: every answer, then the wrong ones (the stage's marker)."""
        if is_main():
            write_jsonl_atomic(self.answers(round_index), rows)
            write_jsonl_atomic(self.stage_output(round_index, "mine"), [row for row in rows if not row["correct"]])

    def read_answers(self, round_index: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The mining stage's rows read back: (every pool item, the weakness cases)."""
        return read_jsonl(self.answers(round_index)), read_jsonl(self.stage_output(round_index, "mine"))

    def read_rows(self, round_index: int, stage: str) -> list[dict[str, Any]]:
        """A JSONL stage output read back (retrieve, select, pairs, sft_items, mine)."""
        return read_jsonl(self.stage_output(round_index, stage))

    def write_rows(self, round_index: int, stage: str, rows: list[dict[str, Any]]) -> None:
        if is_main():
            write_jsonl_atomic(self.stage_output(round_index, stage), rows)

    def read_output(self, round_index: int, stage: str) -> dict[str, Any]:
        """A JSON stage output read back (eval's metrics, decide's decision)."""
        return read_json(self.stage_output(round_index, stage))

    def write_output(self, round_index: int, stage: str, value: dict[str, Any]) -> None:
        if is_main():
            write_json_atomic(self.stage_output(round_index, stage), value)

    def config(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise RunDirError(f"{self.root}: not a run directory (no manifest.json); start it with `aptune run`")
        return read_json(self.manifest_path)["config"]


_ABSENT = object()

#: config keys that say where a run computes, not what it computes: a run started on one device
#: may resume on another (``aptune run --device``), and a run stopped by the judge check goes on
#: with ``--yes``; so these are never a "changed config"
WHERE_NOT_WHAT = frozenset({"device", "mining.judge_device", "mining.accept_judge"})
#: sections an older aptune saved as a plain value (``model: NAME`` before ``model.dtype`` and
#: the other loading options): a saved plain value compares as that key of the section
FORMERLY_SCALAR = {"model": "name"}
#: keys whose default changed: a run saved with the former default that the config now leaves at
#: the new one is not changed — it resumes with the value it started with (``former_defaults``)
FORMER_DEFAULTS: dict[str, Any] = {
    "mining.max_new_tokens": 64,  # now None: each task's own budget
    "rounds.gate": "drop",  # now paired: a run saved before the key existed gated on the point drop
}


def former_defaults(saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Dotted key → saved value, for each ``FORMER_DEFAULTS`` key a run was started with at its
    former default and that ``current`` leaves at today's: the run keeps computing as it began."""
    kept = {}
    for path, former in FORMER_DEFAULTS.items():
        old, new, default = (_dig(d, path) for d in (saved, current, defaults))
        if old is _ABSENT:  # the run predates the key: it computed as the former default says
            old = former
        if old == former and new == default and old != new:
            kept[path] = old
    return kept


def _dig(d: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return _ABSENT
        d = d[key]
    return d


def config_changes(saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where ``current`` differs from ``saved``; see :meth:`RunDir.start` for
    ``defaults`` (a key missing from ``saved`` whose current value is its default is unchanged)."""
    changed = []
    for key in sorted(set(saved) | set(current)):
        path = f"{prefix}{key}"
        old, new = saved.get(key, _ABSENT), current.get(key, _ABSENT)
        default = defaults.get(key, _ABSENT)
        if path in FORMERLY_SCALAR and isinstance(new, dict) and isinstance(old, str):
            old = {FORMERLY_SCALAR[path]: old}
        if isinstance(old, dict) and isinstance(new, dict):
            changed += config_changes(old, new, default if isinstance(default, dict) else {}, f"{path}.")
        elif old is _ABSENT and new is not _ABSENT and new == default:
            continue
        elif path in WHERE_NOT_WHAT:
            continue
        elif path in FORMER_DEFAULTS and old in (FORMER_DEFAULTS[path], _ABSENT) and new == default:
            continue
        elif old != new:
            changed.append(path)
    return changed
