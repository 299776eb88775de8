"""Command-line options derived from the settings dataclasses, so a default and its help text
are declared once (in the dataclass) and the CLI cannot drift from the config schema.

``options(cls)`` turns the fields of a settings dataclass into typer options (``--mc-format``
for ``mc_format``, with the field's default and its ``help`` metadata); ``values(cls, kwargs)``
collects them back into a mapping that ``config_loader.build`` checks exactly as it checks a
YAML file (so a bad ``--mc-format`` gets the same one-line error a bad key would).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal, Optional, get_args, get_origin

import typer


def _option_type(tp: Any) -> tuple[Any, str]:
    """The Python type typer parses the option as, and a note on allowed values."""
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        inner, note = _option_type(args[0])
        return Optional[inner], note
    if get_origin(tp) is Literal:
        return str, " (" + " | ".join(map(str, get_args(tp))) + ")"
    return tp, ""


def options(cls: type, only: Iterable[str] | None = None,
            rename: dict[str, str] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``cls`` (all of them, or those named in ``only``);
    ``rename`` gives a field another option name (``name`` of the model section is ``--model``)."""
    hints = typing.get_type_hints(cls)
    wanted = list(only) if only is not None else None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    params = []
    for name in wanted or fields:
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        py_type, note = _option_type(hints[name])
        help_text = f.metadata.get("help", "")
        if note and not all(choice in help_text for choice in note.strip(" ()").split(" | ")):
            help_text += note  # name the allowed values unless the help already does
        params.append(inspect.Parameter((rename or {}).get(name, name), inspect.Parameter.KEYWORD_ONLY, annotation=py_type,
                                        default=typer.Option(default, help=help_text)))
    return params


def values(cls: type, given: dict[str, Any], only: Iterable[str] | None = None) -> dict[str, Any]:
    """The options of ``cls`` (all of its fields, or those in ``only``, as given to ``options``)
    among ``given``, the command's keyword arguments."""
    names = set(only) if only is not None else {f.name for f in dataclasses.fields(cls) if f.init}
    return {k: v for k, v in given.items() if k in names}


def with_signature(params: list[inspect.Parameter]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a ``**kwargs`` command the parameters typer should read (``inspect.signature`` honours it)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return fn
    return wrap
