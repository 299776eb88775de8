"""Peak memory of training and evaluation, planned from the model's config before any weight loads.

``aptune plan`` / ``aptune run --plan`` print ``plan_for_run(cfg).format()`` and refuse with
``check_fits`` when the peak cannot fit the chosen device. The model's shape comes from its
``config.json``: the model is instantiated on the meta device (no memory, no weights), so the
parameter count and every linear layer's shape are exact, not guessed.

Formulas (bytes; ``P`` = parameters of the model, ``P_a`` = trainable adapter parameters,
``L`` layers, ``h`` hidden size, ``q = heads·head_dim``, ``kv = kv_heads·head_dim``, ``I`` MLP
intermediate size, ``V`` vocabulary, ``n_t`` adapted linears per layer, ``r`` adapter rank):

- **weights**: ``P · bytes(dtype)`` (fp32 4, bf16/fp16 2). 4-bit / 8-bit (bitsandbytes) quantizes
  the decoder's linear weights only: ``P_lin · 4.127/8`` (NF4 with double-quantized absmax:
  4.127 bits per weight) or ``P_lin · (1 + 4/in_features)`` (int8 + one fp32 scale per row);
  embeddings, norms and the output head stay in the compute dtype (2 bytes).
- **adapter + optimizer**: adapters stay fp32 whatever the weights (PEFT's default
  ``autocast_adapter_dtype=True`` upcasts them; aptune's ALoRA is built in the weights' dtype on
  fp32 models), so ``4·P_a`` for the parameters and ``8·P_a`` for AdamW's two moment estimates.
  No master copy: the trained parameters are already fp32. **gradients**: ``4·P_a``.
  LoRA: ``P_a = Σ r·(in + out)`` over the adapted linears; ALoRA adds ``4·r²`` per adapted
  linear (its r×3r qkv and r×r output projections), ``r·in`` more with ``placement: parallel``
  and ``r`` with ``combine: gated`` (``adapters/attention_lora/layer.py``).
- **activations** (saved for backward, per layer per token): measured, not assumed, with
  ``torch.autograd.graph.saved_tensors_hooks`` on Llama-shaped PEFT LoRA models (all-linear, 6
  shapes, torch 2.13 / transformers 5.25 / peft 0.21; exact fit, the fp32-weights-bf16-autocast
  row within 4%)::

      weights fp32, compute fp32:  24·h + 8·kv + 16·I + 4·heads + 4·n_t·r + 8
      weights bf16/fp16/quant.:    24·h + 4·kv +  8·I + 4·heads + 2·n_t·r + 8
      weights fp32, bf16 autocast: 42·h + 11·kv + 12·I + 12·heads + 2·n_t·r

  i.e. in fp32 6h + 2kv + 4I elements (norm inputs, q/k/v/attention output, gate/up/SiLU/product),
  and in half precision PEFT's fp32 casts of each adapted layer's input add bf16 copies. A
  packed pair batch (4-D mask) adds ``bytes·(2·(q − kv) + T)`` per layer per token: grouped
  k/v are expanded to every head and the mask is saved per layer in the compute dtype. With
  **gradient checkpointing** only each layer's input is kept (``h·bytes`` per layer per token)
  and one layer's full set is rebuilt during backward. One more layer's set is counted as the
  backward's working space. On the CPU, glibc keeps freed activation buffers in the process
  heap: the measured RSS is ``CPU_HEAP_FACTOR`` × the live tensors, and checkpointing lowered
  the measured peak only to ``CPU_CHECKPOINT_RATIO`` of the peak without it; a CPU training call
  also adds ``CPU_TRAIN_RUNTIME_BYTES`` of runtime buffers.
- **logits**: only response positions reach the LM head (``logits_to_keep``,
  ``train/logprobs.py``): ``rows · (K + 1) · V · c`` with K the scored response tokens per row and
  ``c`` = 12 bytes in fp32 (the logits, the gradient of the logits, the softmax in backward) or
  16 in half precision (the logits are upcast to fp32 before the log-softmax).
- **reference copy**: ``separate_copy`` holds a second set of weights during training (the
  classic DPO reference model). aptune never does: the reference is the adapter switched off,
  or (``rounds.reference: original`` after merged rounds) log-probs the original weights score
  before the same copy takes the accepted rounds' merges (``methods/preference.py``).
- **evaluation**: no gradients: weights + adapter + one layer's working set for
  ``eval_tokens`` (``EvalSettings.max_tokens_per_batch``) + their kept logits (half of the tokens
  are scored: answer choices) + a generation KV cache ``2·L·kv·bytes`` per token for
  ``generation_batch`` sequences of ``seq_len + max_new_tokens``.
- **framework overhead**: CPU: the interpreter with torch, transformers, peft and accelerate
  imported (``CPU_PROCESS_BYTES``, measured); CUDA: ``CUDA_CONTEXT_BYTES`` for the context and
  kernels, which ``torch.cuda.mem_get_info`` reports as used, plus ``CUDA_FRAGMENTATION`` of the
  dynamic part for the caching allocator (not yet measured on a GPU).

``peak_bytes`` = overhead + max(training step, evaluation).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from aptune.adapters.config import AdapterConfig

if TYPE_CHECKING:
    from aptune.config import RunConfig

WeightDtype = Literal["fp32", "bf16", "fp16", "4bit", "8bit"]
Compute = Literal["fp32", "bf16", "fp16"]
ReferenceMode = Literal["adapter_disabled", "precomputed", "separate_copy"]
DeviceKind = Literal["cpu", "cuda", "mps"]

GIB = 1024**3
#: plan_for_run's default tokens per sequence: the model's context, capped here (a plan for a
#: 128k-context model at its full window says nothing about an APT run's short pairs)
PLAN_SEQ_CAP = 512
#: RSS of a process that imported torch, transformers, peft and accelerate (2-core AMD EPYC,
#: torch 2.13 CPU: 414 MiB), before any model
CPU_PROCESS_BYTES = 414 * 2**20
#: measured RSS growth of activations and logits over the live tensors they stand for (glibc
#: keeps freed buffers: SmolLM2-135M LoRA DPO steps, fp32, 1.2-1.5x over sequences of 290-500)
CPU_HEAP_FACTOR = 1.5
#: measured RSS growth of a training call with gradient checkpointing over the same call without,
#: on the CPU (SmolLM2-135M LoRA DPO, 2 pairs of 120/200/400-word prompts: 0.64, 0.80, 0.54): the
#: heap keeps the recomputed layers' buffers, so checkpointing saves far less than on a GPU
CPU_CHECKPOINT_RATIO = 0.65
#: RSS a CPU training call adds beyond its tensors (autograd, oneDNN and per-thread heap arenas):
#: measured 30 MiB for a 2-layer, 64-wide model whose planned tensors are 2 MiB
CPU_TRAIN_RUNTIME_BYTES = 48 * 2**20
#: CUDA context + cuBLAS/cuDNN workspaces outside torch's allocator (typical; not measured here)
CUDA_CONTEXT_BYTES = 1 * GIB
#: caching-allocator fragmentation on top of the live tensors (typical; not measured here)
CUDA_FRAGMENTATION = 0.10
_NF4_BITS = 4.127


@dataclass(frozen=True)
class ModelShape:
    """Facts about a causal LM read from its config, counted exactly on the meta device."""

    params: int  # every parameter, tied ones once
    linear_params: int  # decoder nn.Linear weights (what 4/8-bit quantization shrinks)
    linears: tuple[tuple[str, int, int], ...]  # (name, in, out) of every nn.Linear but the head
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    max_positions: int | None

    @classmethod
    def from_config(cls, config: Any) -> "ModelShape":
        """Instantiate ``config`` (a transformers PretrainedConfig) on the meta device and read it."""
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):  # (accelerate's init_empty_weights leaves tied heads untied here)
            model = AutoModelForCausalLM.from_config(config)
        head = model.get_output_embeddings()
        linears = tuple((name, m.in_features, m.out_features) for name, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and m is not head)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = int(text.num_attention_heads)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(
            params=sum(p.numel() for p in model.parameters()),
            linear_params=sum(i * o for _, i, o in linears),
            linears=linears,
            hidden=int(text.hidden_size),
            layers=int(text.num_hidden_layers),
            heads=heads,
            kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            intermediate=int(text.intermediate_size),
            vocab=int(text.vocab_size),
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            max_positions=getattr(text, "max_position_embeddings", None),
        )

    @classmethod
    def from_config_file(cls, path: str) -> "ModelShape":
        """The shape a model's ``config.json`` (saved anywhere) describes: plan a Hub model offline."""
        import json

        from transformers import AutoConfig

        try:
            data = json.loads(open(path, encoding="utf-8").read())
            return cls.from_config(AutoConfig.for_model(**data))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a model config.json ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None

    @classmethod
    def from_pretrained(cls, name_or_path: str, trust_remote_code: bool = False) -> "ModelShape":
        """The shape of a registry name, local folder or Hub id: reads config.json only."""
        from transformers import AutoConfig

        from aptune.models import resolve_model_path

        return cls.from_config(AutoConfig.from_pretrained(resolve_model_path(name_or_path),
                                                          trust_remote_code=trust_remote_code))


