"""Process-local SQLAlchemy sessions, provided by ``agentexec-sqlalchemy``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentexec._lazy_module import plugin_getattr

if TYPE_CHECKING:
    from agentexec_sqlalchemy.activity.session import (  # noqa: TID251
        get_global_session,
        remove_global_session,
        set_global_session,
    )

__all__ = ["get_global_session", "remove_global_session", "set_global_session"]
__getattr__ = plugin_getattr(__name__, "sqlalchemy", tuple(__all__))
