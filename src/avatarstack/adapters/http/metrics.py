"""Prometheus metrics of one application, in its own registry (no process-wide globals)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator

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
from avatarstack.ports.storage import PoolStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], PoolStats], backend: str) -> None:
        self._stats = stats
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        gauge = GaugeMetricFamily(
            "avatarstack_db_pool_connections",
            "Database connections by state.",
            labels=["backend", "state"],
        )
        gauge.add_metric([self._backend, "open"], stats.size)
        gauge.add_metric([self._backend, "idle"], stats.idle)
        gauge.add_metric([self._backend, "in_use"], max(stats.size - stats.idle, 0))
        gauge.add_metric([self._backend, "max"], stats.max_size)
        yield gauge


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

    def watch_pool(self, stats: Callable[[], PoolStats], backend: str) -> None:
        """Report this pool (replacing any pool watched before)."""
        if self._pool is not None:
            self.registry.unregister(self._pool)
        self._pool = _PoolCollector(stats, backend)
        self.registry.register(self._pool)

    def watch_avatars(self, stats: AvatarStats) -> None:
        """Report avatar sessions and vendor calls (replacing any watched before)."""
        if self._avatars is not None:
            self.registry.unregister(self._avatars)
        self._avatars = _AvatarCollector(stats)
        self.registry.register(self._avatars)

    def render(self) -> bytes:
        return generate_latest(self.registry)
