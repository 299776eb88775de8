"""The run configuration: one typed schema for YAML files, the CLI and the docs.

Every shipped YAML under ``configs/`` is parsed against these dataclasses by a test. The
defaults are the shipped demo's: APT on science QA (SciQ + ARC-Easy), where SmolLM2-135M is
clearly above chance, with a general suite of tasks the domain never touches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from aptune.adapters.config import AdapterConfig
from aptune.config_loader import load_config
from aptune.evaluate.generation import Sampling
from aptune.evaluate.lm_eval_bridge import LmEvalConfig
from aptune.devices import DEVICE_FORM, DEVICE_HELP
from aptune.evaluate.runner import EvalSettings
from aptune.model_config import ModelConfig
from aptune.models import Precision
from aptune.prompts import MCFormat, Template
from aptune.train.config import TrainConfig


@dataclass
class TaskSet:
    """Tasks (bundled names or data files, relative to the config file) read from one split.

    ``format`` and ``fields`` apply to the data files among ``tasks``: the rows' format (``auto``
    detects it: qa, messages, alpaca, sharegpt, preference; ``data/formats.py``) and column
    renames (aptune's field → the file's column)."""

    tasks: list[str] = field(default_factory=list)
    split: str = "test"
    limit: int | None = None  # per task
    format: str = "auto"
    fields: dict[str, str] | None = None

    def __post_init__(self) -> None:
        from aptune.data.formats import FORMATS

        if self.split not in ("train", "dev", "test", "source"):
            raise ValueError(f"split must be train, dev, test or source, not {self.split!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, not {self.limit}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.fields is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in self.fields.items()):
            raise ValueError("fields maps aptune's field names to the file's column names, both text")


@dataclass
class GeneralDevSet(TaskSet):
    """The general items the gate decides on: never test items, so the gate selects no model on
    the figures it is then judged by. ``tasks: null`` = general_eval's tasks; ``[]`` = no dev
    view (the gate then reads the general test items, and the decision says so)."""

    tasks: list[str] | None = None  # type: ignore[assignment]
    split: str = "dev"
    limit: int | None = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split in ("test", "source"):
            raise ValueError(f"general_dev.split must be dev or train (the gate never reads test items), "
                             f"not {self.split!r}")

    def resolved(self, general: TaskSet) -> TaskSet:
        """The task set as loaded: ``general``'s tasks where none are named."""
        if self.tasks is None:
            return TaskSet(list(general.tasks), self.split, self.limit, general.format, general.fields)
        return TaskSet(list(self.tasks), self.split, self.limit, self.format, self.fields)


#: the evaluator's own defaults: the config sections below take theirs from it, so a default
#: is declared once (in ``EvalSettings``) and the YAML schema, ``aptune eval`` and APT agree
_EVAL = EvalSettings()


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - the CLI's word for it
    """A field with a default and the help text its command-line option shows."""
    return field(default=default, metadata={"help": help})


@dataclass
class PromptConfig:
    """How an item becomes a prompt (evaluation, mining and training share it)."""

    template: Template = _opt(_EVAL.prompt.template, "Prompt template: the model's chat template where it has one, or plain")
    mc_format: MCFormat = _opt(_EVAL.prompt.mc_format, "Multiple choice: score the answer text (cloze) or a letter")
    system_prompt: str | None = _opt(_EVAL.prompt.system_prompt, "System message for chat templates")
    too_long: Literal["truncate", "error", "skip"] = _opt(_EVAL.too_long, "A prompt beyond the model's context: cut "
                                                                          "from the left (named in the log), fail, or "
                                                                          "skip the item (named, and listed in "
                                                                          "metrics.json)")
    shots: int = _opt(_EVAL.prompt.shots, "Solved exemplars before each question, from the task's train split (k-shot)")
    cot: bool = _opt(_EVAL.prompt.cot, "Chain of thought for items with a worked solution (GSM8K): ask to reason "
                                       "step by step; exemplars and training targets show the solution")

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0, not {self.shots}")


