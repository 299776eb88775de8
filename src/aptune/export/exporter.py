"""``export_run``: build the run's final model once and write it in the asked form (package docstring)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from aptune.export.card import model_card
from aptune.export.peft_compose import ComposeError, compose_lora_rounds
from aptune.run.driver import Run
from aptune.run.finished import open_run, rounds_upto

ExportFormat = Literal["auto", "merged", "peft", "alora"]
FORMATS: tuple[str, ...] = ("auto", "merged", "peft", "alora")

ALORA_LOADER = '''"""Load this ALoRA export: the base model with the attention-LoRA adapter beside this file.

ALoRA cannot be merged into weights (its low-rank path attends over the preceding tokens), so it
needs aptune (pip install aptune) to run."""

from pathlib import Path

BASE_MODEL = {base!r}


def load_model(base_model: str = BASE_MODEL):
    """(model, tokenizer): the base model with the adapter in ./adapter applied."""
    from aptune.adapters import load_adapter
    from aptune.models import load_model as load_base, load_tokenizer

    model = load_adapter(load_base(base_model), Path(__file__).resolve().parent / "adapter")
    return model.eval(), load_tokenizer(base_model)
'''


class ExportError(ValueError):
    """An export that cannot be made as asked (the message says why and what works)."""


def _fresh_target(to: Path) -> None:
    if to.exists() and any(to.iterdir()):
        raise ExportError(f"{to}: the folder exists and is not empty; export into a new folder")


def export_run(run_root: str | Path, to: str | Path, form: ExportFormat = "auto", round_index: int | None = None,
               command: str | None = None) -> Path:
    """Export the model run ``run_root`` left after ``round_index`` (default: its last round)
    to the new folder ``to``; ``form``: auto (merged for LoRA, alora for ALoRA), merged, peft,
    alora. Written to a temporary folder and moved into place, so a failed export leaves nothing."""
    run_root, to = Path(run_root), Path(to)
    if form not in FORMATS:
        raise ExportError(f"unknown export format {form!r} (one of {', '.join(FORMATS)})")
    _fresh_target(to)
    run = open_run(run_root, device="cpu")
    try:
        upto, accepted = rounds_upto(run, round_index)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    kind = run.cfg.adapter.kind
    if form == "auto":
        form = "alora" if kind == "alora" and accepted else "merged"
    if kind == "alora" and accepted and form != "alora":
        raise ExportError(f"{run_root}: an ALoRA adapter cannot be merged into weights or read by PEFT (its "
                          "low-rank path attends over the preceding tokens); export --format alora")
    if form == "alora" and kind != "alora":
        raise ExportError(f"{run_root}: this run trained LoRA adapters; export --format merged or peft")
    command = command or f"aptune export {run_root} --to {to} --format {form} --round {upto}"
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    try:
        if form == "merged":
            _write_merged(run, accepted, tmp)
        elif form == "peft":
            _write_peft(run, accepted, tmp)
        else:
            _write_alora(run, accepted, tmp)
        (tmp / "README.md").write_text(model_card(run_root, accepted=accepted, upto=upto, form=form, command=command))
        if to.exists():
            to.rmdir()
        tmp.rename(to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return to


def _base_for_merging(run: Run):  # noqa: ANN202
    """The base weights to merge into: quantized runs merge into an unquantized bf16 copy (a
    merge into 4-bit weights would re-quantize them)."""
    from aptune.models import load_model

    options = run.cfg.model
    if options.quantization != "none":
        options = dataclasses.replace(options, quantization="none", dtype="bf16")
    return load_model(options.name, trust_remote_code=run.cfg.trust_remote_code, device="cpu", options=options)


def _write_merged(run: Run, accepted: list[int], out: Path) -> None:
    from aptune.adapters import load_adapter, merge_adapter

    model = _base_for_merging(run)
    if run.cfg.rounds.between == "merge":
        for r in accepted:
            model = merge_adapter(load_adapter(model, run.dir.adapter_dir(r)))
    elif accepted:  # one adapter trained across rounds: the last accepted round's holds them all
        model = merge_adapter(load_adapter(model, run.dir.adapter_dir(accepted[-1])))
    model.save_pretrained(str(out), safe_serialization=True)
    run.tokenizer.save_pretrained(str(out))


def _write_peft(run: Run, accepted: list[int], out: Path) -> None:
    folders = [run.dir.adapter_dir(r) for r in accepted]
    if run.cfg.rounds.between == "stack":
        folders = folders[-1:]
    try:
        compose_lora_rounds(folders, out)
    except ComposeError as exc:
        raise ExportError(f"{run.dir.root}: the accepted rounds cannot be one PEFT adapter ({exc}); "
                          "export --format merged") from None
    run.tokenizer.save_pretrained(str(out))


def _write_alora(run: Run, accepted: list[int], out: Path) -> None:
    if not accepted:
        raise ExportError(f"{run.dir.root}: no accepted round: the model is the base model")
    shutil.copytree(run.dir.adapter_dir(accepted[-1]), out / "adapter")  # stacked: the last holds every round
    (out / "load_alora.py").write_text(ALORA_LOADER.format(base=run.cfg.model.name))
    run.tokenizer.save_pretrained(str(out))
