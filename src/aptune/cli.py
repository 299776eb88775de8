"""The ``aptune`` command line. Each command is a thin shell over a library function.

Heavy imports (torch, transformers) happen inside commands so that ``aptune --help`` is fast.
Errors a user can fix (bad data, bad config, missing model) end the command with one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:  # imported in the commands: `aptune --help` must not load torch
    from aptune.config import RunConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Make a language model a domain specialist without losing its general skills.",
)

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, OSError)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # faiss.loader reports each CPU-specific build it tries and fails to import (AVX512, AVX2) as
    # an INFO traceback before it falls back to the generic one: harmless, and it read like an error
    for noisy in ("httpx", "urllib3", "filelock", "sentence_transformers", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str) -> None:
    typer.echo(f"aptune: error: {message}", err=True)
    raise typer.Exit(code=2)


def _console():  # noqa: ANN202
    """Rich console; wide tables when output goes to a file or pipe (rich assumes 80 there)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


@app.command("models")
def models_cmd() -> None:
    """List the model registry (short names usable wherever a model is asked for)."""
    from rich.table import Table

    from aptune.models import DEFAULT_MODEL, cache_dir, describe_registry

    table = Table(title=f"models (cache: {cache_dir()})")
    for col in ("name", "state", "description"):
        table.add_column(col)
    for name, state, desc in describe_registry():
        table.add_row(name + (" (default)" if name == DEFAULT_MODEL else ""), state, desc)
    _console().print(table)
    typer.echo("Any Hugging Face Hub id or local model folder is accepted as well.")