@dataclass
class MiningConfig:
    """How the model answers (the pool, and every evaluation) and who decides it was wrong."""

    judge: str | None = _opt(_EVAL.judge, "Grader: choice, short_answer, exact_match, final_number or llm (default: "
                                          "choice for multiple choice; for free-form answers final_number for numbers, "
                                          "short_answer for references of up to 5 words, else exact_match)")
    judge_model: str | None = _opt(None, "judge llm: the model that grades (default: the model itself)")
    judge_device: str | None = _opt(None, "judge llm with judge_model: where the judge runs, e.g. cuda:1 "
                                          "(default: the run's device)")
    judge_threshold: float = _opt(3.0, "judge llm: correct when the score is at least this (weakness = below it)")
    judge_scale: int = _opt(5, "judge llm: scores run from 1 to this (the default rubric is 1-5)")
    judge_rubric: str | None = _opt(None, "judge llm: the scoring rubric, one line per score (default: absolute "
                                          "grading against the reference, 1-5)")
    mc_metric: Literal["acc", "acc_norm"] = _opt(_EVAL.mc_metric, "Multiple-choice answer rule: highest log-likelihood "
                                                                  "(acc) or per character (acc_norm)")
    max_new_tokens: int | None = _opt(_EVAL.max_new_tokens, "Longest free-form answer, in tokens (default: each "
                                                            "task's own, e.g. GSM8K 256; 64 where a task names none)")
    generation_backend: str = _opt(_EVAL.generation_backend, "Free-form answering backend (transformers)")
    # the judge check between mining and training (apt/judge_check.py); a run's keys, not eval's
    max_wrong_share: float = _opt(0.8, "Stop before training when the judge marks more of the pool wrong than this")
    max_length_ratio: float = _opt(4.0, "Stop before training when free-form answers are this many times longer "
                                        "than the references (median words)")
    accept_judge: bool = _opt(False, "Go on although the judge check failed (aptune run --yes)")

    #: the keys above that only a run reads (``aptune eval`` does not offer them)
    RUN_ONLY: ClassVar[tuple[str, ...]] = ("max_wrong_share", "max_length_ratio", "accept_judge")

    def __post_init__(self) -> None:
        if not 0.0 < self.max_wrong_share <= 1.0:
            raise ValueError(f"max_wrong_share is a fraction in (0, 1], not {self.max_wrong_share}")
        if not self.max_length_ratio > 0:
            raise ValueError(f"max_length_ratio must be > 0, not {self.max_length_ratio}")


@dataclass
class RetrievalConfig:
    strategy: Literal["knn", "centroid", "kmeans", "tag", "none"] = "knn"
    s: float = 1.0  # budget = s × number of weakness cases
    embed: Literal["question", "question+answer"] = "question"
    encoder: str | None = None  # default: the offline all-MiniLM-L6-v2
    #: where similar cases come from: tasks/files/datasets (the released APT code retrieves from a
    #: larger pool than it mines); no tasks = the mined pool. Held-out items are never retrieved.
    pool: TaskSet = field(default_factory=lambda: TaskSet([], "train"))
    #: strategy tag: how pool items get their tags (retrieval/tags.py)
    tagger: Literal["metadata", "keyword", "llm"] = "metadata"
    tag_field: str = "task"  # metadata tagger: an item field (task, domain) or a meta key
    keywords: dict[str, list[str]] | None = None  # keyword tagger: {tag: [words]}
    tag_model: str | None = None  # llm tagger: the model that names tags (default: the run's model)


@dataclass
class PairsConfig:
    """Rejected side for similar cases the model already gets right."""

    # model_wrong: MC = the wrong option the model finds most likely; generative = other_gold.
    # model_sample: MC as model_wrong; generative = a sampled answer the judge scores wrong.
    # other_gold: another retrieved item's gold answer (what the released APT code does).
    similar_negative: Literal["model_wrong", "model_sample", "other_gold"] = "model_wrong"
    permute_options: bool = True  # letter format: shuffle option order per pair (seeded)
    samples: int = 4  # model_sample: answers drawn per item
    temperature: float = 1.0  # model_sample: sampling temperature
    top_p: float = 1.0  # model_sample: nucleus sampling
    #: users' own preference data (prompt/chosen/rejected rows: files, hf: datasets, folders),
    #: every row added to each round's pairs
    extra: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sampling(seed=0)  # the sampling settings check their own ranges

    def sampling(self, seed: int) -> Sampling:
        """The ``model_sample`` settings as generation takes them."""
        return Sampling(n=self.samples, temperature=self.temperature, top_p=self.top_p, seed=seed)


@dataclass
class RoundsConfig:
    max_rounds: int = 3
    between: Literal["merge", "stack"] = "merge"  # merge LoRA into the weights, or keep one adapter
    reference: Literal["round_start", "original"] = "round_start"
    general_tolerance: float = 0.02  # roll back a round whose general (dev) accuracy drops more
    #: paired: roll back only when the drop also clears the paired 95% interval; drop: the point
    #: drop alone (run/gate.py)
    gate: Literal["paired", "drop"] = "paired"
    patience: int = 1  # rounds without dev improvement before stopping
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, not {self.max_rounds}")
        if not 0.0 <= self.general_tolerance <= 1.0:
            raise ValueError(f"general_tolerance is a fraction in [0, 1], not {self.general_tolerance}")


