"""Prometheus metrics of one server (a registry of its own, so several apps in one process do not collide).

``pipo_requests_total{endpoint,status}`` counts every API response by HTTP status (a stream counts as 200
when it starts); ``pipo_requests_in_flight`` is the admitted generation requests; the token counters, the
TTFT/TPOT histograms and ``pipo_tokens_per_step`` come from finished requests; the engine gauges are read at
scrape time.
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "EngineGauges", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. The default model takes ~10 ms a step on a loaded 2-core CPU and ~1 ms on a GPU; prompts of a few
# thousand tokens take up to seconds to prefill.
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_TPOT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# PIPO emits one or two tokens a step, so tokens per step lies in [1, 2].
_TPS_BUCKETS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0)

EngineGauges = Callable[[], dict[str, int]]


class _EngineCollector(Collector):
    def __init__(self, read: EngineGauges) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self._read()
        family = GaugeMetricFamily(
            "pipo_engine_sequences", "Sequences in the engine by state", labels=["state"]
        )
        for state in ("running", "waiting"):
            family.add_metric([state], values[state])
        yield family
        yield GaugeMetricFamily(
            "pipo_engine_free_kv_blocks", "KV blocks no sequence holds", value=values["free_blocks"]
        )


class ServerMetrics:
    def __init__(self, engine_gauges: EngineGauges) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pipo_requests", "API responses by endpoint and HTTP status", ["endpoint", "status"], registry=r
        )
        self.in_flight = Gauge(
            "pipo_requests_in_flight", "Generation requests admitted and not finished", registry=r
        )
        self.finished = Counter(
            "pipo_requests_finished", "Generation requests by how they ended", ["finish_reason"], registry=r
        )
        self.prompt_tokens = Counter("pipo_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.generated_tokens = Counter(
            "pipo_generated_tokens", "Tokens generated (stopping EOS included)", registry=r
        )
        self.drafts_proposed = Counter("pipo_drafts_proposed", "PIPO drafts proposed", registry=r)
        self.drafts_committed = Counter("pipo_drafts_committed", "PIPO drafts committed", registry=r)
        self.ttft = Histogram(
            "pipo_time_to_first_token_seconds",
            "Admission to first generated text",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "pipo_time_per_output_token_seconds",
            "Decode time per output token",
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.tokens_per_step = Histogram(
            "pipo_tokens_per_step",
            "Tokens per backbone step of finished requests",
            buckets=_TPS_BUCKETS,
            registry=r,
        )
        r.register(_EngineCollector(engine_gauges))

    def render(self) -> bytes:
        return generate_latest(self.registry)