def _targeted(name: str, targets: str | tuple[str, ...]) -> bool:
    """``adapters/targets.py``'s rule: all-linear, a list of name suffixes, or a full-name regex."""
    if targets == "all-linear":
        return True
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def adapter_parameters(shape: ModelShape, adapter: AdapterConfig) -> int:
    """Trainable parameters of ``adapter`` on a model of ``shape`` (LoRA: PEFT's count)."""
    total = 0
    r = adapter.r
    for name, d_in, d_out in shape.linears:
        if not _targeted(name, adapter.target_modules):
            continue
        total += r * (d_in + d_out)
        if adapter.kind == "alora":
            total += 4 * r * r + (r * d_in if adapter.placement == "parallel" else 0) + (r if adapter.combine == "gated" else 0)
    return total


@dataclass(frozen=True)
class PlanInputs:
    """What the peak depends on. Sequences: a pair is a prompt of ``seq_len - response_len``
    tokens and two responses of ``response_len``; ``packed`` lays it out as one row of
    ``seq_len + response_len`` tokens, else two rows of ``seq_len``."""

    shape: ModelShape
    weight_dtype: WeightDtype = "fp32"
    compute: Compute = "fp32"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    batch_size: int = 2  # pairs per micro-batch
    seq_len: int = 512
    response_len: int | None = None  # default: seq_len // 4
    packed: bool = True
    gradient_checkpointing: bool = False
    reference: ReferenceMode = "adapter_disabled"
    eval_tokens: int = 4096  # EvalSettings.max_tokens_per_batch
    generation_batch: int = 16  # EvalSettings.generation_batch_size
    max_new_tokens: int = 64  # EvalSettings.max_new_tokens
    device: DeviceKind = "cpu"

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "eval_tokens", "generation_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")

    @property
    def response_tokens(self) -> int:
        return self.response_len if self.response_len is not None else max(1, self.seq_len // 4)


def _bytes(dtype: str) -> int:
    return 4 if dtype == "fp32" else 2


def weight_bytes(shape: ModelShape, dtype: WeightDtype) -> int:
    """The loaded weights (see the module docstring for the quantized formulas)."""
    if dtype in ("fp32", "bf16", "fp16"):
        return shape.params * _bytes(dtype)
    rest = (shape.params - shape.linear_params) * 2
    if dtype == "4bit":
        return rest + math.ceil(shape.linear_params * _NF4_BITS / 8)
    if dtype == "8bit":
        return rest + sum(i * o + 4 * o for _, i, o in shape.linears)
    raise ValueError(f"weight dtype must be fp32, bf16, fp16, 4bit or 8bit, not {dtype!r}")


def _targets_per_layer(inputs: PlanInputs) -> float:
    adapted = sum(1 for name, _, _ in inputs.shape.linears if _targeted(name, inputs.adapter.target_modules))
    return adapted / max(inputs.shape.layers, 1)


def layer_activation_bytes(inputs: PlanInputs, row_len: int) -> float:
    """Bytes saved for backward per layer per token (module docstring: the measured fit)."""
    s = inputs.shape
    q, kv, n_r = s.heads * s.head_dim, s.kv_heads * s.head_dim, _targets_per_layer(inputs) * inputs.adapter.r
    if inputs.adapter.kind == "alora":
        n_r *= 10  # rank-space q, k, v, attention output and o-projection input (r each, estimated)
    half = inputs.weight_dtype != "fp32"
    if inputs.compute == "fp32" and not half:
        per, elem = 24 * s.hidden + 8 * kv + 16 * s.intermediate + 4 * s.heads + 4 * n_r + 8, 4
    elif half:
        per, elem = 24 * s.hidden + 4 * kv + 8 * s.intermediate + 4 * s.heads + 2 * n_r + 8, 2
    else:
        per, elem = 42 * s.hidden + 11 * kv + 12 * s.intermediate + 12 * s.heads + 2 * n_r, 2
    if inputs.packed:
        per += elem * (2 * (q - kv) + row_len)
    return per


@dataclass(frozen=True)
class MemoryPlan:
    """The planned peak and its parts, in bytes."""

    inputs: PlanInputs
    weights: int
    adapter_params: int  # count, not bytes
    adapter_and_optimizer: int
    gradients: int
    activations: int
    logits: int
    reference_copy: int
    overhead: int
    train_bytes: int  # the training step, without overhead
    eval_bytes: int  # the evaluation batch, without overhead

    @property
    def peak_bytes(self) -> int:
        return self.overhead + max(self.train_bytes, self.eval_bytes)

    def format(self) -> str:
        """A few readable lines (GiB, one decimal)."""
        i = self.inputs
        g = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
        weights = f"{i.weight_dtype} weights"
        ckpt = "on" if i.gradient_checkpointing else "off"
        lines = [
            f"planned peak {g(self.peak_bytes)} on {i.device} ({self.inputs.shape.params / 1e6:,.1f}M params, {weights}, "
            f"{i.compute} compute, {i.adapter.kind} r{i.adapter.r}, batch {i.batch_size} pairs x {i.seq_len} tokens, "
            f"gradient checkpointing {ckpt})",
            f"  weights {g(self.weights)}; adapter + AdamW {g(self.adapter_and_optimizer)} "
            f"({self.adapter_params / 1e6:,.2f}M trainable); gradients {g(self.gradients)}",
            f"  activations {g(self.activations)}; logits {g(self.logits)}; reference copy {g(self.reference_copy)}; "
            f"overhead {g(self.overhead)}",
            f"  training step {g(self.train_bytes + self.overhead)}; evaluation {g(self.eval_bytes + self.overhead)}",
        ]
        return "\n".join(lines)


def estimate(inputs: PlanInputs) -> MemoryPlan:
    """Plan the peak of one training step and of evaluation (formulas: the module docstring)."""
    s, cpu = inputs.shape, inputs.device == "cpu"
    k = inputs.response_tokens
    if inputs.packed:
        rows, row_len, kept = inputs.batch_size, inputs.seq_len + k, 2 * k + 1
    else:
        rows, row_len, kept = 2 * inputs.batch_size, inputs.seq_len, k + 1
    tokens = rows * row_len
    weights = weight_bytes(s, inputs.weight_dtype)
    n_a = adapter_parameters(s, inputs.adapter)
    per_layer = layer_activation_bytes(inputs, row_len) * tokens
    if inputs.gradient_checkpointing:
        stream = 4 if inputs.weight_dtype == "fp32" else 2
        activations = s.layers * tokens * s.hidden * stream + 2 * per_layer
        if cpu:
            full = replace(inputs, gradient_checkpointing=False)
            activations = max(activations, int(CPU_CHECKPOINT_RATIO * _activations(full, per_layer)))
    else:
        activations = _activations(inputs, per_layer)
    half = inputs.compute != "fp32"
    logits = rows * kept * s.vocab * (16 if half else 12)
    if cpu:
        activations, logits = int(activations * CPU_HEAP_FACTOR), int(logits * CPU_HEAP_FACTOR)
    reference = weights if inputs.reference == "separate_copy" else 0
    train = weights + 16 * n_a + activations + logits + reference + (CPU_TRAIN_RUNTIME_BYTES if cpu else 0)
    eval_act = layer_activation_bytes(replace(inputs, packed=False), 0) * inputs.eval_tokens
    eval_logits = inputs.eval_tokens // 2 * s.vocab * (6 if half else 4)
    kv_cache = 2 * s.layers * s.kv_heads * s.head_dim * (2 if half else 4) * inputs.generation_batch * (
        inputs.seq_len + inputs.max_new_tokens)
    evaluation = weights + 4 * n_a + int(eval_act) + max(eval_logits, kv_cache)
    if inputs.device == "cuda":
        overhead = CUDA_CONTEXT_BYTES + int(CUDA_FRAGMENTATION * max(train, evaluation))
    else:
        overhead = CPU_PROCESS_BYTES
    return MemoryPlan(inputs=inputs, weights=weights, adapter_params=n_a, adapter_and_optimizer=12 * n_a,
                      gradients=4 * n_a, activations=int(activations), logits=int(logits), reference_copy=reference,
                      overhead=overhead, train_bytes=int(train), eval_bytes=int(evaluation))


def _activations(inputs: PlanInputs, per_layer: float) -> int:
    """Without checkpointing: every layer's saves, plus one layer's worth of backward working space."""
    return int((inputs.shape.layers + 1) * per_layer)


def planned_dtypes(cfg: "RunConfig", device: DeviceKind) -> tuple[WeightDtype, Compute]:
    """The weights' dtype and the compute dtype a run of ``cfg`` gets on a ``device`` of that kind.

    Planning for a GPU from a machine without one takes ``model.dtype: auto`` as bf16 (every GPU
    since Ampere); on this machine's own GPU it asks the GPU."""
    import torch

    from aptune.model_config import DTYPE_NAMES, compute_dtype, resolve_weight_dtype, weights_name

    here = torch.device(device)
    elsewhere = device == "cuda" and not torch.cuda.is_available()  # a plan for a GPU this machine lacks
    weights = torch.bfloat16 if elsewhere and cfg.model.dtype == "auto" else resolve_weight_dtype(cfg.model.dtype, here)
    if elsewhere and weights == torch.float32 and cfg.train.precision == "auto":
        compute = "bf16"
    else:
        compute = DTYPE_NAMES[compute_dtype(cfg.train.precision, weights, here)]
    return weights_name(cfg.model, weights), compute  # type: ignore[return-value]


def answer_budget(cfg: "RunConfig") -> int:
    """The longest answer the run generates: ``mining.max_new_tokens``, else the largest budget
    among its bundled tasks (a data file's items take the evaluator's default)."""
    from aptune.data import registry
    from aptune.evaluate.runner import DEFAULT_MAX_NEW_TOKENS

    if cfg.mining.max_new_tokens is not None:
        return cfg.mining.max_new_tokens
    names = {t for ts in (cfg.pool, cfg.dev, cfg.domain_eval, cfg.general_eval) for t in ts.tasks}
    budgets = [getattr(registry.get_task(n), "max_new_tokens", None) for n in names if registry.has_task(n)]
    return max([b for b in budgets if b] or [DEFAULT_MAX_NEW_TOKENS])


def plan_for_run(
    cfg: "RunConfig",
    seq_len: int | None = None,
    weight_dtype: WeightDtype | None = None,
    device: DeviceKind = "cpu",
    shape: ModelShape | None = None,
    compute: Compute | None = None,
) -> MemoryPlan:
    """The plan of a run config, reading only the model's config.json.

    ``seq_len`` defaults to ``train.max_length`` (where the trainer cuts each side of a pair),
    capped at the model's context. ``weight_dtype`` and ``compute`` default to what the run
    would load and compute in on ``device`` (``model.dtype`` / ``model.quantization``, and
    ``train.precision`` for fp32 weights; see ``planned_dtypes``). ``shape`` skips reading the
    config. The DPO reference never adds a copy: with ``rounds.reference: original`` after merged
    rounds the original weights score it before the same copy takes the merges."""
    from aptune.evaluate.runner import EvalSettings

    shape = shape or ModelShape.from_pretrained(cfg.model.name, cfg.trust_remote_code)
    length = seq_len or min(cfg.train.max_length, shape.max_positions or cfg.train.max_length)
    planned_weights, planned_compute = planned_dtypes(cfg, device)
    weight_dtype, compute = weight_dtype or planned_weights, compute or planned_compute
    original = cfg.rounds.reference == "original" and cfg.rounds.between == "merge" and cfg.rounds.max_rounds > 1
    settings = EvalSettings()
    return estimate(PlanInputs(
        shape=shape, weight_dtype=weight_dtype or "fp32", compute=compute, adapter=cfg.adapter,
        batch_size=cfg.train.batch_size, seq_len=length, packed=cfg.train.packed,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        reference="precomputed" if original else "adapter_disabled",
        eval_tokens=settings.max_tokens_per_batch, generation_batch=settings.generation_batch_size,
        max_new_tokens=answer_budget(cfg), device=device,
    ))