@dataclass
class RunConfig:
    """Everything an APT run needs. Paths are resolved relative to the config file.

    The defaults are the shipped demo, sized to finish in under 20 minutes on a 2-core CPU
    without AMX (where fp32 is the fast path): 2 rounds over a 300-item pool, held-out 200
    domain and 240 general items. ``configs/compare-science.yaml`` runs the bigger version."""

    name: str = "demo"
    #: ``model: NAME`` or a section (name, dtype, attn_implementation, quantization): model_config.py
    model: ModelConfig = field(default_factory=ModelConfig,
                               metadata={"help": "Registry name (see `aptune models`), Hub id or local folder"})
    device: str = _opt("auto", "Where to compute: auto (the launcher's device, else the first CUDA GPU, else MPS, "
                               "else CPU), cpu, cuda, cuda:N or mps")
    precision: Precision = _opt("auto", "Compute precision: auto (bf16 where measured faster), bf16, fp16, fp32; "
                                        "half-precision weights (model.dtype) compute in their own dtype")
    seed: int = _opt(0, "Seed for splits, sampling, training and the bootstrap")
    trust_remote_code: bool = _opt(False, "Run code shipped with a model repository (off: never by default)")
    prompt: PromptConfig = field(default_factory=PromptConfig)
    pool: TaskSet = field(default_factory=lambda: TaskSet(["sciq", "arc_easy"], "train", 150))
    dev: TaskSet = field(default_factory=lambda: TaskSet(["sciq", "arc_easy"], "dev", 25))
    domain_eval: TaskSet = field(default_factory=lambda: TaskSet(["sciq", "arc_easy"], "test", 100))
    general_eval: TaskSet = field(
        default_factory=lambda: TaskSet(["hellaswag", "piqa", "winogrande", "boolq", "commonsense_qa", "social_iqa"], "test", 40)
    )
    #: the items the general-capability gate reads (general_eval's tasks, dev split, 20 per task)
    general_dev: GeneralDevSet = field(default_factory=GeneralDevSet)
    #: lm-evaluation-harness tasks evaluated every round beside the general set (off: no tasks)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    # demo budget: 1 epoch per round; micro-batches of 2 pairs x 4 accumulation steps (= 8 pairs
    # per update) peak at 4.2 GB RSS on the demo's longest pairs, where 8 x 1 peaked at 13.5 GB
    # and was slower on this CPU (docs/run.md, "Config")
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=2, grad_accum=4))
    rounds: RoundsConfig = field(default_factory=lambda: RoundsConfig(max_rounds=2))

    def __post_init__(self) -> None:
        if isinstance(self.model, str):  # the Python API's short form, as in YAML
            self.model = ModelConfig(name=self.model)
        if self.model.quantization != "none" and self.rounds.between == "merge" and self.rounds.max_rounds > 1:
            raise ValueError(f"model.quantization: {self.model.quantization} cannot merge an adapter into quantized "
                             "weights between rounds (each merge would re-quantize them); use rounds.between: stack "
                             "with rounds.reference: original")
        for key, spec in (("device", self.device), ("mining.judge_device", self.mining.judge_device)):
            if spec is not None and not DEVICE_FORM.match(spec.strip().lower()):
                raise ValueError(f"{key}: {spec!r} is not a device; expected {DEVICE_HELP}")
        if self.adapter.kind == "alora" and self.rounds.between == "merge":
            raise ValueError("rounds.between: merge is impossible for adapter kind alora (it mixes tokens); use stack")
        if self.rounds.between == "stack" and self.rounds.reference == "round_start":
            # one adapter trained across rounds: its round-start state is not a separate model
            raise ValueError("rounds.reference: round_start needs rounds.between: merge; with stack use original")
        if not self.pool.tasks:
            raise ValueError("pool.tasks is empty: APT needs a domain training pool")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON has it (tuples as lists), so a saved config and a freshly built one
        compare equal key by key (``run_dir.config_changes``)."""
        return json.loads(json.dumps(asdict(self)))

    def resolve_paths(self, base: Path) -> "RunConfig":
        """Make data-file task entries relative to ``base`` (the config file's folder)."""
        for ts in (self.pool, self.dev, self.domain_eval, self.general_eval, self.general_dev):
            if ts.tasks is not None:
                ts.tasks = [_resolve(t, base) for t in ts.tasks]
        self.pairs.extra = [_resolve(t, base) for t in self.pairs.extra]
        self.retrieval.pool.tasks = [_resolve(t, base) for t in self.retrieval.pool.tasks]
        if self.lm_eval.include_path and not Path(self.lm_eval.include_path).is_absolute():
            self.lm_eval.include_path = str((base / self.lm_eval.include_path).resolve())
        return self


def _resolve(task: str, base: Path) -> str:
    """A data file or ``save_to_disk`` folder named relative to the config file, made absolute."""
    from aptune.data.hub import PREFIX, is_dataset_folder

    if task.startswith(PREFIX) or Path(task).is_absolute():
        return task
    looks_like_file = any(task.endswith(ext) for ext in (".jsonl", ".json", ".csv", ".parquet"))
    if looks_like_file or is_dataset_folder(str(base / task)):
        return str((base / task).resolve())
    return task


def load_run_config(path: str | Path | None, sets: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Parse and validate a run config YAML (file:line errors) with ``--set KEY=VALUE``
    overrides, resolving its data paths; no file = the shipped demo's defaults."""
    if path is None:
        return load_config(RunConfig, None, sets).resolve_paths(Path.cwd())
    path = Path(path)
    return load_config(RunConfig, path, sets).resolve_paths(path.parent)