@app.command("methods")
def methods_cmd() -> None:
    """List the methods `aptune compare` can run (the METHODS table) with their presets."""
    from rich.table import Table

    from aptune.methods import METHODS

    table = Table(title="methods (a compare config's `methods:` entries name these kinds)")
    for col in ("kind", "what it is", "preset (config overrides)"):
        table.add_column(col)
    for method in METHODS.values():
        table.add_row(method.kind, method.about, ", ".join(_dotted(method.preset)) or "–")
    _console().print(table)


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    """``{"rounds": {"max_rounds": 1}}`` -> ``["rounds.max_rounds=1"]``: config overrides as `--set` spells them."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _dotted(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value}")
    return out


@app.command("data")
def data_cmd(
    domain: Optional[str] = typer.Option(None, help="Only tasks of this domain."),
) -> None:
    """List the bundled offline tasks with their domains, sizes and splits."""
    from rich.table import Table

    from aptune.data import list_suites, list_tasks

    table = Table(title="bundled tasks (train/dev/test assigned by seeded hash; see docs/data.md)")
    for col in ("task", "domain", "kind", "items", "train", "dev", "test", "source"):
        table.add_column(col, justify="right" if col in {"items", "train", "dev", "test"} else "left")
    for info in list_tasks():
        if domain and info.domain != domain:
            continue
        sizes = info.split_sizes
        table.add_row(
            info.name, info.domain, info.kind, str(info.size),
            str(sizes.get("train", "")), str(sizes.get("dev", "")), str(sizes.get("test", "")),
            info.source,
        )
    console = _console()
    console.print(table)
    for name, tasks in list_suites().items():
        console.print(f"suite [bold]{name}[/bold]: {', '.join(tasks)}")


def _metric_cell(metrics: dict, key: str) -> str:
    interval = metrics.get(key)
    return interval.format() if interval is not None else "-"


#: the run config's top-level keys that `aptune eval` takes as options
_EVAL_RUN_KEYS = ("model", "device", "precision", "seed", "trust_remote_code")
#: the model section's keys that `aptune eval` takes as options (--dtype, --attn-implementation, --quantization)
_EVAL_MODEL_KEYS = ("dtype", "attn_implementation", "quantization")


def _eval_params() -> list:  # noqa: ANN202
    """``aptune eval``'s options: its own, then the settings dataclasses' (defaults declared there)."""
    import dataclasses
    import inspect

    from aptune.cli_options import options
    from aptune.config import MiningConfig, PromptConfig, RunConfig
    from aptune.model_config import ModelConfig

    def own(name: str, annotation: object, default: object) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    return [
        *options(ModelConfig, only=("name",), rename={"name": "model"}),
        own("adapter", Optional[list[Path]], typer.Option(
            None, help="A saved adapter folder (LoRA/PEFT or ALoRA) to apply; repeat for the rounds of a "
            "merged run, in order (each but the last is merged into the weights).")),
        own("tasks", Optional[str], typer.Option(None, help="Comma-separated task names or data files (JSONL/CSV/Parquet).")),
        own("suite", Optional[str], typer.Option(None, help="A named suite (see `aptune data`); used when --tasks is not given.")),
        own("split", Optional[str], typer.Option(None, help="train, dev, test, or source (all, source order); default: "
                                                            "test for bundled tasks, every item of a data file.")),
        own("format", str, typer.Option("auto", help="Data files' row format: auto, qa, messages, alpaca, sharegpt, "
                                                     "preference.")),
        own("fields", Optional[str], typer.Option(None, help="Data files' column names, e.g. "
                                                             "question=prompt_text,answer=response.")),
        own("limit", Optional[int], typer.Option(None, help="At most this many items per task.")),
        *options(RunConfig, only=_EVAL_RUN_KEYS[1:]),
        *options(ModelConfig, only=_EVAL_MODEL_KEYS),
        *options(PromptConfig),
        *options(MiningConfig, only=[f.name for f in dataclasses.fields(MiningConfig)
                                     if f.name not in MiningConfig.RUN_ONLY]),
        own("lm_eval", Optional[str], typer.Option(None, help="lm-evaluation-harness tasks to run on the same model "
                                                              "(comma-separated; needs aptune[lm-eval]).")),
        own("lm_eval_include", Optional[Path], typer.Option(None, help="A folder of lm-eval task YAMLs.")),
        own("lm_eval_limit", Optional[int], typer.Option(None, help="lm-eval: at most this many items per task.")),
        own("out", Path, typer.Option(Path("runs/eval"), help="Output folder for predictions + metrics.")),
        own("verbose", bool, typer.Option(False, "--verbose", "-v")),
    ]


def _eval_command(**kwargs: object) -> None:
    """Evaluate a model: accuracy with 95% intervals, position bias, per-item predictions."""
    from aptune.cli_options import values
    from aptune.config import MiningConfig, PromptConfig, RunConfig
    from aptune.model_config import ModelConfig
    from aptune.config_loader import build

    _setup_logging(bool(kwargs["verbose"]))
    try:
        # the model section on its own: the rounds rules of a run (quantized weights cannot merge) do not apply
        model = build(ModelConfig, {"name": kwargs["model"], **values(ModelConfig, kwargs, only=_EVAL_MODEL_KEYS)},
                      source="command line")
        top = build(RunConfig, values(RunConfig, kwargs, only=_EVAL_RUN_KEYS[1:]), source="command line")
        prompt = build(PromptConfig, values(PromptConfig, kwargs), source="command line")
        mining = build(MiningConfig, values(MiningConfig, kwargs), source="command line")  # no RUN_ONLY option
        cfg = RunConfig(name="eval", device=top.device, precision=top.precision, seed=top.seed,
                        trust_remote_code=top.trust_remote_code, prompt=prompt, mining=mining)
        cfg.model = model
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    try:
        fields = _field_map(kwargs["fields"])  # type: ignore[arg-type]
    except ValueError as exc:
        _fail(str(exc))
        return
    from aptune.evaluate.lm_eval_bridge import LmEvalConfig

    lm_tasks = [t.strip() for t in str(kwargs["lm_eval"] or "").split(",") if t.strip()]
    include = kwargs["lm_eval_include"]
    lm_cfg = LmEvalConfig(tasks=lm_tasks, include_path=str(include) if include else None,
                          limit=kwargs["lm_eval_limit"])  # type: ignore[arg-type]
    _evaluate(cfg, adapter=kwargs["adapter"], tasks=kwargs["tasks"], suite=kwargs["suite"],  # type: ignore[arg-type]
              split=kwargs["split"], limit=kwargs["limit"], out=Path(str(kwargs["out"])),  # type: ignore[arg-type]
              data_format=str(kwargs["format"]), fields=fields, lm_eval=lm_cfg)


def _field_map(text: Optional[str]) -> Optional[dict[str, str]]:
    """``--fields question=prompt_text,answer=response`` as {aptune field: file column}."""
    if not text:
        return None
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.count("=") == 1 and all(side.strip() for side in p.split("=")) for p in pairs):
        raise ValueError(f"--fields {text!r}: expected FIELD=COLUMN pairs separated by commas")
    return {k.strip(): v.strip() for k, v in (p.split("=") for p in pairs)}


def _register_eval() -> None:
    from aptune.cli_options import with_signature

    app.command("eval")(with_signature(_eval_params())(_eval_command))


def _evaluate(cfg: RunConfig, *, adapter: Optional[list[Path]], tasks: Optional[str], suite: Optional[str],
              split: Optional[str], limit: Optional[int], out: Path, data_format: str = "auto",
              fields: Optional[dict[str, str]] = None, lm_eval: Any = None) -> None:
    from aptune.data import load_suite, load_task
    from aptune.data.loading import default_eval_split, task_size
    from aptune.devices import device_name, resolve_device
    from aptune.evaluate.metrics import format_positions
    from aptune.evaluate.runner import evaluate
    from aptune.model_config import runtime_dtypes, weights_name
    from aptune.models import load_model, load_tokenizer
    from aptune.run.evaluation import eval_settings

    try:
        settings = eval_settings(cfg)
        splits: dict[str, str] = {}
        if tasks:
            names = [t.strip() for t in tasks.split(",") if t.strip()]
            data = {}
            for n in names:
                chosen = split or default_eval_split(n)
                items = load_task(n, split=chosen, limit=limit, seed=cfg.seed, shots=cfg.prompt.shots,
                                  format=data_format, fields=fields)
                key = items[0].task if items else n
                data[key], splits[key] = items, chosen
                typer.echo(f"{key}: {len(items)} of {task_size(n, data_format, fields)} items (split {chosen}"
                           + (f", limit {limit}" if limit is not None else "") + ")")
        elif lm_eval is not None and lm_eval.tasks and not suite:
            data = {}  # lm-eval tasks only
        else:
            data = load_suite(suite or "default", split=split or "test", limit_per_task=limit, seed=cfg.seed,
                              shots=cfg.prompt.shots)
            splits = {name: split or "test" for name in data}
        device = resolve_device(cfg.device)
        weights, dtype = runtime_dtypes(cfg.model, cfg.precision, device)
        typer.echo(f"aptune eval: {cfg.model.name} on {device} ({device_name(device)}), weights "
                   f"{weights_name(cfg.model, weights)}, precision {str(dtype).removeprefix('torch.')}, "
                   f"split {_split_label(splits)}")
        started = time.time()
        lm = load_model(cfg.model.name, trust_remote_code=cfg.trust_remote_code, device=str(device), options=cfg.model)
        tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.trust_remote_code)
        if adapter:
            from aptune.adapters import apply_adapters

            lm = apply_adapters(lm, adapter)
        from aptune.run.evaluation import build_judge, load_judge_model

        judge_lm = load_judge_model(cfg, device) if cfg.mining.judge == "llm" and cfg.mining.judge_model else None
        report = evaluate(lm, tokenizer, data, settings, dtype, judge=build_judge(cfg, lm, tokenizer, judge_lm))
        lm_results = None
        if lm_eval is not None and lm_eval.tasks:
            from aptune.evaluate.lm_eval_bridge import run_lm_eval

            lm_results = run_lm_eval(lm, tokenizer, lm_eval, dtype, cfg.seed)
    except USER_ERRORS as exc:  # bad data, a missing model, --template chat on a tokenizer without one
        _fail(str(exc))
        return
    elapsed = time.time() - started
    from aptune.provenance import provenance

    precision = str(dtype).replace("torch.", "")
    from aptune.distributed import is_main

    if not is_main():  # under a launcher every process holds the gathered results; one writes
        return
    report.write(
        out,
        extra={
            "model": cfg.model.name,
            "model_options": {"dtype": cfg.model.dtype, "attn_implementation": cfg.model.attn_implementation,
                              "quantization": cfg.model.quantization},
            "adapters": [str(a) for a in adapter or ()],
            "split": _split_label(splits),
            "splits": splits,
            "limit": limit,
            "precision": precision,
            "device": str(device),
            "device_name": device_name(device),
            "prompt": {"template": cfg.prompt.template, "mc_format": cfg.prompt.mc_format,
                       "mc_metric": cfg.mining.mc_metric},
            "seed": cfg.seed,
            "seconds": round(elapsed, 1),
            "provenance": provenance(),
            **({"lm_eval": lm_results} if lm_results is not None else {}),
        },
    )
    from rich.table import Table

    table = Table(title=f"{cfg.model.name} · split={_split_label(splits)} · {precision} · 95% bootstrap CI")
    for col in ("task", "domain", "n", "acc", "acc_norm", "majority-position", "predicted positions"):
        table.add_column(col)
    for name, tm in report.metrics.items():
        pos = tm.positions
        table.add_row(
            name,
            tm.domain,
            str(tm.n),
            _metric_cell(tm.metrics, "acc" if "acc" in tm.metrics else "accuracy"),
            _metric_cell(tm.metrics, "acc_norm"),
            f"{100 * pos.majority_baseline:.1f}" if pos else "-",
            format_positions(pos.predicted_histogram, empty="-") if pos else "-",
        )
    console = _console()
    if report.metrics:
        console.print(table)
    if lm_results is not None:
        console.print(_lm_eval_table(lm_results))
    console.print(f"wrote {out / 'predictions.jsonl'} and {out / 'metrics.json'} ({elapsed:.0f} s)")


def _lm_eval_table(results: dict) -> Any:
    """lm-eval's figures as it reports them: each task's metrics with lm-eval's standard error."""
    from rich.table import Table

    table = Table(title=f"lm-evaluation-harness {results['version']} (its metrics; ± = its standard error)")
    for col in ("task", "n", "primary", "metrics"):
        table.add_column(col)
    for name, task in results["tasks"].items():
        cells = [f"{m} {100 * v:.1f} ± {100 * task['stderr'][m]:.1f}" if m in task["stderr"] else f"{m} {100 * v:.1f}"
                 for m, v in task["metrics"].items()]
        table.add_row(name, str(task["n"] or "-"), task["primary"] or "-", "; ".join(cells))
    return table


