"""The outlier poller in the real app against a real `prometheus` scraping a synthetic exporter.

Two series have two hours of backfilled history (so the range method judges against extremes
from before the one-minute window, fetched from Prometheus); one series is new (no history: it
must never alarm). The poller runs every second with a one-second step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from receiver.detect.metrics import DetectorMetrics
from receiver.detect.poller import OutlierPoller, PollerConfig
from receiver.detect.targets import default_target
from receiver.ingest.processor import SignalProcessor
from receiver.settings import Settings
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store
from tests.notify.outbox_helpers import eventually, notify_settings
from tests.support.exporter import SyntheticExporter
from tests.support.procs import free_port, running
from tests.support.prom import prometheus
from tests.support.service import Running, make_settings, serve
from tests.support.smtp import smtp_server

METRIC = "app_queue_depth"
NORMAL = {"orders": 10.0, "billing": 20.0}


@dataclass(frozen=True)
class PromEnv:
    url: str
    exporter: SyntheticExporter

    def normal(self) -> None:
        for queue, value in NORMAL.items():
            self.exporter.set(METRIC, {"queue": queue}, value)
        self.exporter.set(METRIC, {"queue": "fresh"}, 10.0)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    work = tmp_path_factory.mktemp("poller-prom")
    with SyntheticExporter() as exporter:
        # two hours of history for orders and billing, as Prometheus would have scraped it
        now = int(time.time())
        lines = [f"# TYPE {METRIC} gauge"]
        for queue, value in NORMAL.items():
            labels = f'instance="{exporter.target}",job="synthetic",queue="{queue}"'
            lines += [f"{METRIC}{{{labels}}} {value} {t}" for t in range(now - 7200, now - 90, 30)]
        (work / "history.om").write_text("\n".join(lines) + "\n# EOF\n")
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "tsdb"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=60,
        )
        env = PromEnv("", exporter)
        env.normal()
        with prometheus(work, scrape_targets=[exporter.target], tsdb_path=work / "tsdb") as ep:
            scraped(ep.url)
            yield PromEnv(ep.url, exporter)


def scraped(url: str, within: float = 30.0) -> None:
    """Wait for Prometheus' first scrape (its scrape manager starts after about 5 s)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=5).json()
        if body["data"]["result"]:
            return
        time.sleep(0.2)
    raise AssertionError("Prometheus did not scrape the exporter")


def fast(prom_url: str, **overrides: Any) -> dict[str, Any]:
    """Detector settings for seconds instead of days: 1 s poll and step, 1 min window."""
    values: dict[str, Any] = {
        "prom_url": prom_url,
        "monitor_interval": 1,
        "detect_window": "1m",
        "detect_step": "1s",
        "detect_lookback": "2h",
        "detect_min_history": "1h",
        "detect_rules_dir": Path("/nonexistent"),
    }
    values.update(overrides)
    return values


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a /metrics exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def metrics_text(svc: Running) -> str:
    return (await svc.client.get(f"{svc.url}/metrics")).text


async def snapshots(svc: Running, **params: Any) -> list[dict[str, Any]]:
    body = await svc.get("/prom-metrics", limit=500, **params)
    found: list[dict[str, Any]] = body["metrics"]
    return found


async def wait_cycles(svc: Running, target: str, n: int, within: float = 30.0) -> None:
    """Wait until this instance has run `n` more poll cycles of `target`."""
    start = sample(await metrics_text(svc), "detector_polls_total", target=target)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if sample(await metrics_text(svc), "detector_polls_total", target=target) >= start + n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{target}: fewer than {n} cycles in {within}s")


