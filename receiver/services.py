"""The objects the lifespan builds and the routes reach through `request.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from receiver.chat.assistant import ChatAssistant
from receiver.detect.poller import OutlierPoller
from receiver.enrich.budget import Budget
from receiver.enrich.tracing import Tracer
from receiver.enrich.worker import EnrichmentWorker
from receiver.ingest.commit import GroupCommit
from receiver.ingest.metrics import IngestMetrics
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.watchdog import Watchdog
from receiver.ingest.worker import DeliveryWorker
from receiver.notify.wiring import NotifyServices
from receiver.ratelimit import SlidingLimit
from receiver.retention import Retention
from receiver.settings import Settings
from receiver.store.repo import Store
from receiver.telemetry import AuditMetrics, HttpMetrics


@dataclass
class Services:
    settings: Settings
    store: Store
    registry: CollectorRegistry
    http: httpx.AsyncClient
    ingest_metrics: IngestMetrics
    processor: SignalProcessor
    deliveries: DeliveryWorker
    commits: GroupCommit
    watchdog: Watchdog
    notify: NotifyServices
    poller: OutlierPoller
    http_metrics: HttpMetrics
    tracer: Tracer
    chat: ChatAssistant
    retention: Retention
    enrichment: EnrichmentWorker
    budget: Budget  # the LLM token budget enrichment and chat share
    chat_limit: SlidingLimit  # chat turns per token (or address) per minute
    audit_metrics: AuditMetrics | None = None


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found
