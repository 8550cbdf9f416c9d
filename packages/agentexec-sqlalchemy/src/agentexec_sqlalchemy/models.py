"""The activity ORM under its name from before the ``activity/`` / ``transport/`` split, for code
that imports it from here (benchmarks, applications): it is :mod:`.activity.models`."""

from agentexec_sqlalchemy.activity.models import (
    ACTIVITY_LOG_TABLE,
    ACTIVITY_TABLE,
    Activity,
    ActivityLog,
    Base,
)

__all__ = ["ACTIVITY_LOG_TABLE", "ACTIVITY_TABLE", "Activity", "ActivityLog", "Base"]
