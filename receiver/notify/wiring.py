"""The notification stage's objects, built once in the lifespan and reached as `Services.notify`.

The emails' chart source is handed in by the composition root (`receiver.app`): drawing a chart
needs the console's evidence code, and the notify stage must not import the web layer.
"""

from __future__ import annotations

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
from receiver.store.notify import OutboxStore
from receiver.store.repo import Store


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
    charts: ChartSource | None = None,
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
        charts=charts,
    )
    return NotifyServices(config, outbox, notifier, metrics, worker, render_options)