async def test_spike_is_one_incident_that_survives_a_restart_and_resolves(
    prom: PromEnv, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """A sustained spike opens exactly one detector incident (score, baseline, value on the
    episode), a restart keeps the same episode, back to normal resolves it; a series without
    history never alarms; snapshots are capped at MAX_DOCS."""
    settings = make_settings(embedded_store.uri, tmp_path, **fast(prom.url, max_docs=5))
    orders = f"detector:default:{METRIC}:{prom.exporter.target}"
    try:
        async with serve(settings) as svc:
            await wait_cycles(svc, "default", 2)
            first = (await snapshots(svc))[0]
            assert first["error"] is None
            assert first["series"] >= 3  # orders, billing, fresh (+ up)
            # the seed's reading: `count` series read, `data` the sample as {name, value, instance}
            assert first["count"] == first["series"]
            assert first["data"] == [
                {"name": x["metric"], "value": x["value"], "instance": x["instance"]}
                for x in first["sample"]
            ]
            assert {"name": METRIC, "value": 10.0, "instance": prom.exporter.target} in first[
                "data"
            ]
            assert not any(s["flagged"] for s in first["sample"])
            assert (await svc.get("/api/v1/incidents", source="detector"))["total"] == 0

            prom.exporter.set(METRIC, {"queue": "orders"}, 100.0)
            prom.exporter.set(METRIC, {"queue": "fresh"}, 100.0)
            body = await svc.wait_for(
                "/api/v1/incidents",
                lambda b: b["total"] >= 1 and b["incidents"][0]["episode_count"] >= 1,
                source="detector",
            )
            incident = body["incidents"][0]
            assert incident["key"] == orders
            assert incident["source"] == "detector"
            assert incident["status"] == "firing"
            assert incident["alertnames"] == ["OutlierDetected"]
            detail = await svc.get(f"/api/v1/incidents/{incident['id']}")
            (episode,) = detail["episodes"]
            assert episode["labels"]["queue"] == "orders"
            assert episode["metric"] == METRIC
            assert episode["value"] == 100.0
            det = episode["detector"]
            assert det["method"] == "range"
            assert det["score"] >= det["threshold"] == 0.5
            assert det["value"] == 100.0
            # judged on the raw value or a rolling mean: either way the band sits near normal
            assert 10.0 <= det["baseline"] < det["band_high"] < 50.0
            assert det["target"] == "default"
            assert "app_queue_depth{" in episode["generator_url"].replace("%7B", "{")
            await wait_cycles(svc, "default", 3)
            text = await metrics_text(svc)
            assert sample(text, "detector_episodes_opened_total", target="default") == 1
            assert sample(text, "detector_series_scored_total", target="default") >= 3
            assert (
                sample(text, "anomalies_detected_total", source="detector", severity="medium") == 1
            )

        # a new process finds the open episode in the store and carries on with it
        async with serve(settings) as svc:
            await wait_cycles(svc, "default", 3)
            text = await metrics_text(svc)
            assert sample(text, "detector_episodes_opened_total", target="default") == 0
            episodes = await svc.get("/anomalies", source="detector")
            assert episodes["total"] == 1
            assert episodes["anomalies"][0]["status"] == "firing"
            assert episodes["anomalies"][0]["starts_at"] == episode["starts_at"]

            prom.normal()
            await svc.wait_for(
                f"/api/v1/incidents/{incident['id']}", lambda b: b["status"] == "resolved"
            )
            detail = await svc.get(f"/api/v1/incidents/{incident['id']}")
            (episode,) = detail["episodes"]
            assert episode["status"] == "resolved"
            assert episode["ends_at"] > episode["starts_at"]
            await wait_cycles(svc, "default", 2)
            everything = await svc.get("/api/v1/incidents")
            assert everything["total"] == 1  # nothing for `fresh`, nothing re-opened
            snaps = await svc.get("/prom-metrics", limit=500)
            assert snaps["total"] == snaps["count"] == 5
    finally:
        prom.normal()


async def test_two_replicas_poll_each_target_once(
    prom: PromEnv, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Two app instances on one store: each target is polled by exactly one of them (lease);
    when that one stops, the other takes the target over."""
    db = f"t_{uuid.uuid4().hex[:12]}"
    common = fast(
        prom.url,
        mongo_db=db,
        detect_selectors="up",
        detect_lookback="1m",
        detect_min_history="5s",
    )
    stack_a, stack_b = contextlib.AsyncExitStack(), contextlib.AsyncExitStack()
    try:
        a = await stack_a.enter_async_context(
            serve(make_settings(embedded_store.uri, tmp_path / "a", **common))
        )
        b = await stack_b.enter_async_context(
            serve(make_settings(embedded_store.uri, tmp_path / "b", **common))
        )
        created = await a.client.post(
            f"{a.url}/api/v1/targets", json={"name": "second", "url": prom.url}
        )
        assert created.status_code == 201

        for target in ("default", "second"):
            deadline = time.monotonic() + 30
            while len(await snapshots(a, target=target)) < 4:
                assert time.monotonic() < deadline, f"{target} was not polled"
                await asyncio.sleep(0.2)
        texts = [await metrics_text(a), await metrics_text(b)]
        holder_of: dict[str, str] = {}
        for target in ("default", "second"):
            polls = [sample(t, "detector_polls_total", target=target) for t in texts]
            assert sorted(p > 0 for p in polls) == [False, True], (target, polls)
            snaps = await snapshots(a, target=target)
            (holder_of[target],) = {s["holder"] for s in snaps}
            assert all(s["error"] is None and s["series"] == 1 for s in snaps)
        listed = (await a.get("/api/v1/targets"))["targets"]
        assert {t["name"]: t["lease"]["holder"] for t in listed} == holder_of

        # stop the replica that polls `default`: the other one takes it over
        b_polled = sample(texts[1], "detector_polls_total", target="default") > 0
        stopping, survivor = (stack_b, a) if b_polled else (stack_a, b)
        await stopping.aclose()
        # well within the 15 s lease: the stopped replica released it on shutdown
        await wait_cycles(survivor, "default", 2, within=6)
        holders = {s["holder"] for s in await snapshots(survivor, target="default")}
        assert len(holders) == 2
    finally:
        await stack_b.aclose()
        await stack_a.aclose()


async def test_unreachable_prometheus_counts_errors_and_keeps_serving(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With nothing listening at PROM_URL each cycle is a counted `unavailable` error on a
    snapshot; the service keeps answering."""
    down = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(embedded_store.uri, tmp_path, **fast(down))
    async with serve(settings) as svc:
        await wait_cycles(svc, "default", 2)
        text = await metrics_text(svc)
        assert sample(text, "detector_poll_errors_total", target="default", kind="unavailable") >= 2
        snap = (await snapshots(svc))[0]
        assert snap["error"].startswith("unavailable:")
        assert snap["series"] == 0
        assert (await svc.client.get(f"{svc.url}/healthz")).status_code == 200
        assert (await svc.get("/api/v1/incidents"))["total"] == 0


PROM_USER = "monitor"
PROM_PASSWORD = "s3cret-prom-pass"
# bcrypt (cost 4) of PROM_PASSWORD, as Prometheus' --web.config.file wants it
PROM_HASH = "$2b$04$lRYGc9qZgUYXJs1R9rW5Fu1i3e3.vQG/Swfuy8vqaYd4dgDDlsuRm"


@contextlib.contextmanager
def secured_prometheus(work: Path, scrape: str) -> Iterator[str]:
    """A real `prometheus` whose HTTP API needs basic auth (its own web config)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (work / "web.yml").write_text(f"basic_auth_users:\n  {PROM_USER}: '{PROM_HASH}'\n")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "secured", "static_configs": [{"targets": [scrape]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    argv = [
        "prometheus",
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.config.file={work / 'web.yml'}",
    ]
    with running(argv, work / "prometheus.log") as proc:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "secured prometheus not ready"
            try:
                ready = httpx.get(f"{url}/-/ready", auth=(PROM_USER, PROM_PASSWORD), timeout=1)
                if ready.is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url


async def test_stored_targets_are_polled_with_their_credentials(
    prom: PromEnv, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """A stored target's basic auth reaches a Prometheus that requires it; a wrong password is
    a counted poll error; neither the API nor the snapshots ever show the password."""
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        **fast("", detect_selectors="up", detect_lookback="1m", detect_min_history="5s"),
    )
    with secured_prometheus(tmp_path / "secured", prom.exporter.target) as url:
        async with serve(settings) as svc:
            for name, password in (("secured", PROM_PASSWORD), ("wrongpass", "not-it-at-all")):
                auth = {"type": "basic", "username": PROM_USER, "password": password}
                resp = await svc.client.post(
                    f"{svc.url}/api/v1/targets", json={"name": name, "url": url, "auth": auth}
                )
                assert resp.status_code == 201, resp.text
            off = {"name": "switched-off", "url": url, "enabled": False}
            assert (await svc.client.post(f"{svc.url}/api/v1/targets", json=off)).is_success
            deadline = time.monotonic() + 30
            while not any(s["series"] == 1 for s in await snapshots(svc, target="secured")):
                assert time.monotonic() < deadline, await snapshots(svc, target="secured")
                await asyncio.sleep(0.2)
            await wait_cycles(svc, "wrongpass", 1)
            assert all(s["error"] is None for s in await snapshots(svc, target="secured"))
            wrong = await snapshots(svc, target="wrongpass")
            assert wrong
            assert all("HTTP 401" in s["error"] for s in wrong)
            text = await metrics_text(svc)
            assert sample(text, "detector_poll_errors_total", target="wrongpass") >= 1
            assert sample(text, "detector_poll_errors_total", target="secured") == 0
            listed = (await svc.client.get(f"{svc.url}/api/v1/targets")).text
            shown = listed + (await svc.client.get(f"{svc.url}/prom-metrics")).text
            assert PROM_PASSWORD not in shown
            assert "not-it-at-all" not in shown
            names = [t["name"] for t in json.loads(listed)["targets"]]
            assert names == ["secured", "switched-off", "wrongpass"]
            assert await snapshots(svc, target="switched-off") == []


async def test_one_query_range_per_selector_and_the_series_cap(
    prom: PromEnv, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A cycle sends ONE query_range per selector however many series it returns; the series
    cap stops with a warning; a selector Prometheus refuses is recorded, the others scored."""
    calls: list[str] = []

    async def record(request: httpx.Request) -> None:
        calls.append(request.url.path)

    settings = Settings(**{"_env_file": None, **fast(prom.url)})
    config = PollerConfig.from_settings(settings)
    target = default_target(settings)
    assert target is not None
    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:

        def poller(**changes: Any) -> OutlierPoller:
            return OutlierPoller(
                dataclasses.replace(config, **changes),
                store,
                SignalProcessor(store),
                http,
                DetectorMetrics(CollectorRegistry()),
                target,
            )

        first = poller()
        report = await first.poll(target)
        assert report.error == ""
        assert report.selectors == 2  # app_queue_depth and up; scrape_* are internal
        assert report.series == 4  # orders, billing, fresh and up
        # the window, plus once per DETECT_SEASON_REFIT the seasonal fit's coarse history
        assert calls.count("/api/v1/query_range") == 2 + 2
        assert calls.count("/api/v1/query") == 4  # min and max before the window, per selector
        assert calls.count("/api/v1/label/__name__/values") == 1
        calls.clear()
        await first.poll(target)
        assert calls.count("/api/v1/query_range") == 2  # the fits are cached

        calls.clear()
        with caplog.at_level(logging.WARNING, logger="receiver.detect.poller"):
            report = await poller(max_series=2).poll(target)
        assert report.capped
        assert report.series == 2
        assert "DETECT_MAX_SERIES=2 reached" in caplog.text

        report = await poller(selectors="rate(up[; up").poll(target)
        assert report.series == 1
        assert report.error.startswith("query: rate(up[: ")


async def test_an_outlier_is_emailed_when_only_smtp_is_configured(
    prom: PromEnv, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With the default routing an outlier (severity medium) is emailed, not only sent to
    Slack: a setup with SMTP alone hears of it, once."""
    with smtp_server() as smtp:
        settings = notify_settings(embedded_store.uri, tmp_path, smtp=smtp, **fast(prom.url))
        assert not settings.notify_routes  # the shipped default routing
        try:
            async with serve(settings) as svc:
                await wait_cycles(svc, "default", 2)
                # far above anything earlier tests left in the lookback
                prom.exporter.set(METRIC, {"queue": "billing"}, 5000.0)
                await eventually(lambda: smtp.messages, 30, "the outlier email")
                await wait_cycles(svc, "default", 3)
                incidents = await svc.get("/api/v1/incidents", source="detector")
        finally:
            prom.normal()
    assert incidents["total"] == 1
    assert incidents["incidents"][0]["severity"] == "medium"
    assert [m.message["Subject"] for m in smtp.messages] == [f"[MEDIUM] {METRIC}"]
