"""Prometheus metrics at ``/metrics`` on the HTTP site.

Values are read from the parts that already count them (router, history
writer, screen pop, dispatcher, AMI client) when Prometheus scrapes, so
counting costs the call path nothing. Each part offers a ``metrics()``
method yielding its families; the composition root lists the parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.web import resource, server

__all__ = ["MetricSource", "MetricsPage", "registry_of"]

#: Something that yields metric families when scraped (a part's ``metrics`` method).
MetricSource = Callable[[], Iterable[Metric]]


class _Sources(Collector):
    """Reads every source at scrape time."""

    def __init__(self, sources: Iterable[MetricSource]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source()


def registry_of(sources: Iterable[MetricSource]) -> CollectorRegistry:
    """A registry holding only ``sources`` (not the process-global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Sources(sources))
    return registry


class MetricsPage(resource.Resource):
    """``GET /metrics`` in Prometheus' text format (cheap: no thread needed)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry

    def render_GET(self, request: server.Request) -> bytes:
        cast_request: Any = request
        cast_request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)
