"""Prometheus metrics of one ``ivr serve`` at ``/metrics`` on the HTTP site.

Values are read from the parts that already count them (router, history
writer, screen pop, dispatcher, AMI client) when Prometheus scrapes, so
counting costs the call path nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.web import resource, server

if TYPE_CHECKING:
    from ivr.app import IVRServer

__all__ = ["MetricsPage", "ServerMetrics", "registry_for"]


class ServerMetrics(Collector):
    """Reads one server's counters at scrape time."""

    def __init__(self, server: IVRServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        router, history, pops = server.router, server.history, server.pops
        yield CounterMetricFamily("ivr_calls_started", "AGI sessions served", value=router.calls_started)
        yield CounterMetricFamily("ivr_calls_failed", "calls whose handler failed or ran out of time",
                                  value=router.calls_failed)
        yield GaugeMetricFamily("ivr_calls_active", "calls in ivr now", value=len(router.active))
        yield CounterMetricFamily("ivr_history_records_written", "contact records written to the database",
                                  value=history.written)
        yield CounterMetricFamily("ivr_history_records_journaled",
                                  "contact records that went to the journal (database down)",
                                  value=history.journaled)
        yield CounterMetricFamily("ivr_screenpop_cards_delivered", "cards acknowledged by agents' pages",
                                  value=pops.delivered)
        yield CounterMetricFamily("ivr_screenpop_cards_undelivered",
                                  "cards no page acknowledged after every retry", value=pops.undelivered)
        if server.dispatcher is not None:
            yield CounterMetricFamily("ivr_callbacks_dialled", "callback attempts that rang an agent",
                                      value=server.dispatcher.dialled)
        if server.ami is not None:
            yield GaugeMetricFamily("ivr_ami_connected", "1 while logged in to Asterisk's manager",
                                    value=1 if server.ami.ready else 0)


def registry_for(server: IVRServer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerMetrics(server))
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
