"""The notification stage's objects, built once in the lifespan and reached as `Services.notify`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry

from receiver.notify.config import NotifyConfig
from receiver.notify.metrics import NotifyMetrics
from receiver.notify.outbox import OutboxOptions, OutboxWorker
from receiver.notify.render import RenderOptions
from receiver.notify.send import AppriseNotifier
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
    settings: Settings, store: Store, http: httpx.AsyncClient, registry: CollectorRegistry
) -> NotifyServices:
    """Build and validate: a bad SLACK_WEBHOOK_URL, APPRISE_URLS, SMTP_TO or NOTIFY_ROUTES
    raises `ChannelError` naming the variable (without its secret)."""
    outbox = OutboxStore(store)
    config = NotifyConfig(settings, outbox)
    config.validate_settings()
    notifier = AppriseNotifier(http, timeout=settings.notify_send_timeout_seconds)
    metrics = NotifyMetrics(registry)
    render_options = RenderOptions(public_url=settings.public_url)
    worker = OutboxWorker(
        outbox,
        config,
        notifier,
        metrics,
        OutboxOptions.from_settings(settings),
        render_options,
    )
    return NotifyServices(config, outbox, notifier, metrics, worker, render_options)
