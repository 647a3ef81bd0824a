"""Wiring: `create_app(settings)` and the lifespan that builds the store, clients and registry.

`app` is the same service for ASGI servers (`uvicorn receiver.app:app`): built from the
environment on its first event, so importing this module reads no settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from receiver import __version__, logs
from receiver.api import chat as chat_api
from receiver.api import detect as detect_api
from receiver.api import docs as docs_api
from receiver.api import health, query, webhook
from receiver.api import incidents as incidents_api
from receiver.api import notify as notify_api
from receiver.api import rca as rca_api
from receiver.api import stats as stats_api
from receiver.api import storms as storms_api
from receiver.api.audit import AuditLog
from receiver.api.hosts import HostGuard, allowed_hosts
from receiver.api.middleware import api_middleware
from receiver.chat.assistant import ChatAssistant
from receiver.detect.metrics import DetectorMetrics
from receiver.detect.poller import OutlierPoller
from receiver.detect.prometheus import PrometheusClient
from receiver.enrich.budget import Budget
from receiver.enrich.context import RuleIndex
from receiver.enrich.llm import build_provider
from receiver.enrich.metrics import EnrichMetrics
from receiver.enrich.tracing import build_tracer
from receiver.enrich.worker import EnrichmentWorker
from receiver.ingest.commit import GroupCommit
from receiver.ingest.metrics import AnomalyMetrics, IngestMetrics
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.reconcile import Reconciler
from receiver.ingest.storms import StormCorrelator, StormMetrics, StormOptions
from receiver.ingest.watchdog import Watchdog
from receiver.ingest.worker import DeliveryWorker
from receiver.notify.outbox import ChartSource
from receiver.notify.wiring import build_notify
from receiver.ratelimit import SlidingLimit
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord
from receiver.retention import Limits, Retention, RetentionMetrics
from receiver.retry import RetryPolicy, StageFailures
from receiver.services import Services
from receiver.settings import Settings, check_startup
from receiver.store.chat import ChatStore
from receiver.store.collections import Collections
from receiver.store.embedded import EmbeddedStore
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store, StoreError
from receiver.telemetry import AuditMetrics, HttpMetrics
from receiver.ui import console
from receiver.ui.evidence import main_chart_png, rules_for
from receiver.ui.gate import ConsoleGate
from receiver.work import WorkMetrics, supervise

log = logging.getLogger(__name__)


def email_charts(settings: Settings, http: httpx.AsyncClient) -> ChartSource | None:
    """The emails' chart source: the console's main evidence chart, drawn from Prometheus."""
    if not settings.notify_email_chart or not settings.prom_url:
        return None
    prom_url = settings.prom_url

    async def chart(
        incident: IncidentRecord, episodes: Sequence[EpisodeRecord], rca: AnalysisRecord | None
    ) -> bytes | None:
        rules = rules_for(episodes, settings.enrich_rules_dir)
        return await main_chart_png(http, prom_url, incident, episodes, rca, rules=rules)

    return chart


@contextlib.asynccontextmanager
async def _background(
    coro_name: str, run: Callable[[], Awaitable[None]], metrics: WorkMetrics
) -> AsyncIterator[None]:
    """Run a stage's loop under `supervise` for the life of the app; cancel it on the way out."""
    task = asyncio.create_task(supervise(coro_name, run, metrics=metrics))
    try:
        yield
    finally:
        # Cancel until it ends: pymongo can turn a cancellation that lands inside server
        # selection (store just went away) into ServerSelectionTimeoutError, which a worker's
        # retry loop then swallows; the next cancel lands in its backoff sleep.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.debug("%s stopped", coro_name)


