"""Prompt methods. Each subfolder is one method and registers itself; see :mod:`mtpt.methods.contract`."""

from mtpt.methods.registry import MethodSpec, discover, get_method, list_methods, register_method

__all__ = ["MethodSpec", "discover", "get_method", "list_methods", "register_method"]
