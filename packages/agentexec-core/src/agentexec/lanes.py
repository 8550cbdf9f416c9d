"""Lanes: the queues one pool's workers consume, each with its own slots.

A pool has the ``default`` lane (its queue, ``CONF.worker_concurrency`` slots per process) and a
``pipelines`` lane (``<queue>:pipelines``, ``CONF.pipeline_concurrency`` slots). Pipelines get
their own slots because a pipeline spends its life awaiting child tasks: were it to hold a task
slot, a busy pool could fill every slot with waiting pipelines and their children would never run.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentexec.config import CONF

DEFAULT_LANE = "default"
PIPELINES_LANE = "pipelines"
LANES = (DEFAULT_LANE, PIPELINES_LANE)


def lane_queue_name(queue_name: str, lane: str = DEFAULT_LANE) -> str:
    """The queue a lane consumes: the pool's queue itself for ``default``, ``<queue>:<lane>`` else."""
    check_lane(lane)
    return queue_name if lane == DEFAULT_LANE else f"{queue_name}:{lane}"


def base_queue_name(queue_name: str) -> str:
    """The pool's own queue behind a lane's queue (``q:pipelines`` -> ``q``)."""
    for lane in LANES:
        suffix = f":{lane}"
        if lane != DEFAULT_LANE and queue_name.endswith(suffix):
            return queue_name[: -len(suffix)]
    return queue_name


def lane_slots(lane: str) -> int:
    """Tasks of this lane one worker process runs at once (read from CONF when workers start)."""
    check_lane(lane)
    return CONF.worker_concurrency if lane == DEFAULT_LANE else CONF.pipeline_concurrency


def check_lane(lane: str) -> None:
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}: a pool has the lanes {', '.join(LANES)}")


@dataclass(frozen=True)
class Lane:
    name: str
    queue_name: str
    slots: int

    @classmethod
    def of(cls, queue_name: str, lane: str) -> Lane:
        return cls(lane, lane_queue_name(queue_name, lane), lane_slots(lane))