def create_app(settings: Settings) -> Starlette:
    check_startup(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Services]]:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(logs.install(settings))
            if settings.mongo_uri is None:
                embedded = await stack.enter_async_context(
                    EmbeddedStore(settings.data_dir / "store", settings.nx_start_timeout_seconds)
                )
                uri, kind = embedded.uri, "embedded"
            else:
                uri, kind = settings.mongo_uri.get_secret_value(), "mongodb"
            store = await Store.connect(
                uri,
                settings.mongo_db,
                settings.store_timeout_seconds,
                kind,
                pool_size=settings.mongo_pool_size,
            )
            stack.push_async_callback(store.close)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
            registry = CollectorRegistry()
            ingest_metrics = IngestMetrics(registry)
            failures = StageFailures(registry)
            work_metrics = WorkMetrics(registry)
            policy = RetryPolicy(
                base_seconds=settings.retry_base_seconds,
                cap_seconds=settings.retry_max_seconds,
                max_attempts=settings.retry_max_attempts,
            )
            storm_options = StormOptions.from_settings(settings)
            processor = SignalProcessor(store, hold_for_storms=storm_options.enabled)
            correlator = (
                StormCorrelator(store, storm_options, StormMetrics(registry))
                if storm_options.enabled
                else None
            )
            processor.episode_listeners.append(AnomalyMetrics(registry).episode)
            watchdog = Watchdog(
                store,
                processor,
                settings.watchdog_alertname,
                settings.watchdog_timeout_seconds,
                registry,
                work=work_metrics,
            )
            deliveries = DeliveryWorker(
                store,
                processor,
                ingest_metrics,
                retention=timedelta(days=settings.delivery_retention_days),
                ignore_alertnames=frozenset({settings.watchdog_alertname})
                if watchdog.enabled
                else frozenset(),
                failures=failures,
                policy=policy,
                concurrency=settings.ingest_concurrency,
                correlator=correlator,
                work_metrics=work_metrics,
            )
            notify = build_notify(
                settings, store, http, registry, failures, charts=email_charts(settings, http)
            )
            poller = OutlierPoller.from_settings(
                settings, store, processor, http, DetectorMetrics(registry), work=work_metrics
            )
            tracer = build_tracer(settings, release=__version__)
            chat_store = ChatStore(store)
            # one budget: analyses and chat turns count against the same hourly cap
            budget = Budget(
                settings.llm_max_tokens_per_incident,
                settings.llm_max_tokens_per_hour,
                usage=(AnalysisStore(store).tokens_since, chat_store.tokens_since),
            )
            stack.push_async_callback(asyncio.to_thread, tracer.shutdown)
            enrichment = EnrichmentWorker(
                store,
                build_provider(settings, http),
                tracer,
                EnrichMetrics(registry),
                prometheus=PrometheusClient(settings.prom_url, http=http, retries=1)
                if settings.prom_url.strip()
                else None,
                prom_url=settings.prom_url,
                rules=RuleIndex.load(settings.enrich_rules_dir),
                concurrency=settings.enrich_concurrency,
                offline_concurrency=settings.enrich_offline_concurrency,
                timeout=settings.enrich_timeout_seconds,
                lease_margin=settings.enrich_lease_margin_seconds,
                poll_seconds=settings.enrich_poll_seconds,
                settle_seconds=settings.enrich_settle_seconds,
                budget=budget,
                failures=failures,
                policy=policy,
            )
            processor.analysis_listeners.append(enrichment.wake)
            if correlator is not None:
                correlator.listeners += [enrichment.wake, notify.worker.wake]
            chat = ChatAssistant(
                chat_store,
                build_provider(settings, http),
                tracer,
                history_messages=settings.chat_history_messages,
                max_incidents=settings.chat_max_incidents,
                budget=budget,
            )
            retention = Retention(
                Collections(store),
                Limits.from_settings(settings),
                RetentionMetrics(registry),
                settings.retention_interval_seconds,
                work=work_metrics,
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
                notify=notify,
                poller=poller,
                http_metrics=HttpMetrics(registry),
                tracer=tracer,
                chat=chat,
                retention=retention,
                enrichment=enrichment,
                budget=budget,
                chat_limit=SlidingLimit(settings.chat_rate_per_minute),
                audit_metrics=AuditMetrics(registry),
            )
            if not settings.webhook_auth_configured:
                log.warning(
                    "WEBHOOK AUTH IS OFF: anyone who can reach this port can post alerts; "
                    "set WEBHOOK_TOKEN (or WEBHOOK_USER/WEBHOOK_PASSWORD)"
                )

            async def start(name: str, run: Callable[[], Awaitable[None]]) -> None:
                await stack.enter_async_context(_background(name, run, work_metrics))

            await start("delivery worker", deliveries.run)
            await start("outbox worker", notify.worker.run)
            if watchdog.enabled:
                every = min(30.0, max(settings.watchdog_timeout_seconds / 4, 0.2))
                await start("watchdog", lambda: watchdog.run(every))
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
                    failures=failures,
                    work=work_metrics,
                )
                await start("reconciler", reconciler.run)
            if settings.monitor_interval > 0:
                await start("outlier poller", poller.run)
            await start("enrichment worker", enrichment.run)
            if settings.retention_interval_seconds > 0:
                await start("retention", retention.run)
            if not settings.api_auth_configured:
                log.warning(
                    "API AUTH IS OFF: set API_TOKEN and ADMIN_TOKEN to protect the data routes"
                )
            # Everything loaded so far (modules, settings, the built stages) lives as long as
            # the process: out of the collector's sight, a full collection no longer walks
            # it, which had paused the event loop ~110 ms early in a burst of webhooks. Once
            # per process (tests build many apps in one).
            if not gc.get_freeze_count():
                gc.collect()
                gc.freeze()
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
        Route("/api/v1/deliveries/{delivery_id}/retry", query.retry_delivery, methods=["POST"]),
        Route("/anomalies", query.list_anomalies, methods=["GET"]),
        *notify_api.ROUTES,
        *detect_api.ROUTES,
        *stats_api.ROUTES,
        *storms_api.ROUTES,
        *chat_api.ROUTES,
        *docs_api.ROUTES,
        *rca_api.ROUTES,
        *incidents_api.ROUTES,
        *console.ROUTES,
    ]
    # the Host check runs first; the console's login cookie becomes a bearer header before
    # access control sees it; both count failed logins in one throttle
    throttle = SlidingLimit(settings.login_failures_per_minute)
    middleware = [
        Middleware(HostGuard, allowed=allowed_hosts(settings)),
        Middleware(ConsoleGate, settings=settings, throttle=throttle),
        *api_middleware(settings, throttle),
        Middleware(AuditLog),  # inside access control: it sees only allowed requests
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={StoreError: console.store_error_handler},
    )


class EnvironmentApp:
    """An ASGI app that builds `create_app(<settings from the environment>)` on first use.

    A bad setting fails the server's lifespan start-up with the one-line message (uvicorn
    prints it and exits) and answers 500 to any request that still arrives.
    """

    def __init__(self) -> None:
        self._app: Starlette | None = None
        self._error = ""

    def _build(self) -> Starlette | None:
        if self._app is None and not self._error:
            from receiver.notify.channels import ChannelError
            from receiver.run import app_from_environment
            from receiver.settings import SettingsError

            try:
                self._app = app_from_environment()
            except (SettingsError, ChannelError) as err:
                self._error = f"receiver: {err}"
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        built = self._build()
        if built is not None:
            await built(scope, receive, send)
        elif scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": self._error})
        elif scope["type"] == "http":
            detail = "the service did not start: invalid settings (see its log)"
            await JSONResponse({"error": "invalid_settings", "detail": detail}, status_code=500)(
                scope, receive, send
            )


app = EnvironmentApp()
