"""Prometheus metrics of one application, in its own registry (no process-wide globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

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


class HttpMetrics:
    """Request counters and latency histograms labelled by route template, not raw path."""

    def __init__(self, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "avatarstack_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "avatarstack_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_InfoCollector(version))

    def watch_pool(self, stats: Callable[[], PoolStats], backend: str) -> None:
        self.registry.register(_PoolCollector(stats, backend))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