_register_eval()


def _split_label(splits: dict[str, str]) -> str:
    """One split name where every task used it, else "per task" (metrics.json lists each)."""
    names = set(splits.values())
    return names.pop() if len(names) == 1 else "per task (see splits)"


def _load_run(config: Optional[Path], run_dir: Optional[Path], sets: tuple[str, ...] = (),  # noqa: ANN202
              device: Optional[str] = None):
    """The run config (from a file, or the one a run directory was started with) and its folder;
    ``device`` (``--device``) replaces the config's: a run may resume on another device."""
    import dataclasses

    cfg, root = _read_run_config(config, run_dir, sets)
    return (dataclasses.replace(cfg, device=device) if device else cfg), root


def _read_run_config(config: Optional[Path], run_dir: Optional[Path], sets: tuple[str, ...]):  # noqa: ANN202
    from aptune.config import RunConfig, load_run_config
    from aptune.config_loader import build
    from aptune.run.run_dir import RunDir

    existing = RunDir(run_dir) if run_dir is not None else None
    if config is None and existing is not None and existing.manifest_path.exists():
        if sets:
            raise ValueError(f"--set: {run_dir} was started with its own config; a changed key needs a new run folder")
        cfg = build(RunConfig, existing.config(), source=str(existing.manifest_path))
        return cfg, existing.root
    # no file: the schema's defaults are the shipped demo (configs/demo.yaml spells them out)
    cfg = load_run_config(config, sets)
    return cfg, run_dir or Path("runs") / cfg.name


