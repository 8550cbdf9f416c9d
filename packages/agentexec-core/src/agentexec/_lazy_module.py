"""Modules whose public names come from a plugin (``agentexec.core.db`` and friends)."""

from __future__ import annotations

from typing import Any


def plugin_getattr(module: str, extra: str, names: tuple[str, ...]) -> Any:
    """A module ``__getattr__`` that resolves ``names`` through the plugins, with the install hint."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        from agentexec.plugins import resolve_name

        return resolve_name(module, name, extra)

    return __getattr__
