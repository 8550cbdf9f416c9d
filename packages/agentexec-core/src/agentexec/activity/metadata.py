"""Activity metadata: free-form JSON attached to an activity (tenant, user ...), and the filter
that selects activities by it. The rules every store follows:

- Metadata is a ``dict`` with ``str`` keys and JSON values (``str``, ``int``, finite ``float``,
  ``bool``, ``None``, lists and dicts of these). No string in it (key or value) may contain a
  NUL character: PostgreSQL cannot store one in JSON, and SQLite's JSON functions cut a string
  at it (``"A\\x00zzz"`` would read as ``"A"``), so it is refused everywhere alike. Stores keep
  it with the keys of every object sorted (:func:`validate_metadata` returns that form).
- A filter ``{"k1": v1, "k2": v2}`` selects the activities whose metadata has *every* pair:
  key present and value JSON-equal. JSON-equal is typed, never string-coerced: ``1`` matches
  ``1`` and ``1.0`` but neither ``"1"`` nor ``true``; ``None`` matches a key whose value is
  ``null`` (not a missing key); lists and objects match as whole values (object key order does
  not matter).
- ``None`` (the argument omitted) is no filter. An empty filter ``{}`` is refused with a
  ``ValueError``: a tenant filter built from a missing claim would otherwise select every tenant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["json_equal", "metadata_matches", "validate_metadata", "validate_metadata_filter"]

_NUL = "\x00"


def _canonical(value: Any, where: str) -> Any:
    """``value`` checked to be JSON without NUL characters, with object keys sorted."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if _NUL in value:
            raise ValueError(f"{where}: a string contains a NUL character (\\x00), which no store keeps")
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(value, key=_key_order(where)):
            if _NUL in key:
                raise ValueError(f"{where}: key {key!r} contains a NUL character (\\x00), which no store keeps")
            out[key] = _canonical(value[key], f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{where}[{n}]") for n, item in enumerate(value)]
    raise TypeError(
        f"{where}: {type(value).__name__} is not a JSON value (use str, int, float, bool, None, "
        f"lists and dicts of these)"
    )


def _key_order(where: str) -> Any:
    def order(key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"{where}: keys must be str, got {key!r}")
        return key

    return order


def validate_metadata(metadata: Any) -> dict[str, Any] | None:
    """The metadata to store (keys sorted at every level), or ``None``; ``TypeError`` /
    ``ValueError`` saying what is wrong."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"metadata must be a dict such as {{'organization_id': 'org-123'}}, got "
            f"{type(metadata).__name__}"
        )
    result: dict[str, Any] = _canonical(metadata, "metadata")
    return result


def validate_metadata_filter(metadata_filter: Any) -> dict[str, Any] | None:
    """The filter in its checked form: ``None`` for no filter; a non-empty dict of JSON values.

    ``{}`` raises ``ValueError`` (see the module doc)."""
    if metadata_filter is None:
        return None
    if not isinstance(metadata_filter, Mapping):
        raise TypeError(
            f"metadata_filter must be a dict of key/value pairs to match, such as "
            f"{{'organization_id': 'org-123'}}, got {type(metadata_filter).__name__}"
        )
    if not metadata_filter:
        raise ValueError(
            "metadata_filter={} has no key/value pairs, so it would match every tenant's "
            "activities; pass the pairs to match, or omit metadata_filter for no filter"
        )
    result: dict[str, Any] = _canonical(metadata_filter, "metadata_filter")
    return result


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: typed (``True`` is not ``1``), numbers by value, objects by their pairs."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def metadata_matches(metadata: Mapping[str, Any] | None, metadata_filter: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` has every pair of the (validated) ``metadata_filter``."""
    if not metadata:
        return False
    return all(key in metadata and json_equal(metadata[key], value)
               for key, value in metadata_filter.items())
