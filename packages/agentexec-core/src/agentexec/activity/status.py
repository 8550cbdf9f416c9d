from enum import Enum


class Status(str, Enum):
    """The state of an activity, derived from its latest log entry."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    CANCELED = "CANCELED"

    @classmethod
    def pending(cls) -> tuple["Status", ...]:
        """The statuses ``cancel_pending`` cancels."""
        return (cls.QUEUED, cls.RUNNING)