@app.command("eval-diff")
def eval_diff_cmd(
    before: Path = typer.Argument(..., help="An `aptune eval` output folder (e.g. the base model)."),
    after: Path = typer.Argument(..., help="Another one over the same items (e.g. the trained model)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Paired change between two evaluations of the same items: accuracy and gold log-likelihood."""
    from rich.table import Table

    from aptune.evaluate.paired import compare_evals

    try:
        rows, unmatched = compare_evals(before, after, seed=seed)
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    table = Table(title=f"{after} against {before} · paired, 95% bootstrap CI over items")
    for col in ("task", "n", "acc before %", "acc after %", "Δ acc (points)", "Δ gold log-lik (nats/item)"):
        table.add_column(col)
    for r in rows:
        ll = r.loglik_change.nats() if r.loglik_change else "–"
        table.add_row(r.task, str(r.n), r.before.format(), r.after.format(), r.accuracy_change.format(signed=True), ll)
    _console().print(table)
    if unmatched:
        typer.echo(f"{unmatched} items are in only one of the two folders and were left out")


_SET = typer.Option(None, "--set", help="Override one config key, e.g. --set train.lr=1e-4 (repeatable).")
_DEVICE = typer.Option(None, "--device", help="Where to compute: auto, cpu, cuda, cuda:N or mps (same as --set device=...).")


def _memory_plan(cfg: RunConfig, seq_len: Optional[int] = None, model_config: Optional[Path] = None,
                 device_kind: Optional[str] = None):  # noqa: ANN202
    """The memory plan of a run config on the device it resolves to (reads config.json only);
    ``device_kind`` plans for a kind of device this machine may not have (``aptune plan --for``)."""
    import torch

    from aptune.devices import resolve_device
    from aptune.memory_plan import ModelShape, plan_for_run

    device = torch.device(device_kind) if device_kind else resolve_device(cfg.device)
    shape = ModelShape.from_config_file(str(model_config)) if model_config else None
    return plan_for_run(cfg, seq_len=seq_len, device=device.type, shape=shape), device  # type: ignore[arg-type]


def _has_weights(model: str) -> bool:
    """Whether the run's model is a local folder with weight files, which `aptune run` plans for
    before loading (a Hub id is planned by `aptune plan`, which may read its config online)."""
    from aptune.models import resolve_model_path

    path = Path(resolve_model_path(model))
    if not path.is_dir():
        return False
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def _print_plan(cfg: RunConfig, seq_len: Optional[int] = None, model_config: Optional[Path] = None,
                device_kind: Optional[str] = None) -> None:
    """Print the plan; refuse (one line, exit 2) when it does not fit on the chosen device (a
    plan ``--for`` a device kind this machine lacks is printed, not checked)."""
    from aptune.device_memory import check_fits

    plan, device = _memory_plan(cfg, seq_len, model_config, device_kind)
    typer.echo(f"memory plan for {cfg.model.name} on {device} (adapter {cfg.adapter.kind} r{cfg.adapter.r}, "
               f"batch {cfg.train.batch_size}, gradient checkpointing {'on' if cfg.train.gradient_checkpointing else 'off'}):")
    typer.echo(plan.format())
    if device_kind:
        return
    check_fits(plan, str(device))
    typer.echo(f"fits on {device}")


@app.command("plan")
def plan_cmd(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (default: the shipped demo)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override one config key (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="Plan for this device: auto, cpu, cuda, cuda:N, mps."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Tokens per sequence (default: train.max_length)."),
    model_config: Optional[Path] = typer.Option(
        None, "--model-config", help="Plan from this config.json instead of the model's own (offline, e.g. "
        "configs/gpu/shapes/)."),
    for_: Optional[str] = typer.Option(None, "--for", help="Plan for a device kind this machine need not have "
                                       "(cpu, cuda, mps): print the plan without checking free memory."),
) -> None:
    """Expected peak memory of a run before loading any weights; exit 2 when it cannot fit."""
    try:
        if for_ is not None and for_ not in ("cpu", "cuda", "mps"):
            raise ValueError(f"--for {for_!r}: expected cpu, cuda or mps")
        cfg, _ = _load_run(config, None, tuple(set_ or ()), device)
        _print_plan(cfg, seq_len, model_config, for_)
    except USER_ERRORS as exc:
        _fail(str(exc))


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (default: the shipped demo)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default: runs/<name>)."),
    set_: Optional[list[str]] = _SET,
    device: Optional[str] = _DEVICE,
    plan: bool = typer.Option(False, "--plan", help="Print the memory plan and stop (exit 2 if it cannot fit)."),
    yes: bool = typer.Option(False, "--yes", help="Go on although the judge check failed (mining.accept_judge=true)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run APT end to end (or resume it): rounds of mine → retrieve → pairs → train → eval → gate."""
    _setup_logging(verbose)
    set_ = [*(set_ or ()), *(["mining.accept_judge=true"] if yes else [])]
    if plan:
        try:
            cfg, _ = _load_run(config, out, tuple(set_ or ()), device)
            _print_plan(cfg)
        except USER_ERRORS as exc:
            _fail(str(exc))
        return
    from aptune.run.console import RunConsole

    try:
        from aptune.methods.apt import APTRun

        cfg, root = _load_run(config, out, tuple(set_ or ()), device)
        run = APTRun(cfg, root)
        run.validate()
        if _has_weights(cfg.model.name):  # a folder without weights gets the loader's own error instead
            from aptune.device_memory import check_fits

            check_fits(_memory_plan(cfg)[0], str(run.device))  # refuse before any weights are loaded
        run.open()
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    from aptune.report.apt_report import write_report
    from aptune.train.config import TrainingDivergedError

    console = RunConsole(run, _console())
    console.start()
    try:
        decision = run.run(on_stage=console.stage, on_round=console.round_done)
    except (TrainingDivergedError, *USER_ERRORS) as exc:  # e.g. a prompt too long for the model
        from aptune.apt.judge_check import JudgeCheckError, format_sample

        if isinstance(exc, JudgeCheckError):  # the judged items the error line refers to
            typer.echo(format_sample(exc.check))
        _fail(str(exc))
        return
    from aptune.distributed import barrier, is_main

    if is_main():  # under a launcher one process draws the report and prints; the others wait
        report = write_report(root)
        console.finish(decision)
        typer.echo(f"report: {report} (and {report.with_suffix('.html').name})")
    barrier()


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="Run config YAML: the pool names your data (prompt/chosen/rejected "
                                            "rows for dpo-pairs, question/answer or chat rows for sft-lora)."),
    method: str = typer.Option("dpo-pairs", help="Any method of `aptune methods` (dpo-pairs: preference "
                                                 "training on your pairs; sft-lora: supervised on your answers)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default: runs/<name>-<method>)."),
    set_: Optional[list[str]] = _SET,
    device: Optional[str] = _DEVICE,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train one method on your data (default: DPO + NLL on your preference pairs), evaluated and
    gated like an APT run; the adapter, metrics and a report land in the run directory."""
    _setup_logging(verbose)
    try:
        from aptune.config import load_run_config
        from aptune.config import RunConfig
        from aptune.config_loader import build, deep_merge, expand_scalar_sections
        from aptune.methods.registry import MethodSpec, make_run, method_overrides

        spec = MethodSpec(kind=method)
        cfg = load_run_config(config, tuple(set_ or ()))  # paths resolved against the config's folder
        # the method's preset (its adapter kind, its rounds) on top, as `aptune compare` applies it
        merged = deep_merge(cfg.to_dict(), expand_scalar_sections(RunConfig, method_overrides(spec)))
        cfg = build(RunConfig, merged, source=str(config))
        if device:
            cfg.device = device
        root = out or Path("runs") / f"{cfg.name}-{spec.label}"
        run = make_run(spec, cfg, root)
        run.validate()
        run.open()
        decision = run.run()
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    from aptune.distributed import barrier, is_main

    if is_main():
        from aptune.report.apt_report import write_report

        report = write_report(root)
        typer.echo(f"{spec.label}: {decision.get('reason', 'done')}")
        typer.echo(f"report: {report}; adapter(s): {root}/round-*/train/adapter")
    barrier()


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A finished (or stopped) run directory."),
    to: Path = typer.Option(..., "--to", help="A new folder to write the model into."),
    format_: str = typer.Option("auto", "--format", help="merged (a Hugging Face model folder), peft (one PEFT "
                                                         "adapter), alora (ALoRA's folder + loader); auto: merged "
                                                         "for LoRA runs, alora for ALoRA runs."),
    round_: Optional[int] = typer.Option(None, "--round", help="The model as it stood after this round "
                                                               "(default: the run's last round)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write a run's tuned model where other tools load it, with a model card from the run's files."""
    _setup_logging(verbose)
    try:
        from aptune.export import export_run

        out = export_run(run_dir, to, format_, round_)  # type: ignore[arg-type]
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    typer.echo(f"exported {run_dir} to {out} (model card: {out / 'README.md'})")


_MODEL_OR_RUN = typer.Argument(..., help="A model: registry name, Hub id or folder (an `aptune export`), or a "
                                         "run directory (its final model).")
_ADAPTERS = typer.Option(None, "--adapter", help="Adapter folder(s) to apply on top, in order.")


@app.command("chat")
def chat_cmd(
    model: str = _MODEL_OR_RUN,
    adapter: Optional[list[Path]] = _ADAPTERS,
    system: Optional[str] = typer.Option(None, help="A system message for the conversation."),
    max_new_tokens: int = typer.Option(256, help="Longest reply, in tokens."),
    temperature: float = typer.Option(0.0, help="0 = greedy; above 0 samples."),
    device: Optional[str] = _DEVICE,
) -> None:
    """Chat with a model in the terminal: replies stream, the conversation is kept; /reset, /exit."""
    _setup_logging(False)
    try:
        from aptune.inference.chat import ChatSession, repl
        from aptune.inference.loading import load_for_inference

        lm, tokenizer, dtype = load_for_inference(model, adapter or (), device or "auto")
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    repl(ChatSession(lm, tokenizer, dtype, max_new_tokens=max_new_tokens, temperature=temperature, system=system))


@app.command("generate")
def generate_cmd(
    model: str = _MODEL_OR_RUN,
    prompts: Path = typer.Option(..., help="Prompts file (JSONL/JSON/CSV/Parquet): messages, prompt or question rows."),
    out: Path = typer.Option(..., help="Output JSONL: id, prompt, output and the settings used, per row."),
    adapter: Optional[list[Path]] = _ADAPTERS,
    template: str = typer.Option("auto", help="auto (the chat template where the model has one), chat or plain."),
    max_new_tokens: int = typer.Option(256, help="Longest answer, in tokens."),
    temperature: float = typer.Option(0.0, help="0 = greedy; above 0 samples (seeded)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    batch_size: int = typer.Option(16, help="Prompts generated together."),
    device: Optional[str] = _DEVICE,
) -> None:
    """Batched generation over a prompts file, one JSONL row per prompt."""
    _setup_logging(False)
    try:
        from aptune.inference.batch import generate_file, read_prompts
        from aptune.inference.loading import load_for_inference

        read_prompts(prompts)  # a malformed file fails before the model loads
        lm, tokenizer, dtype = load_for_inference(model, adapter or (), device or "auto")
        path = generate_file(lm, tokenizer, prompts, out, model_name=model, dtype=dtype, template=template,
                             max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size)
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {path}")


def _stage(stage: str, run_dir: Path, round_index: int, config: Optional[Path], device: Optional[str],
           verbose: bool) -> None:
    _setup_logging(verbose)
    try:
        from aptune.methods.apt import APTRun

        cfg, root = _load_run(config, run_dir, device=device)
        run = APTRun(cfg, root)
        run.open()
        getattr(run, f"stage_{stage}")(round_index)
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    typer.echo(f"{stage} finished: {run.dir.round_dir(round_index)}")


_RUN_DIR = typer.Option(..., "--run-dir", help="The run directory.")
_ROUND = typer.Option(1, "--round", help="Round number (1-based; 0 = the starting model).")
_CONFIG = typer.Option(None, "--config", help="Config for a new run directory.")

#: APT's stages as commands (command name -> stage); the help text is the stage's own summary
STAGE_COMMANDS = {"mine": "mine", "retrieve": "retrieve", "pairs": "pairs", "train-round": "train",
                  "evaluate-round": "eval"}


def _register_stage(command: str, stage: str) -> None:
    from aptune.run.run_dir import STAGES

    @app.command(command, help=f"APT stage alone: {STAGES[stage].summary}; writes round-N/{STAGES[stage].output}.")
    def stage_command(run_dir: Path = _RUN_DIR, round: int = _ROUND, config: Optional[Path] = _CONFIG,
                      device: Optional[str] = _DEVICE, verbose: bool = typer.Option(False, "-v")) -> None:
        _stage(stage, run_dir, round, config, device, verbose)


for _command, _stage_name in STAGE_COMMANDS.items():
    _register_stage(_command, _stage_name)


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="The run directory.")) -> None:
    """Redraw a run's report (Markdown, HTML, PNG) from the files in its run directory."""
    from aptune.report.apt_report import write_report

    try:
        path = write_report(run_dir)
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    typer.echo(path.read_text())


@app.command("compare")
def compare_cmd(
    config: Path = typer.Argument(..., help="Compare config YAML (e.g. configs/compare-science.yaml)."),
    quick: bool = typer.Option(False, "--quick", help="Apply the file's `quick:` profile (small, 1 seed)."),
    out: Optional[Path] = typer.Option(None, help="Compare folder (default: runs/<name>[-quick])."),
    methods: Optional[str] = typer.Option(None, help="Run only these methods (comma-separated names)."),
    seeds: Optional[str] = typer.Option(None, help="Run only these of the config's seeds (comma-separated)."),
    device: Optional[str] = _DEVICE,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run baselines and APT (methods x seeds) on one domain; reuse finished runs; write one report."""
    _setup_logging(verbose)
    from aptune.train.config import TrainingDivergedError

    try:
        from aptune.compare import describe, load_compare_config, run_compare

        loaded = load_compare_config(config, quick=quick, device=device)
        root = out or Path("runs") / (loaded.config.name + ("-quick" if quick else ""))
        only_methods, only_seeds = _names_and_seeds(methods, seeds)
        plan = [row for row in describe(loaded) if only_methods is None or row["method"] in only_methods]
        run_seeds = [s for s in loaded.config.seeds if only_seeds is None or s in only_seeds]
        typer.echo(f"compare {loaded.config.name}: {len(plan)} methods x seeds {run_seeds} -> {root}")
        for row in plan:
            typer.echo(f"  {row['method']}: {row['kind']}, adapter {row['adapter']}, rounds {row['rounds']}, "
                       f"lr {row['lr']:g}, epochs/round {row['epochs']}, batch {row['batch']}")
        run_compare(loaded, root, on_run=lambda m, s, what: typer.echo(f"[{m} seed {s}] {what}"),
                    methods=only_methods, seeds=only_seeds)
        from aptune.distributed import barrier, is_main
        from aptune.report.compare_report import write_compare_report

        report = write_compare_report(root) if is_main() else None  # one process draws and prints
        barrier()
    except TrainingDivergedError as exc:
        _fail(str(exc))
        return
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    if report is not None:
        typer.echo(report.read_text())
        typer.echo(f"report: {report.with_suffix('.html')}")


def _names_and_seeds(methods: Optional[str], seeds: Optional[str]) -> tuple[list[str] | None, list[int] | None]:
    """``--methods a,b`` and ``--seeds 0,1`` as lists (None where not given)."""
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    try:
        numbers = [int(x) for x in seeds.split(",") if x.strip()] if seeds else None
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    return names, numbers


@app.command("compare-report")
def compare_report_cmd(
    folder: Path = typer.Argument(..., help="A compare folder."),
    seeds: Optional[str] = typer.Option(None, help="Report only these seeds (comma-separated)."),
    methods: Optional[str] = typer.Option(None, help="Report only these methods (comma-separated names)."),
    to: Optional[Path] = typer.Option(None, "--to", help="Write the report here (default: FOLDER itself)."),
    versus: Optional[list[str]] = typer.Option(
        None, "--versus", help="A:B — add a head-to-head row, A's final models against B's, paired on "
        "the same items (repeatable; every trained method is set against sft-lora anyway)."),
) -> None:
    """Redraw a compare report (Markdown, HTML, PNG) from its folder, finished or not; with
    --seeds/--methods, a report of just those runs (e.g. one seed alone) into --to; with
    --versus A:B, head-to-head rows beside the config's own."""
    from aptune.report.compare_report import write_compare_report

    try:
        only_methods, only_seeds = _names_and_seeds(methods, seeds)
        if (only_methods or only_seeds) and to is None:
            raise ValueError("--seeds/--methods: give --to DIR, so the folder's full report is not replaced")
        path = write_compare_report(folder, to, seeds=only_seeds, methods=only_methods, versus_pairs=versus or ())
    except USER_ERRORS as exc:
        _fail(str(exc))
        return
    typer.echo(path.read_text())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
