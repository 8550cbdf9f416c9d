"""The ORM models ``Activity`` and ``ActivityLog`` (provided by ``agentexec-sqlalchemy``) and ``Status``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentexec._lazy_module import plugin_getattr
from agentexec.activity.status import Status

if TYPE_CHECKING:
    from agentexec_sqlalchemy.activity.models import Activity, ActivityLog, Base  # noqa: TID251

__all__ = ["Activity", "ActivityLog", "Base", "Status"]
__getattr__ = plugin_getattr(__name__, "sqlalchemy", ("Activity", "ActivityLog", "Base"))
