"""The response schemas of ``ax.activity.list`` and ``ax.activity.detail`` (spec/activity-api.md).

Beyond the spec's fields (which are exactly what serializes):

- ``.metadata`` of a list item and of a detail is the activity's metadata (see
  :mod:`agentexec.activity.metadata`), readable in Python but never part of ``model_dump()`` /
  ``model_dump_json()``, so returning a schema from an API never leaks one tenant's metadata.
- The original agentexec's names are read-only aliases of the spec's: ``total_pages`` (``pages``),
  ``latest_log_message`` (``latest_log``), ``percentage`` (``latest_percentage``); they are
  accepted on construction too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_validator,
)

from agentexec.activity.status import Status

if TYPE_CHECKING:
    from agentexec.runners import TokenUsage


def _metadata_of(data: Any) -> dict[str, Any] | None:
    """The metadata carried by what a schema is validated from: a dict's ``metadata`` (or
    ``metadata_``) key, or an ORM row's ``metadata_`` attribute (``metadata`` on a mapped class
    is SQLAlchemy's ``MetaData``, never the activity's)."""
    if isinstance(data, Mapping):
        found = data.get("metadata", data.get("metadata_"))
    else:
        found = getattr(data, "metadata_", None)
    return dict(found) if isinstance(found, Mapping) else None


class _WithMetadata(BaseModel):
    """``.metadata``: readable, excluded from serialization (a private attribute)."""

    _metadata: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_metadata(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        model = handler(data)
        metadata = _metadata_of(data)
        if metadata is not None:
            model._metadata = metadata
        return model

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The activity's metadata (``None`` when it has none); not serialized."""
        return self._metadata

    def with_metadata(self, metadata: Mapping[str, Any] | None) -> Self:
        """This schema, carrying ``metadata`` (for stores: ``Schema(...).with_metadata(m)``;
        ``Schema(..., metadata=m)`` works too, but type checkers only know the fields)."""
        self._metadata = None if metadata is None else dict(metadata)
        return self


class ActivityLogSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message: str
    status: Status
    percentage: int | None
    created_at: datetime


class ActivityDetailSchema(_WithMetadata):
    model_config = ConfigDict(from_attributes=True)

    agent_id: UUID
    agent_type: str
    created_at: datetime
    updated_at: datetime
    status: Status
    latest_percentage: int | None = Field(
        validation_alias=AliasChoices("latest_percentage", "percentage")
    )
    logs: list[ActivityLogSchema]

    @property
    def percentage(self) -> int | None:
        """The original agentexec's name of ``latest_percentage``."""
        return self.latest_percentage

    @property
    def usage(self) -> TokenUsage | None:
        """The tokens the task's agent runs used, summed over every run the activity logged
        (recovery runs, pipeline steps), or ``None`` when no runner logged any. Not part of
        ``model_dump()``, like ``metadata``."""
        from agentexec.runners import TokenUsage

        return TokenUsage.total(log.message for log in self.logs)

    @property
    def cost(self) -> float | None:
        """US dollars of :attr:`usage` (:mod:`agentexec.pricing`), or ``None`` when unknown."""
        usage = self.usage
        return None if usage is None else usage.cost


class ActivityListItemSchema(_WithMetadata):
    model_config = ConfigDict(from_attributes=True)

    agent_id: UUID
    agent_type: str
    created_at: datetime
    updated_at: datetime
    status: Status
    latest_log: str | None = Field(validation_alias=AliasChoices("latest_log", "latest_log_message"))
    latest_percentage: int | None = Field(
        validation_alias=AliasChoices("latest_percentage", "percentage")
    )

    @property
    def latest_log_message(self) -> str | None:
        """The original agentexec's name of ``latest_log``."""
        return self.latest_log

    @property
    def percentage(self) -> int | None:
        """The original agentexec's name of ``latest_percentage``."""
        return self.latest_percentage


class ActivityListSchema(BaseModel):
    items: list[ActivityListItemSchema]
    total: int
    page: int
    page_size: int
    pages: int = Field(validation_alias=AliasChoices("pages", "total_pages"))

    @property
    def total_pages(self) -> int:
        """The original agentexec's name of ``pages``."""
        return self.pages

    @staticmethod
    def page_count(total: int, page_size: int) -> int:
        """Pages needed for ``total`` items: ceil(total / page_size), so 0 when there are none."""
        return -(-total // page_size) if page_size > 0 else 0
