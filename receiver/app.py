"""Wiring: `create_app(settings)` and the lifespan that builds the store, clients and registry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from receiver.api import health, query, webhook
from receiver.ingest.commit import GroupCommit
from receiver.ingest.metrics import IngestMetrics
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.reconcile import Reconciler
from receiver.ingest.watchdog import Watchdog
from receiver.ingest.worker import DeliveryWorker
from receiver.services import Services
from receiver.settings import Settings
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store

log = logging.getLogger(__name__)


async def supervise(name: str, run: Callable[[], Awaitable[None]], delay: float = 1.0) -> None:
    """Run a background loop; if it dies of a bug, log it and start it again after `delay`."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.0fs", name, delay)
            await asyncio.sleep(delay)


@contextlib.asynccontextmanager
async def _background(coro_name: str, task: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.debug("%s stopped", coro_name)


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Services]]:
        async with contextlib.AsyncExitStack() as stack:
            if settings.mongo_uri is None:
                embedded = await stack.enter_async_context(
                    EmbeddedStore(settings.data_dir / "store", settings.nx_start_timeout_seconds)
                )
                uri, kind = embedded.uri, "embedded"
            else:
                uri, kind = settings.mongo_uri.get_secret_value(), "mongodb"
            store = await Store.connect(
                uri, settings.mongo_db, settings.store_timeout_seconds, kind
            )
            stack.push_async_callback(store.close)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
            registry = CollectorRegistry()
            ingest_metrics = IngestMetrics(registry)
            processor = SignalProcessor(store)
            watchdog = Watchdog(
                store,
                processor,
                settings.watchdog_alertname,
                settings.watchdog_timeout_seconds,
                registry,
            )
            deliveries = DeliveryWorker(
                store,
                processor,
                ingest_metrics,
                retention=timedelta(days=settings.delivery_retention_days),
                ignore_alertnames=frozenset({settings.watchdog_alertname})
                if watchdog.enabled
                else frozenset(),
            )
            svc = Services(
                settings=settings,
                store=store,
                registry=registry,
                http=http,
                ingest_metrics=ingest_metrics,
                processor=processor,
                deliveries=deliveries,
                commits=GroupCommit(store, max_pending=settings.max_pending_deliveries),
                watchdog=watchdog,
            )
            if not settings.webhook_auth_configured:
                log.warning(
                    "WEBHOOK AUTH IS OFF: anyone who can reach this port can post alerts; "
                    "set WEBHOOK_TOKEN (or WEBHOOK_USER/WEBHOOK_PASSWORD)"
                )
            await stack.enter_async_context(
                _background(
                    "delivery worker",
                    asyncio.create_task(supervise("delivery worker", deliveries.run)),
                )
            )
            if watchdog.enabled:
                every = min(30.0, max(settings.watchdog_timeout_seconds / 4, 0.2))
                await stack.enter_async_context(
                    _background(
                        "watchdog",
                        asyncio.create_task(supervise("watchdog", lambda: watchdog.run(every))),
                    )
                )
            am_urls = [u.strip() for u in settings.alertmanager_urls.split(",") if u.strip()]
            if am_urls:
                reconciler = Reconciler(
                    store,
                    processor,
                    http,
                    am_urls,
                    settings.reconcile_interval,
                    registry,
                    grace=settings.reconcile_grace_seconds,
                )
                await stack.enter_async_context(
                    _background(
                        "reconciler",
                        asyncio.create_task(supervise("reconciler", reconciler.run)),
                    )
                )
            log.info("store: %s; listening for Alertmanager webhooks", kind)
            yield {"services": svc}

    routes = [
        Route("/", health.status, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/api/v1/alerts", webhook.receive_alerts, methods=["POST"]),
        Route("/webhook/alertmanager", webhook.receive_alerts, methods=["POST"]),
        Route("/api/v1/incidents", query.list_incidents, methods=["GET"]),
        Route("/api/v1/incidents/{incident_id}", query.get_incident, methods=["GET"]),
        Route("/api/v1/deliveries", query.list_deliveries, methods=["GET"]),
        Route("/anomalies", query.list_anomalies, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
