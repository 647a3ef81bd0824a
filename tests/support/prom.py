"""Start a real Prometheus and a real Alertmanager (Debian binaries) on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from tests.support.procs import free_port, running


@dataclass(frozen=True)
class Endpoint:
    url: str
    workdir: Path


@contextlib.contextmanager
def prometheus(
    workdir: Path,
    scrape_targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
    extra_args: Sequence[str] = (),
    tsdb_path: Path | None = None,
    query_log: Path | None = None,
) -> Iterator[Endpoint]:
    """A real `prometheus` scraping `scrape_targets` every `interval`, evaluating `rule_files`;
    with `query_log`, Prometheus writes every query it runs there (one JSON object a line)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings: dict[str, object] = {"scrape_interval": interval, "evaluation_interval": interval}
    if query_log is not None:
        settings["query_log_file"] = str(query_log.resolve())
    config: dict[str, object] = {
        "global": settings,
        "rule_files": [str(p.resolve()) for p in rule_files],
        "scrape_configs": [
            {"job_name": "synthetic", "static_configs": [{"targets": list(scrape_targets)}]}
        ]
        if scrape_targets
        else [],
    }
    if alertmanager_url is not None:
        host = alertmanager_url.split("://", 1)[1].rstrip("/")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        "prometheus",
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tsdb_path or workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",
        "--storage.tsdb.retention.time=3650d",
        *extra_args,
    ]
    url = f"http://127.0.0.1:{port}"
    with running(argv, workdir / "prometheus.log", ready_url=f"{url}/-/ready", timeout=60):
        yield Endpoint(url=url, workdir=workdir)


@contextlib.contextmanager
def alertmanager(
    workdir: Path,
    webhook_url: str | Sequence[str],
    token: str | None = None,
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    group_by: Sequence[str] = ("alertname",),
    port: int | None = None,
    cluster_port: int | None = None,
    peers: Sequence[int] = (),
    routes: Sequence[Mapping[str, object]] = (),
    resolve_timeout: str | None = None,
) -> Iterator[Endpoint]:
    """A real `prometheus-alertmanager` whose receiver `monitor` posts to `webhook_url`.

    Several URLs give that receiver one webhook_config each: every notification goes to all of
    them (replicas behind one Alertmanager config, the harshest case for duplicates).

    `routes` are child routes of the root (group_by, continue, matchers, ...); each receiver
    they name is declared with the same webhook_configs, so one service hears every route.

    With `cluster_port`, it gossips on 127.0.0.1:`cluster_port` with the `peers` (ports) as an
    HA pair does; without it, clustering is off.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    urls = [webhook_url] if isinstance(webhook_url, str) else list(webhook_url)
    webhooks: list[dict[str, object]] = []
    for url in urls:
        webhook: dict[str, object] = {"url": url, "send_resolved": True}
        if token is not None:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
        webhooks.append(webhook)
    route: dict[str, object] = {
        "receiver": "monitor",
        "group_by": list(group_by),
        "group_wait": group_wait,
        "group_interval": group_interval,
        "repeat_interval": repeat_interval,
    }
    if routes:
        route["routes"] = [dict(r) for r in routes]
    names = dict.fromkeys(["monitor", *(str(r["receiver"]) for r in routes if "receiver" in r)])
    config: dict[str, object] = {
        "route": route,
        "receivers": [{"name": name, "webhook_configs": webhooks} for name in names],
    }
    if resolve_timeout is not None:
        config["global"] = {"resolve_timeout": resolve_timeout}
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    argv = [
        "prometheus-alertmanager",
        f"--config.file={cfg}",
        f"--storage.path={workdir / 'amdata'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if cluster_port is None:
        argv.append("--cluster.listen-address=")
    else:
        argv += [
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
            f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
            "--cluster.peer-timeout=1s",
            "--cluster.gossip-interval=50ms",
            "--cluster.pushpull-interval=1s",
            *(f"--cluster.peer=127.0.0.1:{p}" for p in peers),
        ]
    with running(argv, workdir / "alertmanager.log", ready_url=f"{url}/-/ready", timeout=60):
        yield Endpoint(url=url, workdir=workdir)


async def until_scraped(client: httpx.AsyncClient, prom: str, metric: str, samples: int) -> None:
    """Wait until Prometheus holds at least `samples` samples of `metric` from the last minute."""
    for _ in range(200):
        resp = await client.get(f"{prom}/api/v1/query", params={"query": f"{metric}[1m]"})
        result = resp.json()["data"]["result"]
        if result and len(result[0]["values"]) >= samples:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"Prometheus never scraped {metric}")
