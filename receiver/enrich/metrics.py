"""Enrichment metrics, registered on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EnrichMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.generated = Counter(
            "rca_generated_total",
            "Analyses stored, by provider and outcome "
            "(model, fallback, offline, budget, cached, timeout)",
            ["provider", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "rca_analysis_seconds",
            "Time from claiming an incident to storing its analysis (evidence + LLM)",
            registry=registry,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
        )
        self.evidence_latency = Histogram(
            "rca_evidence_seconds",
            "Time to gather the evidence of one incident (PromQL + history)",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.evidence_queries = Histogram(
            "rca_evidence_queries",
            "Prometheus requests made to gather the evidence of one incident (budget 40)",
            registry=registry,
            buckets=(0, 1, 2, 5, 10, 15, 20, 25, 30, 40, 60),
        )
        self.tokens = Counter(
            "llm_tokens_total", "LLM tokens spent", ["direction"], registry=registry
        )
        self.cost = Counter(
            "llm_cost_total", "Estimated LLM cost (LLM_PRICES_PER_1K units)", registry=registry
        )
        self.budget_exceeded = Counter(
            "llm_budget_exceeded_total",
            "Analyses sent to the offline analyst because a token cap was reached",
            ["limit"],
            registry=registry,
        )
        self.dropped_hypotheses = Counter(
            "rca_dropped_hypotheses_total",
            "Model hypotheses dropped for citing evidence that does not exist",
            registry=registry,
        )
        self.pending = Gauge(
            "rca_pending", "Incidents waiting for an analysis (queue depth)", registry=registry
        )
        self.in_flight = Gauge(
            "rca_in_flight", "Analyses running in this replica", registry=registry
        )
        self.errors = Counter(
            "rca_worker_errors_total",
            "Enrichment worker rounds that failed (store unavailable, ...)",
            registry=registry,
        )
