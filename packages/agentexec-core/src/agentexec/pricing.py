"""Model prices: what turns a run's token usage into money (``ax.pricing``).

The shipped table holds OpenAI's published list prices **as of** :data:`PRICES_AS_OF`, in US
dollars per million tokens. Prices change and differ per contract: override them with
:func:`set_prices` (or a JSON file named by ``AGENTEXEC_PRICES_FILE``), which also adds models
the table lacks. A model the table does not know has no cost (``None``), never a guess.

::

    ax.pricing.set_prices({"my-finetune": ax.pricing.Price(input=3.0, output=12.0, cached_input=1.5)})

A model name with a dated suffix (``gpt-4.1-2025-04-14``) takes the price of the longest known
name it starts with. Reasoning tokens are billed as output tokens, which already count them;
cached input tokens are billed at ``cached_input`` instead of ``input``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: when the shipped prices were last checked against the provider's published list prices
PRICES_AS_OF = "2025-08-07"


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    #: cached input tokens (prompt caching); ``None``: billed as ``input``
    cached_input: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((input_tokens - cached) * self.input + cached * cached_rate + output_tokens * self.output) / 1e6


#: OpenAI list prices (standard tier) as of PRICES_AS_OF
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o3": Price(2.00, 8.00, 0.50),
    "o4-mini": Price(1.10, 4.40, 0.275),
}

_overrides: dict[str, Price] = {}
_file_loaded: str | None = None


def set_prices(prices: Mapping[str, Price]) -> None:
    """Add or replace prices (per model name) for this process; they win over the shipped ones."""
    for model, price in prices.items():
        if not isinstance(model, str) or not model:
            raise TypeError(f"a price's model must be a non-empty str, got {model!r}")
        if not isinstance(price, Price):
            raise TypeError(
                f"the price of {model!r} must be ax.pricing.Price(input=..., output=...), got {price!r}"
            )
    _overrides.update(prices)


def reset_prices() -> None:
    """Forget :func:`set_prices` (tests)."""
    global _file_loaded
    _overrides.clear()
    _file_loaded = None


def load_prices_file(path: str | Path) -> dict[str, Price]:
    """``{"model": {"input": 2.0, "output": 8.0, "cached_input": 0.5}, ...}`` (US dollars per
    million tokens), checked."""
    try:
        raw: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the prices file {str(path)!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"the prices file {str(path)!r} must hold a JSON object of model -> price")
    prices: dict[str, Price] = {}
    for model, entry in raw.items():
        try:
            prices[model] = Price(
                float(entry["input"]), float(entry["output"]),
                None if entry.get("cached_input") is None else float(entry["cached_input"]),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError(
                f"the prices file {str(path)!r}: {model!r} must be "
                f'{{"input": <USD per 1M tokens>, "output": <...>, "cached_input": <optional>}}, got {entry!r}'
            ) from None
    return prices


def _from_file() -> None:
    global _file_loaded
    from agentexec.config import CONF

    path = CONF.prices_file
    if path and path != _file_loaded:
        for model, price in load_prices_file(path).items():
            _overrides.setdefault(model, price)  # set_prices() wins over the file
        _file_loaded = path


def price_of(model: str | None) -> Price | None:
    """The price of ``model`` (an override first, then the shipped table), or ``None``."""
    if not model:
        return None
    _from_file()
    for table in (_overrides, DEFAULT_PRICES):
        if model in table:
            return table[model]
    best: str | None = None
    for table in (_overrides, DEFAULT_PRICES):
        for name in table:
            if model.startswith(name + "-") and (best is None or len(name) > len(best)):
                best = name
    if best is None:
        return None
    return _overrides.get(best) or DEFAULT_PRICES[best]


def cost_of(model: str | None, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float | None:
    """US dollars for this usage of ``model``, or ``None`` when its price is unknown."""
    price = price_of(model)
    return None if price is None else price.cost(input_tokens, output_tokens, cached_tokens)


__all__ = [
    "DEFAULT_PRICES", "PRICES_AS_OF", "Price", "cost_of", "load_prices_file", "price_of",
    "reset_prices", "set_prices",
]
