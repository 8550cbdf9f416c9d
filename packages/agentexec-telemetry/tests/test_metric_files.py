"""``/metrics`` reads a worker's metric file only once it is whole (``metric_files``)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from agentexec_telemetry.metric_files import WholeFilesCollector, whole_files
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector


def a_worker_counted(directory: Path, pid: int, amount: float) -> None:
    counts = MmapedDict(str(directory / f"counter_{pid}.db"))
    key = mmap_key("agentexec_tasks_started", "agentexec_tasks_started_total", ["task"], ["job"], "Tasks started.")
    counts.write_value(key, amount, 0.0)
    counts.close()


def test_a_file_just_made_is_left_out_until_it_is_sized(tmp_path: Path) -> None:
    a_worker_counted(tmp_path, 101, 3.0)
    a_worker_counted(tmp_path, 102, 4.0)
    (tmp_path / "counter_103.db").touch()  # a new worker's, between its open and its sizing

    with pytest.raises(struct.error):  # what prometheus-client's own collector does with it
        generate_latest(registry_of(MultiProcessCollector, tmp_path))

    assert sorted(Path(f).name for f in whole_files(str(tmp_path))) == ["counter_101.db", "counter_102.db"]
    text = generate_latest(registry_of(WholeFilesCollector, tmp_path)).decode()
    assert 'agentexec_tasks_started_total{task="job"} 7.0' in text


def registry_of(collector: type[MultiProcessCollector], directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    collector(registry, path=str(directory))
    return registry
