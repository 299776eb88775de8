"""Generation backends: what answers generative items in mining and evaluation.

A backend is anything with ``generate(prompts, max_new_tokens) -> list[str]`` (greedy, prompts
already rendered by ``aptune.prompts``, one completion per prompt, input order); k-shot plain
prompts also pass ``stop=`` (strings where an answer ends), which a backend may use to stop
early — the caller cuts every answer at its first stop string either way. The default,
``transformers``, wraps ``generation.generate_greedy`` (transformers' ``generate`` with the KV
cache). A faster engine (vLLM, SGLang, llama.cpp, a server) plugs in by name without touching
the loop, either in code::

    @register_backend("my-engine")
    def make(model, tokenizer, **options) -> GenerationBackend: ...

or from an installed package, through the entry-point group ``aptune.generation_backends``
(the entry point names a factory with that same signature). The run config picks one with
``mining.generation_backend``. A backend must be deterministic (greedy) so that a resumed run
and a multi-process run mine the same weakness cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from aptune.evaluate.generation import generate_greedy

ENTRY_POINT_GROUP = "aptune.generation_backends"


@runtime_checkable
class GenerationBackend(Protocol):
    """Greedy completions of rendered prompts, one per prompt, in input order."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...


#: (model, tokenizer, **options) -> backend; options: dtype, batch_size, max_prompt_tokens, progress, desc
BackendFactory = Callable[..., GenerationBackend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make ``factory`` available as ``mining.generation_backend: <name>``."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def _from_entry_points(name: str) -> BackendFactory | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def available_backends() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(set(_REGISTRY) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get_backend(name: str, model: Any, tokenizer: Any, **options: Any) -> GenerationBackend:
    """Build the backend registered as ``name`` over ``model``/``tokenizer``."""
    factory = _REGISTRY.get(name) or _from_entry_points(name)
    if factory is None:
        raise ValueError(f"unknown generation backend {name!r} (available: {', '.join(available_backends())})")
    backend = factory(model, tokenizer, **options)
    if not isinstance(backend, GenerationBackend):
        raise TypeError(f"generation backend {name!r} has no generate(prompts, max_new_tokens) method")
    return backend


class TransformersBackend:
    """The default: batched greedy ``model.generate`` with left padding and the KV cache."""

    name = "transformers"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        max_prompt_tokens: int | None = None,
        progress: bool = True,
        desc: str = "generating",
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.dtype, self.batch_size, self.max_prompt_tokens = dtype, batch_size, max_prompt_tokens
        self.progress, self.desc = progress, desc

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        return generate_greedy(
            self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=self.batch_size,
            max_prompt_tokens=self.max_prompt_tokens, dtype=self.dtype, progress=self.progress, desc=self.desc,
            stop=stop,
        )


register_backend("transformers")(TransformersBackend)
