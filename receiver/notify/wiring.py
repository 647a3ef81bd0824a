"""The notification stage's objects, built once in the lifespan and reached as `Services.notify`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry

from receiver.notify.config import NotifyConfig
from receiver.notify.metrics import NotifyMetrics
from receiver.notify.outbox import ChartSource, OutboxOptions, OutboxWorker
from receiver.notify.render import RenderOptions
from receiver.notify.send import AppriseNotifier
from receiver.retry import StageFailures
from receiver.settings import Settings
from receiver.store.documents import Anomaly, Incident, Rca
from receiver.store.notify import OutboxStore
from receiver.store.repo import Store
from receiver.ui.evidence import main_chart_png, rules_for


@dataclass
class NotifyServices:
    config: NotifyConfig
    store: OutboxStore
    notifier: AppriseNotifier
    metrics: NotifyMetrics
    worker: OutboxWorker
    render_options: RenderOptions


def build_notify(
    settings: Settings,
    store: Store,
    http: httpx.AsyncClient,
    registry: CollectorRegistry,
    failures: StageFailures | None = None,
) -> NotifyServices:
    """Build and validate: a bad SLACK_WEBHOOK_URL, APPRISE_URLS, SMTP_TO or NOTIFY_ROUTES
    raises `ChannelError` naming the variable (without its secret)."""
    outbox = OutboxStore(store)
    config = NotifyConfig(settings, outbox)
    config.validate_settings()
    notifier = AppriseNotifier(http, timeout=settings.notify_send_timeout_seconds)
    metrics = NotifyMetrics(registry, failures)
    render_options = RenderOptions(public_url=settings.links_url)
    worker = OutboxWorker(
        outbox,
        config,
        notifier,
        metrics,
        OutboxOptions.from_settings(settings),
        render_options,
        charts=evidence_charts(settings, http),
    )
    return NotifyServices(config, outbox, notifier, metrics, worker, render_options)


def evidence_charts(settings: Settings, http: httpx.AsyncClient) -> ChartSource | None:
    """The emails' chart source: the console's main evidence chart, drawn from Prometheus."""
    if not settings.notify_email_chart or not settings.prom_url:
        return None
    prom_url = settings.prom_url

    async def chart(
        incident: Incident, episodes: Sequence[Anomaly], rca: Rca | None
    ) -> bytes | None:
        rules = rules_for(episodes, settings.enrich_rules_dir)
        return await main_chart_png(http, prom_url, incident, episodes, rca, rules=rules)

    return chart
