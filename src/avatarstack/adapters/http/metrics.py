"""Prometheus metrics of one application, in its own registry (no process-wide globals)."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from avatarstack.core.avatars import CALL_BUCKETS, AvatarStats
from avatarstack.ports.storage import TIMING_BUCKETS, Job, PoolStats, StorageTimings

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PoolCollector(Collector):
    def __init__(
        self, stats: Callable[[], PoolStats], backend: str, timings: StorageTimings | None
    ) -> None:
        self._stats = stats
        self._backend = backend
        self._timings = timings

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        backend = self._backend
        gauge = GaugeMetricFamily(
            "avatarstack_db_pool_connections",
            "Database connections by state.",
            labels=["backend", "state"],
        )
        gauge.add_metric([backend, "open"], stats.size)
        gauge.add_metric([backend, "idle"], stats.idle)
        gauge.add_metric([backend, "in_use"], max(stats.size - stats.idle, 0))
        gauge.add_metric([backend, "max"], stats.max_size)
        yield gauge
        t = self._timings
        if t is None:
            return
        queries = HistogramMetricFamily(
            "avatarstack_db_query_duration_seconds",
            "Seconds per database statement, from the call to the rows in hand.",
            labels=["backend"],
        )
        queries.add_metric([backend], _cumulative(TIMING_BUCKETS, t.query_buckets), t.query_seconds)
        yield queries
        acquisitions = CounterMetricFamily(
            "avatarstack_db_pool_acquisitions",
            "Connections taken from the pool, by whether one was free at once (waited=no) or "
            "the caller waited for a release or a new connection (waited=yes).",
            labels=["backend", "waited"],
        )
        acquisitions.add_metric([backend, "no"], t.acquisitions - t.waited)
        acquisitions.add_metric([backend, "yes"], t.waited)
        yield acquisitions
        wait = HistogramMetricFamily(
            "avatarstack_db_pool_wait_seconds",
            "Seconds from asking the pool for a connection to having one.",
            labels=["backend"],
        )
        wait.add_metric([backend], _cumulative(TIMING_BUCKETS, t.wait_buckets), t.wait_seconds)
        yield wait


#: seconds the event loop was late waking a timer
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLagMonitor(Collector):
    """Measures how late the event loop runs: a task sleeps ``interval`` seconds at a time and
    records by how much each wake-up overshot. A loop blocked by CPU work (or a blocking call)
    shows here before it shows anywhere else."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.lag = _Histogram(LAG_BUCKETS)
        self.last = 0.0

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.last = max(time.perf_counter() - started - self.interval, 0.0)
            self.lag.observe(self.last)

    def collect(self) -> Iterator[Metric]:
        h = self.lag
        histogram = HistogramMetricFamily(
            "avatarstack_event_loop_lag_seconds",
            f"How late the event loop woke a {self.interval:g} s timer.",
        )
        histogram.add_metric([], _cumulative(h.bounds, h.counts), h.total)
        yield histogram
        last = GaugeMetricFamily(
            "avatarstack_event_loop_lag_last_seconds",
            "How late the event loop woke the latest timer.",
        )
        last.add_metric([], self.last)
        yield last


class _InfoCollector(Collector):
    def __init__(self, version: str) -> None:
        self._version = version

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("avatarstack_build", "avatarstack version.")
        info.add_metric([], {"version": self._version})
        yield info


