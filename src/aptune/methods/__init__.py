"""The methods a comparison runs, one module each, in one table (``registry.METHODS``)."""

from aptune.methods.registry import METHODS, Method, MethodSpec, get_method, make_run, method_overrides, register_method
from aptune.methods.sft import ReplayConfig

__all__ = ["METHODS", "Method", "MethodSpec", "ReplayConfig", "get_method", "make_run", "method_overrides",
           "register_method"]
