"""`/metrics` in the Prometheus text format. A custom collector reads the database at each scrape, so the figures
are those of the whole system (every worker process), not of this server process."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.job import JobStatus

if TYPE_CHECKING:
    from conveyor.app import Conveyor

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TOP_KEYS = 20  # keys per keyed queue in the metrics (label cardinality)
DURATION_SAMPLE = 1000  # the histogram covers the most recent completed jobs


class ConveyorCollector(Collector):
    def __init__(self, conveyor: Conveyor) -> None:
        self.conveyor = conveyor

    def collect(self) -> Iterator[Metric]:
        stats = self.conveyor.stats()
        jobs = GaugeMetricFamily("conveyor_jobs", "Jobs by status and type.", labels=["status", "type"])
        for type_, counts in sorted(stats.counts_by_type.items()):
            for status in JobStatus:
                jobs.add_metric([status.value, type_], counts.get(status.value, 0))
        yield jobs

        depth = GaugeMetricFamily("conveyor_queue_depth", "Jobs waiting in a queue (pending, scheduled).",
                                  labels=["queue", "status"])
        paused = GaugeMetricFamily("conveyor_queue_paused", "1 if the queue is paused.", labels=["queue"])
        running = GaugeMetricFamily("conveyor_queue_processing", "Jobs processing in a queue.", labels=["queue"])
        queues = self.conveyor.list_queues()
        for queue in queues:
            depth.add_metric([queue.name, "pending"], queue.counts.get("pending", 0))
            depth.add_metric([queue.name, "scheduled"], queue.counts.get("scheduled", 0))
            running.add_metric([queue.name], queue.counts.get("processing", 0))
            paused.add_metric([queue.name], 1 if queue.paused else 0)
        yield depth
        yield running
        yield paused
        yield from self._keys([q.name for q in queues if q.keyed])

        finished = CounterMetricFamily(
            "conveyor_jobs_finished",
            "Finished jobs still stored, by status (pruning and purges show as counter resets).",
            labels=["status"],
        )
        for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            finished.add_metric([status.value], stats.counts.get(status.value, 0))
        yield finished

        last = stats.throughput[-1] if stats.throughput else {}
        recent = GaugeMetricFamily(
            "conveyor_throughput_per_minute", "Jobs finished in the last full minute.", labels=["status"]
        )
        for outcome in ("completed", "failed"):
            recent.add_metric([outcome], float(last.get(outcome, 0)))
        yield recent

        yield from self._durations()

        workers = GaugeMetricFamily("conveyor_workers", "Live worker processes.")
        workers.add_metric([], stats.workers)
        yield workers

        workflows = GaugeMetricFamily("conveyor_workflows", "Workflows by status.", labels=["status"])
        for status, n in stats.extra.get("workflows", {}).items():
            workflows.add_metric([status], n)
        yield workflows

    def _keys(self, keyed: list[str]) -> Iterator[Metric]:
        """Fair limits per key: the busiest keys of each keyed queue only (TOP_KEYS), so that a queue of 100,000
        tenants does not make 100,000 series; `conveyor_group_keys` counts them all."""
        keys = GaugeMetricFamily("conveyor_group_keys", "Keys of a queue (fair limits per key).", labels=["queue"])
        ready = GaugeMetricFamily("conveyor_group_ready", f"Ready jobs of a queue's {TOP_KEYS} busiest keys.",
                                  labels=["queue", "key"])
        running = GaugeMetricFamily("conveyor_group_processing",
                                    f"Processing jobs of a queue's {TOP_KEYS} busiest keys.", labels=["queue", "key"])
        for name in keyed:
            groups, total = self.conveyor.list_groups(name, limit=TOP_KEYS)
            keys.add_metric([name], total)
            for g in groups:
                ready.add_metric([name, g.key], g.ready)
                running.add_metric([name, g.key], g.running)
        yield keys
        yield ready
        yield running

    def _durations(self) -> Iterator[Metric]:
        page = self.conveyor.list_jobs(status=JobStatus.COMPLETED, limit=DURATION_SAMPLE)
        by_type: dict[str, list[float]] = {}
        for job in page.jobs:
            if job.started_at is not None and job.completed_at is not None:
                seconds = max(0.0, (job.completed_at - job.started_at).total_seconds())
                by_type.setdefault(job.type, []).append(seconds)
        hist = HistogramMetricFamily(
            "conveyor_job_duration_seconds",
            f"Run time of the most recent {DURATION_SAMPLE} completed jobs, by type.",
            labels=["type"],
        )
        for type_, values in sorted(by_type.items()):
            values.sort()
            buckets = [(str(b), bisect.bisect_right(values, b)) for b in DURATION_BUCKETS_S]
            buckets.append(("+Inf", len(values)))
            hist.add_metric([type_], buckets, sum_value=sum(values))
        yield hist


def metrics_registry(conveyor: Conveyor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConveyorCollector(conveyor))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