class _RequestCollector(Collector):
    """Request counts and latency histograms kept in plain dicts.

    prometheus-client's Counter/Histogram take a lock per increment; the event loop is one
    thread, so plain integers are exact here and several times cheaper on the hot path.
    Cumulative buckets are computed when Prometheus scrapes.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        #: (method, route) -> [per-bucket counts (last = +Inf), sum of seconds]
        self.latency: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.counts[key] = self.counts.get(key, 0) + 1
        series = self.latency.get((method, route))
        if series is None:
            series = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
            self.latency[(method, route)] = series
        series[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "avatarstack_http_requests",
            "HTTP requests by route template, method and status.",
            labels=["method", "route", "status"],
        )
        for labels, count in sorted(self.counts.items()):
            requests.add_metric(list(labels), count)
        yield requests
        latency = HistogramMetricFamily(
            "avatarstack_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            labels=["method", "route"],
        )
        for series_labels, (buckets, total) in sorted(self.latency.items()):
            latency.add_metric(list(series_labels), _cumulative(LATENCY_BUCKETS, buckets), total[0])
        yield latency


class _AvatarCollector(Collector):
    def __init__(self, stats: AvatarStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        provider = stats.provider
        open_ = GaugeMetricFamily(
            "avatarstack_avatar_sessions_open",
            "Avatar sessions running (registry, all instances).",
            labels=["provider"],
        )
        open_.add_metric([provider], stats.open_sessions)
        yield open_
        seconds = CounterMetricFamily(
            "avatarstack_avatar_session_seconds",
            "Vendor session seconds of sessions ended by this instance (what they cost).",
            labels=["provider"],
        )
        seconds.add_metric([provider], stats.session_seconds)
        yield seconds
        calls = CounterMetricFamily(
            "avatarstack_avatar_provider_calls",
            "Calls to the avatar vendor by call and outcome (ok or the error code).",
            labels=["provider", "call", "outcome"],
        )
        latency = HistogramMetricFamily(
            "avatarstack_avatar_provider_call_duration_seconds",
            "Latency of calls to the avatar vendor.",
            labels=["provider", "call"],
        )
        for call, call_stats in sorted(stats.calls.items()):
            for outcome, count in sorted(call_stats.outcomes.items()):
                calls.add_metric([provider, call, outcome], count)
            latency.add_metric(
                [provider, call],
                _cumulative(CALL_BUCKETS, call_stats.buckets),
                call_stats.seconds,
            )
        yield calls
        yield latency


SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class _Histogram:
    """One histogram series: per-bucket counts (last = +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class _SearchCollector(Collector):
    """Knowledge-base searches per index generation: embed and vector-search latency, top
    score, and how many found nothing."""

    def __init__(self) -> None:
        self.series: dict[str, dict[str, _Histogram]] = {}
        self.empty: dict[str, int] = {}

    def observe_search(
        self,
        generation_id: str,
        *,
        embed_seconds: float,
        search_seconds: float,
        top_score: float | None,
        empty: bool,
    ) -> None:
        series = self.series.get(generation_id)
        if series is None:
            series = {
                "embed": _Histogram(LATENCY_BUCKETS),
                "search": _Histogram(LATENCY_BUCKETS),
                "score": _Histogram(SCORE_BUCKETS),
            }
            self.series[generation_id] = series
            self.empty[generation_id] = 0
        series["embed"].observe(embed_seconds)
        series["search"].observe(search_seconds)
        if top_score is not None:
            series["score"].observe(top_score)
        if empty:
            self.empty[generation_id] += 1

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily(
            "avatarstack_kb_search_duration_seconds",
            "Knowledge-base search latency by generation and stage (embed, search).",
            labels=["generation", "stage"],
        )
        scores = HistogramMetricFamily(
            "avatarstack_kb_search_top_score",
            "Cosine similarity of the best result per search, by generation.",
            labels=["generation"],
        )
        empty = CounterMetricFamily(
            "avatarstack_kb_search_empty",
            "Searches that returned no result, by generation.",
            labels=["generation"],
        )
        for generation, series in sorted(self.series.items()):
            for stage in ("embed", "search"):
                h = series[stage]
                latency.add_metric([generation, stage], _cumulative(h.bounds, h.counts), h.total)
            h = series["score"]
            scores.add_metric([generation], _cumulative(h.bounds, h.counts), h.total)
            empty.add_metric([generation], self.empty[generation])
        yield latency
        yield scores
        yield empty


#: seconds a job waited between becoming due and a worker starting it
QUEUE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class _JobCollector(Collector):
    """Jobs started by this instance's workers (how long each waited in the queue) and how
    they ended, by kind."""

    def __init__(self) -> None:
        self.waits: dict[str, _Histogram] = {}
        self.finished: dict[tuple[str, str], int] = {}

    def started(self, job: Job, now: datetime) -> None:
        series = self.waits.get(job.kind)
        if series is None:
            series = self.waits[job.kind] = _Histogram(QUEUE_BUCKETS)
        series.observe(max((now - job.run_at).total_seconds(), 0.0))

    def listener(self, job: Job, status: str, _progress: float, _error: str | None) -> None:
        if status in {"succeeded", "failed"}:
            key = (job.kind, status)
            self.finished[key] = self.finished.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        waits = HistogramMetricFamily(
            "avatarstack_job_queue_wait_seconds",
            "Seconds a job waited between becoming due and a worker of this instance starting "
            "it, by kind.",
            labels=["kind"],
        )
        for kind, h in sorted(self.waits.items()):
            waits.add_metric([kind], _cumulative(h.bounds, h.counts), h.total)
        yield waits
        finished = CounterMetricFamily(
            "avatarstack_jobs_finished",
            "Jobs this instance's workers finished, by kind and outcome (succeeded, or failed "
            "for good).",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), count in sorted(self.finished.items()):
            finished.add_metric([kind, outcome], count)
        yield finished


@dataclass(frozen=True, slots=True)
class RealtimeStats:
    connections: int
    #: frames waiting in the fullest outbox, and how many an outbox holds
    outbox_max: int
    outbox_capacity: int
    #: connections closed because their client did not keep up (since start)
    slow_consumers: int


class _RealtimeCollector(Collector):
    def __init__(self, stats: Callable[[], RealtimeStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        connections = GaugeMetricFamily(
            "avatarstack_ws_connections", "WebSocket connections open on this instance."
        )
        connections.add_metric([], stats.connections)
        yield connections
        outbox = GaugeMetricFamily(
            "avatarstack_ws_outbox_frames",
            "Frames waiting to be sent: in the fullest outbox (max) and what one holds "
            "(capacity); a full outbox closes its connection as a slow consumer.",
            labels=["stat"],
        )
        outbox.add_metric(["max"], stats.outbox_max)
        outbox.add_metric(["capacity"], stats.outbox_capacity)
        yield outbox
        slow = CounterMetricFamily(
            "avatarstack_ws_slow_consumers",
            "WebSocket connections closed because their client did not keep up.",
        )
        slow.add_metric([], stats.slow_consumers)
        yield slow


class _ReadinessCollector(Collector):
    """The outcome of each readiness check the last time ``/readyz`` ran."""

    def __init__(self) -> None:
        self.checks: dict[str, tuple[bool, float]] = {}

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "avatarstack_readiness_check_up",
            "1 when the readiness check passed the last time /readyz ran, else 0.",
            labels=["check"],
        )
        latency = GaugeMetricFamily(
            "avatarstack_readiness_check_latency_seconds",
            "How long the readiness check took the last time /readyz ran.",
            labels=["check"],
        )
        for name, (ok, seconds) in sorted(self.checks.items()):
            up.add_metric([name], 1.0 if ok else 0.0)
            latency.add_metric([name], seconds)
        yield up
        yield latency


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        running += count
        cumulative.append(("+Inf" if math.isinf(bound) else repr(bound), running))
    return cumulative


class HttpMetrics:
    """Request counters and latency histograms labelled by route template, not raw path."""

    def __init__(self, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._requests = _RequestCollector()
        self.registry.register(self._requests)
        self.registry.register(_InfoCollector(version))
        self._pool: _PoolCollector | None = None
        self._avatars: _AvatarCollector | None = None
        self.observe = self._requests.observe
        self._searches = _SearchCollector()
        self.registry.register(self._searches)
        #: the knowledge service's SearchObserver
        self.observe_search = self._searches.observe_search
        self._jobs = _JobCollector()
        self.registry.register(self._jobs)
        #: a Worker's ``on_start`` and ``listener``
        self.job_started = self._jobs.started
        self.job_listener = self._jobs.listener
        self._readiness = _ReadinessCollector()
        self.registry.register(self._readiness)
        self._realtime: _RealtimeCollector | None = None
        #: started and stopped with the application (``build_http_app``)
        self.loop_lag = LoopLagMonitor()
        self.registry.register(self.loop_lag)

    def observe_readiness(self, name: str, ok: bool, seconds: float) -> None:
        self._readiness.checks[name] = (ok, seconds)

    def watch_realtime(self, stats: Callable[[], RealtimeStats]) -> None:
        """Report WebSocket connections and outboxes (replacing any watched before)."""
        if self._realtime is not None:
            self.registry.unregister(self._realtime)
        self._realtime = _RealtimeCollector(stats)
        self.registry.register(self._realtime)

    def watch_pool(
        self,
        stats: Callable[[], PoolStats],
        backend: str,
        timings: StorageTimings | None = None,
    ) -> None:
        """Report this pool and, with ``timings``, its statements and waits (replacing any pool
        watched before)."""
        if self._pool is not None:
            self.registry.unregister(self._pool)
        self._pool = _PoolCollector(stats, backend, timings)
        self.registry.register(self._pool)

    def watch_avatars(self, stats: AvatarStats) -> None:
        """Report avatar sessions and vendor calls (replacing any watched before)."""
        if self._avatars is not None:
            self.registry.unregister(self._avatars)
        self._avatars = _AvatarCollector(stats)
        self.registry.register(self._avatars)

    def render(self) -> bytes:
        return generate_latest(self.registry)
