"""GET /metrics: Prometheus exposition of the broker snapshot and the gateway's counters.

A custom collector reads `broker.snapshot()` at scrape time (no background
task, nothing to keep in sync) and the gateway's plain-int counters, into a
registry of this app's own so several apps in one process never collide.
Every name starts with `spoolmq_`.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from http_gateway.state import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector:
    """Collects from one gateway's broker and counters on every scrape."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw

    def collect(self) -> Iterator[Metric]:
        gw = self._gw
        snap = gw.broker.snapshot()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("spoolmq_messages_in_queue",
                    "Messages some group still has to finish (ready + in flight)",
                    snap.messages_in_queue)
        yield gauge("spoolmq_messages_ready", "Messages ready for delivery", snap.ready)
        yield gauge("spoolmq_messages_in_flight", "Messages leased and not yet acked",
                    snap.in_flight)
        yield gauge("spoolmq_messages_dead_lettered", "Dead letters over all groups",
                    snap.dead_lettered)
        yield gauge("spoolmq_active_producers", "Clients that sent recently",
                    snap.active_producers)
        yield gauge("spoolmq_active_consumers", "Clients that received or acked recently",
                    snap.active_consumers)
        yield gauge("spoolmq_oldest_unacked_age_seconds", "Age of the oldest unacked message",
                    snap.oldest_unacked_age_s or 0.0)
        rates = GaugeMetricFamily("spoolmq_rate_per_second",
                                  "Recent rate of messages by kind", labels=["kind"])
        for kind, value in (("in", snap.rate_in), ("out", snap.rate_out),
                            ("acks", snap.rate_acks), ("redeliveries", snap.rate_redeliveries)):
            rates.add_metric([kind], value)
        yield rates

        t_queue = GaugeMetricFamily("spoolmq_topic_messages_in_queue",
                                    "Messages in the queue per topic", labels=["topic"])
        t_msgs = GaugeMetricFamily("spoolmq_topic_messages", "Retained messages per topic",
                                   labels=["topic"])
        t_bytes = GaugeMetricFamily("spoolmq_topic_bytes", "Retained bytes per topic",
                                    labels=["topic"])
        t_in = CounterMetricFamily("spoolmq_messages_in",
                                   "Messages appended per topic (the sum of end offsets)",
                                   labels=["topic"])
        labels = ["topic", "group"]
        g_lag = GaugeMetricFamily("spoolmq_group_lag_messages",
                                  "Messages the group has not acked", labels=labels)
        g_age = GaugeMetricFamily("spoolmq_group_lag_seconds",
                                  "Age of the group's oldest unacked message", labels=labels)
        g_ready = GaugeMetricFamily("spoolmq_group_messages_ready", "Ready per group",
                                    labels=labels)
        g_flight = GaugeMetricFamily("spoolmq_group_messages_in_flight", "Leased per group",
                                     labels=labels)
        g_dead = GaugeMetricFamily("spoolmq_group_messages_dead_lettered",
                                   "Dead letters per group", labels=labels)
        g_consumers = GaugeMetricFamily("spoolmq_group_consumers", "Consumers per group",
                                        labels=labels)
        g_redeliv = CounterMetricFamily("spoolmq_redeliveries",
                                        "Redeliveries per group", labels=labels)
        for t in snap.topics:
            t_queue.add_metric([t.name], t.messages_in_queue)
            t_msgs.add_metric([t.name], t.messages)
            t_bytes.add_metric([t.name], t.bytes)
            t_in.add_metric([t.name], sum(t.end_offsets))
            for g in t.groups:
                lv = [t.name, g.name]
                g_lag.add_metric(lv, g.lag)
                g_age.add_metric(lv, g.oldest_unacked_age_s or 0.0)
                g_ready.add_metric(lv, g.ready)
                g_flight.add_metric(lv, g.in_flight)
                g_dead.add_metric(lv, g.dead_lettered)
                g_consumers.add_metric(lv, g.consumers)
                g_redeliv.add_metric(lv, g.redeliveries)
        yield from (t_queue, t_msgs, t_bytes, t_in, g_lag, g_age, g_ready, g_flight, g_dead,
                    g_consumers, g_redeliv)

        c = gw.counters
        for name, doc, value in (
            ("spoolmq_http_messages_in", "Messages sent through the HTTP gateway", c.messages_in),
            ("spoolmq_http_messages_out", "Messages delivered through the HTTP gateway",
             c.messages_out),
            ("spoolmq_http_acks", "Acks through the HTTP gateway", c.acks),
            ("spoolmq_http_nacks", "Nacks through the HTTP gateway", c.nacks),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        reqs = CounterMetricFamily("spoolmq_http_requests", "HTTP requests answered",
                                   labels=["method", "route", "status"])
        for (method, route, status), n in sorted(c.requests.items()):
            reqs.add_metric([method, route, str(status)], n)
        yield reqs


def make_registry(gw: Gateway) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gw))
    return registry


METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
