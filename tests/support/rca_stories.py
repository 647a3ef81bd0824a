"""Incident stories with a known root cause, for testing and benchmarking the analysis.

Each story is ~6 h of series at 15 s (plus, when it has a daily distraction, 3 earlier days at
a 2 min step) ending a minute before "now": a normal daily shape, noise, a distraction or two,
then the cause and its consequences. `Story.openmetrics()` is the text `promtool tsdb
create-blocks-from openmetrics` backfills; `Story.webhook()` is the Alertmanager v4 payload to
post; `Story.cause` names the series a correct analysis cites. `verdict()` reads the analysis
API's answer and says whether its top hypothesis names the cause.

Every number (the instance picked, onset times, magnitudes, noise) comes from the seed, so the
method is tested rather than one dataset. Hosts run an application on :8080 (job = the
service) and node_exporter on :9100 (job "node").
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
import numpy.typing as npt

from receiver.ingest.normalise import fingerprint
from tests.support.payloads import webhook
from tests.support.prom import Endpoint, prometheus

FloatArray = npt.NDArray[np.float64]
Put = Callable[[str, str, dict[str, str], Any], None]

STEP = 15
WINDOW = 6 * 3600
HISTORY_STEP = 120
HISTORY_DAYS = 3
BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_SIGMA = 0.6
GIB = 1024.0**3
CPU_MODES = ("user", "system", "iowait", "steal")

# --- what a story is ------------------------------------------------------------------------


@dataclass(frozen=True)
class CauseRef:
    """A series a correct analysis names: base metric name and a label subset."""

    metric: str
    labels: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "labels": dict(self.labels)}


@dataclass
class Sample:
    """One series: sample name, labels, and a value per timestamp (NaN = not scraped)."""

    name: str
    labels: dict[str, str]
    values: FloatArray


@dataclass
class Family:
    name: str
    type: str  # counter | gauge | histogram | summary
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Story:
    name: str
    kind: str
    seed: int
    times: npt.NDArray[np.int64]
    families: dict[str, Family]
    alerts: list[dict[str, Any]]
    cause: CauseRef
    # other views of the same cause a correct analysis may cite instead (CPU idle falling
    # while user CPU rises on the same host): the same fact, not a different answer
    equivalents: tuple[CauseRef, ...] = ()
    cause_onset: float = 0.0
    distractions: list[str] = field(default_factory=list)
    recurring: str | None = None  # the series of a daily recurring distraction, if any

    @property
    def end(self) -> int:
        return int(self.times[-1])

    @property
    def alert_at(self) -> float:
        return min(_parse_ts(a["startsAt"]) for a in self.alerts)

    @property
    def all_instances_alert(self) -> bool:
        return len(self.alerts) > 1

    def series(self, metric: str, labels: Mapping[str, str]) -> list[Sample]:
        """Samples whose name is `metric` and whose labels contain `labels`."""
        family = self.families.get(_family_name(metric))
        if family is None:
            return []
        return [
            s
            for s in family.samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def webhook(self, group: str | None = None) -> dict[str, Any]:
        """The Alertmanager v4 webhook payload announcing this story's alert(s)."""
        common = {
            k: v
            for k, v in self.alerts[0]["labels"].items()
            if all(a["labels"].get(k) == v for a in self.alerts)
        }
        return webhook(
            self.alerts,
            group=group or f"{self.name}-{self.seed}",
            commonLabels=common,
        )

    def openmetrics(self) -> str:
        """All series as OpenMetrics text, one family after another, ending with `# EOF`."""
        lines: list[str] = []
        stamps = [str(int(t)) for t in self.times]
        for family in self.families.values():
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in family.samples:
                prefix = sample.name + _om_labels(sample.labels) + " "
                for stamp, value in zip(stamps, sample.values.tolist(), strict=True):
                    if not math.isnan(value):
                        lines.append(f"{prefix}{value:.10g} {stamp}")
        lines.append("# EOF")
        return "\n".join(lines) + "\n"

    @property
    def sample_count(self) -> int:
        return sum(
            int(np.count_nonzero(~np.isnan(s.values)))
            for f in self.families.values()
            for s in f.samples
        )


def _family_name(metric: str) -> str:
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def _om_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


def _parse_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- drivers: the state of each host over time ------------------------------------------------


@dataclass
class Host:
    """What one host does over time; series are emitted from these arrays."""

    name: str
    job: str
    rate: FloatArray  # requests/s
    err: FloatArray  # fraction of 5xx
    lat: FloatArray  # median latency, s
    rss: FloatArray
    heap: FloatArray
    gc: FloatArray  # GC seconds per second
    fds: FloatArray
    pool: FloatArray  # db pool in use
    pool_max: float
    cpu: dict[str, FloatArray]  # node CPU fraction per mode (per core)
    fs_app: FloatArray  # bytes free on /var/lib/app
    fs_app_size: float
    disk_write: FloatArray  # bytes/s
    client_lat: dict[str, FloatArray] = field(default_factory=dict)  # upstream -> median s
    versions: list[tuple[float, str]] = field(default_factory=list)
    restarts: list[tuple[float, float]] = field(default_factory=list)  # (at, down seconds)
    started: float = 0.0

    @property
    def instance(self) -> str:
        return f"{self.name}:8080"

    @property
    def node(self) -> str:
        return f"{self.name}:9100"


class World:
    """Hosts of a few jobs over a shared timeline, plus the story's own extra families."""

    def __init__(self, rng: np.random.Generator, times: npt.NDArray[np.int64]) -> None:
        self.rng = rng
        self.times = times
        self.t = times.astype(np.float64)
        self.dt = np.diff(self.t, prepend=self.t[0] - STEP)
        self.hosts: list[Host] = []
        self.extra: dict[str, Family] = {}
        self.jobs_version: dict[str, str] = {}

    # shapes ---------------------------------------------------------------------------------

    def noise(self, sigma: float, rho: float = 0.97) -> FloatArray:
        """Mean-reverting noise (AR(1) per sample) with stationary std `sigma`."""
        n = len(self.t)
        shocks = self.rng.normal(0.0, sigma * math.sqrt(1 - rho * rho), n)
        out = np.empty(n)
        acc = self.rng.normal(0.0, sigma)
        for i in range(n):
            acc = rho * acc + shocks[i]
            out[i] = acc
        return out

    def daily(self, amplitude: float, peak_hour: float = 15.0) -> FloatArray:
        """1 ± amplitude over the UTC day, highest at `peak_hour`."""
        hours = (self.t % 86400) / 3600.0
        return np.asarray(1.0 + amplitude * np.cos((hours - peak_hour) / 24.0 * 2 * math.pi))

    def ramp(self, start: float, end: float) -> FloatArray:
        """0 before `start`, rising linearly to 1 at `end`, 1 after."""
        return np.asarray(np.clip((self.t - start) / max(end - start, 1.0), 0.0, 1.0))

    def step(self, at: float) -> FloatArray:
        return np.asarray((self.t >= at).astype(np.float64))

    def window(self, start: float, end: float) -> FloatArray:
        return np.asarray(((self.t >= start) & (self.t < end)).astype(np.float64))

    def daily_window(self, start: float, minutes: float, jitter: float = 60.0) -> FloatArray:
        """1 during `minutes` from `start`'s clock time on today and every earlier day."""
        out = np.zeros(len(self.t))
        day = 0
        while start - day * 86400 >= self.t[0] - 86400:
            shift = float(self.rng.uniform(-jitter, jitter)) if day else 0.0
            begin = start - day * 86400 + shift
            out = np.maximum(out, self.window(begin, begin + minutes * 60))
            day += 1
        return out

    def blips(self, count: int, scale: float, start: float | None = None) -> FloatArray:
        """`count` short spikes (1-3 samples) of ±`scale` anywhere after `start`."""
        out = np.zeros(len(self.t))
        lo = int(np.searchsorted(self.t, start if start is not None else self.t[0]))
        for _ in range(count):
            i = int(self.rng.integers(lo, len(self.t) - 3))
            out[i : i + int(self.rng.integers(1, 4))] += scale * float(self.rng.choice([-1, 1]))
        return out

    def counter(
        self, rate: FloatArray, resets: Sequence[float] = (), offset: float = 0.0
    ) -> FloatArray:
        """A monotonically increasing counter of `rate`, back to 0 at each reset."""
        inc = np.clip(rate, 0.0, None) * self.dt
        total = np.cumsum(inc) + offset
        for at in sorted(resets):
            i = int(np.searchsorted(self.t, at))
            if i < len(total):
                total[i:] -= total[i] - inc[i]
        return np.asarray(total)

    # hosts ------------------------------------------------------------------------------------

    def host(
        self, name: str, job: str, *, rps: float, latency: float, version: str = "1.4.2"
    ) -> Host:
        rng = self.rng
        n = len(self.t)
        shape = self.daily(0.35, peak_hour=float(rng.uniform(13, 17)))
        cpu_user = 0.12 * shape * (1 + self.noise(0.08)) + 0.05
        host = Host(
            name=name,
            job=job,
            rate=rps * shape * (1 + self.noise(0.04)),
            err=np.clip(0.002 + self.noise(0.0007), 0.0, None),
            lat=latency * (1 + 0.15 * (shape - 1)) * (1 + self.noise(0.05)),
            rss=np.full(n, float(rng.uniform(280, 420)) * 2**20) * (1 + self.noise(0.01)),
            heap=np.full(n, float(rng.uniform(90, 140)) * 2**20) * (1 + self.noise(0.04, 0.9)),
            gc=np.clip(0.004 * shape * (1 + self.noise(0.1, 0.8)), 0.0, None),
            fds=np.round(40 + 6 * shape + self.noise(2.0, 0.9)),
            pool=np.clip(np.round(3 * shape + self.noise(1.0, 0.8)), 0, None),
            pool_max=20.0,
            cpu={
                "user": np.clip(cpu_user, 0.01, None),
                "system": np.clip(0.04 * shape * (1 + self.noise(0.1)), 0.005, None),
                "iowait": np.clip(0.01 + self.noise(0.003, 0.8), 0.0, None),
                "steal": np.clip(0.003 + self.noise(0.001, 0.8), 0.0, None),
            },
            fs_app=float(rng.uniform(18, 30)) * GIB + self.noise(0.02 * GIB, 0.995),
            fs_app_size=50 * GIB,
            disk_write=np.clip(2e6 * shape * (1 + self.noise(0.2, 0.8)), 1e4, None),
            versions=[(float(self.t[0]), version)],
            started=float(self.t[0]) - float(rng.uniform(3, 20)) * 86400,
        )
        self.jobs_version[job] = version
        self.hosts.append(host)
        return host

    def of(self, job: str) -> list[Host]:
        return [h for h in self.hosts if h.job == job]

    def add(self, kind: str, name: str, labels: dict[str, str], values: Any) -> None:
        family = _family_name(name)
        fam = self.extra.setdefault(family, Family(family, kind))
        arr = np.broadcast_to(np.asarray(values, dtype=np.float64), self.t.shape).copy()
        fam.samples.append(Sample(name, labels, arr))

    # emission ---------------------------------------------------------------------------------

    def families(self) -> dict[str, Family]:
        out: dict[str, Family] = {}

        def put(kind: str, name: str, labels: dict[str, str], values: Any) -> None:
            family = _family_name(name)
            fam = out.setdefault(family, Family(family, kind))
            arr = np.broadcast_to(np.asarray(values, dtype=np.float64), self.t.shape).copy()
            fam.samples.append(Sample(name, labels, arr))

        for h in self.hosts:
            self._emit_app(h, put)
        for h in self.hosts:
            self._emit_node(h, put)
        for name, fam in self.extra.items():
            out.setdefault(name, Family(name, fam.type)).samples.extend(fam.samples)
        return out

    def _down(self, h: Host) -> FloatArray:
        """1 where the application was not running (restarting)."""
        down = np.zeros(len(self.t))
        for at, seconds in h.restarts:
            down = np.maximum(down, self.window(at, at + seconds))
        return down

    def _emit_app(self, h: Host, put: Put) -> None:
        base = {"instance": h.instance, "job": h.job}
        down = self._down(h)
        gone = np.where(down > 0, np.nan, 1.0)
        resets = [at + s for at, s in h.restarts]
        put("gauge", "up", base, 1.0 - down)
        start = np.full(len(self.t), h.started)
        for at, seconds in h.restarts:
            start[self.t >= at + seconds] = at + seconds
        put("gauge", "process_start_time_seconds", base, start * gone)
        put(
            "gauge",
            "process_resident_memory_bytes",
            base,
            h.rss * gone,
        )
        put(
            "gauge",
            "process_virtual_memory_bytes",
            base,
            (h.rss * 3.1 + 8e8) * gone,
        )
        put("gauge", "process_open_fds", base, h.fds * gone)
        put("gauge", "process_max_fds", base, np.full(len(self.t), 1024.0) * gone)
        put(
            "counter",
            "process_cpu_seconds_total",
            base,
            self.counter(0.05 + h.rate * 0.002, resets) * gone,
        )
        put(
            "gauge",
            "go_goroutines",
            base,
            np.round(60 + h.rate * 0.4 + self.noise(3)) * gone,
        )
        put("gauge", "go_threads", base, np.round(14 + self.noise(1.0, 0.9)) * gone)
        put(
            "gauge",
            "go_memstats_heap_inuse_bytes",
            base,
            h.heap * gone,
        )
        gc_count = self.counter(np.full(len(self.t), 0.2) + h.gc * 40, resets)
        put(
            "summary",
            "go_gc_duration_seconds",
            {**base, "quantile": "0.5"},
            np.clip(h.gc / 0.25, 1e-5, None) * gone,
        )
        put(
            "summary",
            "go_gc_duration_seconds_sum",
            base,
            self.counter(h.gc, resets) * gone,
        )
        put(
            "summary",
            "go_gc_duration_seconds_count",
            base,
            gc_count * gone,
        )
        versions = np.full(len(self.t), -1)
        names = [v for _, v in h.versions]
        for idx, (at, _) in enumerate(h.versions):
            versions[self.t >= at] = idx
        for version in dict.fromkeys(names):
            where = np.isin(versions, [i for i, v in enumerate(names) if v == version])
            put(
                "gauge",
                f"{h.job.replace('-', '_')}_build_info",
                {
                    **base,
                    "version": version,
                    "revision": fingerprint({"version": version})[:7],
                    "goversion": "go1.21.5",
                },
                np.where(where, 1.0, np.nan) * gone,
            )
        put(
            "gauge",
            "db_pool_connections",
            {**base, "state": "in_use"},
            h.pool * gone,
        )
        put(
            "gauge",
            "db_pool_max_connections",
            base,
            np.full(len(self.t), h.pool_max) * gone,
        )
        # requests and latency, per handler
        for handler, share, slow in (("/api/orders", 0.7, 1.0), ("/api/items", 0.3, 1.6)):
            rate = h.rate * share
            err = np.clip(h.err, 0.0, 1.0)
            labels = {**base, "handler": handler}
            put(
                "counter",
                "http_requests_total",
                {**labels, "code": "200"},
                self.counter(rate * (1 - err), resets) * gone,
            )
            put(
                "counter",
                "http_requests_total",
                {**labels, "code": "500"},
                self.counter(rate * err, resets) * gone,
            )
            median = h.lat * slow
            for le in (*BUCKETS, math.inf):
                frac = _lognormal_cdf(le, median)
                put(
                    "histogram",
                    "http_request_duration_seconds_bucket",
                    {**labels, "le": "+Inf" if le == math.inf else f"{le:g}"},
                    self.counter(rate * frac, resets) * gone,
                )
            mean = median * math.exp(LATENCY_SIGMA**2 / 2)
            put(
                "histogram",
                "http_request_duration_seconds_sum",
                labels,
                self.counter(rate * mean, resets) * gone,
            )
            put(
                "histogram",
                "http_request_duration_seconds_count",
                labels,
                self.counter(rate, resets) * gone,
            )
        for upstream, median in h.client_lat.items():
            labels = {**base, "upstream": upstream}
            rate = h.rate * 0.6
            for le in (*BUCKETS, math.inf):
                put(
                    "histogram",
                    "http_client_request_duration_seconds_bucket",
                    {**labels, "le": "+Inf" if le == math.inf else f"{le:g}"},
                    self.counter(rate * _lognormal_cdf(le, median), resets) * gone,
                )
            mean = median * math.exp(LATENCY_SIGMA**2 / 2)
            put(
                "histogram",
                "http_client_request_duration_seconds_sum",
                labels,
                self.counter(rate * mean, resets) * gone,
            )
            put(
                "histogram",
                "http_client_request_duration_seconds_count",
                labels,
                self.counter(rate, resets) * gone,
            )
        # unrelated application series: discovery has to choose among them
        for cache in ("sessions", "products", "prices"):
            level = float(self.rng.uniform(1e3, 5e4))
            put(
                "gauge",
                "app_cache_entries",
                {**base, "cache": cache},
                np.round(level * (1 + self.noise(0.05, 0.99)) + self.blips(2, level * 0.3)) * gone,
            )
        for queue in ("emails", "exports"):
            put(
                "gauge",
                "app_queue_depth",
                {**base, "queue": queue},
                np.clip(np.round(5 + self.noise(3, 0.9) + self.blips(3, 40)), 0, None) * gone,
            )
            put(
                "counter",
                "app_jobs_processed_total",
                {**base, "queue": queue},
                self.counter(np.clip(0.5 * h.rate / 50 + self.noise(0.05), 0, None), resets) * gone,
            )
        for flag in ("new_checkout", "dark_mode", "fast_search", "promo_banner"):
            put(
                "counter",
                "app_feature_flag_evaluations_total",
                {**base, "flag": flag},
                self.counter(h.rate * float(self.rng.uniform(0.1, 0.9)), resets) * gone,
            )
        for severity, share in (("info", 1.0), ("warn", 0.02), ("error", 0.004)):
            put(
                "counter",
                "app_log_messages_total",
                {**base, "level": severity},
                self.counter(
                    h.rate * share * (1 + (h.err - 0.002) * (300 if severity == "error" else 0)),
                    resets,
                )
                * gone,
            )

    def _emit_node(self, h: Host, put: Put) -> None:
        base = {"instance": h.node, "job": "node"}
        put("gauge", "up", base, 1.0)
        boot = h.started - float(self.rng.uniform(1, 40)) * 86400
        put("gauge", "node_boot_time_seconds", base, boot)
        busy = sum(h.cpu.values())
        for cpu in ("0", "1"):
            jitter = 1 + self.noise(0.03, 0.8)
            for mode, frac in h.cpu.items():
                put(
                    "counter",
                    "node_cpu_seconds_total",
                    {**base, "cpu": cpu, "mode": mode},
                    self.counter(np.clip(frac * jitter, 0, 1), offset=1e6),
                )
            put(
                "counter",
                "node_cpu_seconds_total",
                {**base, "cpu": cpu, "mode": "idle"},
                self.counter(np.clip(1 - busy * jitter, 0, 1), offset=5e6),
            )
        total = 8 * GIB
        put("gauge", "node_memory_MemTotal_bytes", base, total)
        put(
            "gauge",
            "node_memory_MemAvailable_bytes",
            base,
            total - 2.5 * GIB - np.nan_to_num(h.rss * (1 - self._down(h))) + self.noise(0.05 * GIB),
        )
        root = {**base, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}
        app = {**base, "device": "/dev/sdb1", "fstype": "xfs", "mountpoint": "/var/lib/app"}
        put("gauge", "node_filesystem_size_bytes", root, 40 * GIB)
        put(
            "gauge",
            "node_filesystem_avail_bytes",
            root,
            float(self.rng.uniform(12, 25)) * GIB + self.noise(0.01 * GIB, 0.995),
        )
        put("gauge", "node_filesystem_size_bytes", app, h.fs_app_size)
        put(
            "gauge",
            "node_filesystem_avail_bytes",
            app,
            np.clip(h.fs_app, 0, None),
        )
        disk = {**base, "device": "sda"}
        put(
            "counter",
            "node_disk_written_bytes_total",
            disk,
            self.counter(h.disk_write, offset=1e12),
        )
        put(
            "counter",
            "node_disk_io_time_seconds_total",
            disk,
            self.counter(np.clip(0.02 + h.disk_write / 2e8 + self.noise(0.005), 0, 1), offset=1e5),
        )
        net = {**base, "device": "eth0"}
        put(
            "counter",
            "node_network_receive_bytes_total",
            net,
            self.counter(h.rate * 3e3 * (1 + self.noise(0.05)), offset=1e12),
        )
        put(
            "counter",
            "node_network_transmit_bytes_total",
            net,
            self.counter(h.rate * 9e3 * (1 + self.noise(0.05)), offset=1e12),
        )
        put(
            "counter",
            "node_context_switches_total",
            base,
            self.counter(3e3 + h.rate * 20 * (1 + self.noise(0.05)), offset=1e9),
        )
        put(
            "gauge",
            "node_sockstat_TCP_inuse",
            base,
            np.round(30 + h.rate * 0.3 + self.noise(4, 0.8)),
        )
        put(
            "gauge",
            "node_filefd_allocated",
            base,
            np.round(2000 + self.noise(40, 0.99) + self.blips(2, 400)),
        )
        put(
            "gauge",
            "node_ntp_offset_seconds",
            base,
            self.noise(0.002, 0.9) + self.blips(3, 0.05),
        )


def _lognormal_cdf(le: float, median: FloatArray) -> FloatArray:
    if le == math.inf:
        return np.ones_like(median)
    z = (math.log(le) - np.log(np.clip(median, 1e-6, None))) / LATENCY_SIGMA
    return np.asarray(0.5 * (1 + _erf(z / math.sqrt(2))))


_erf_vec = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x: FloatArray) -> FloatArray:
    return np.asarray(_erf_vec(x), dtype=np.float64)


# --- alerts -----------------------------------------------------------------------------------

LATENCY_EXPR = (
    "histogram_quantile(0.99, sum by (le, job, instance) "
    '(rate(http_request_duration_seconds_bucket{{job="{job}"}}[5m]))) > {threshold}'
)
ERROR_EXPR = (
    'sum by (job, instance) (rate(http_requests_total{{job="{job}",code=~"5.."}}[5m])) '
    '/ sum by (job, instance) (rate(http_requests_total{{job="{job}"}}[5m])) > 0.05'
)
DOWN_EXPR = 'up{{job="{job}"}} == 0'


def _generator_url(expr: str) -> str:
    return f"http://prometheus.example:9090/graph?g0.expr={quote_plus(expr)}&g0.tab=1"


def _alert(
    name: str, host: Host, starts: float, expr: str, severity: str, summary: str
) -> dict[str, Any]:
    labels = {
        "alertname": name,
        "instance": host.instance,
        "job": host.job,
        "service": host.job,
        "severity": severity,
    }
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": _iso(starts),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": _generator_url(expr),
        "fingerprint": fingerprint(labels),
    }


def latency_alert(host: Host, starts: float) -> dict[str, Any]:
    expr = LATENCY_EXPR.format(job=host.job, threshold="1")
    return _alert(
        "HighLatency", host, starts, expr, "critical", f"p99 latency of {host.instance} above 1s"
    )


def error_alert(host: Host, starts: float) -> dict[str, Any]:
    expr = ERROR_EXPR.format(job=host.job)
    return _alert(
        "HighErrorRate", host, starts, expr, "critical", f"5xx ratio of {host.instance} above 5%"
    )


def down_alert(host: Host, starts: float) -> dict[str, Any]:
    return _alert(
        "InstanceDown",
        host,
        starts,
        DOWN_EXPR.format(job=host.job),
        "critical",
        f"{host.instance} is down",
    )


# --- distractions -------------------------------------------------------------------------------


def _unrelated_deploy(w: World, p: Params) -> str:
    """Another job (billing) rolled out a new version hours before: a change, but not here."""
    hosts = [
        w.host(f"billing-{i}", "billing", rps=8, latency=0.05, version="3.1.0") for i in (1, 2)
    ]
    at = p.end - float(w.rng.uniform(2.5, 4.5)) * 3600
    for i, h in enumerate(hosts):
        h.versions.append((at + 120 * i, "3.2.0"))
        h.restarts.append((at + 120 * i, 15.0))
    return "billing deploy 3.2.0 hours before"


def _other_host_cpu(w: World, p: Params, skip: Host) -> str:
    """A brief CPU bump on a different host around the cause's onset."""
    other = next(h for h in w.hosts if h is not skip and h.job == skip.job)
    begin = p.cause - float(w.rng.uniform(5, 20)) * 60
    other.cpu["user"] = other.cpu["user"] + 0.3 * w.window(begin, begin + 300)
    return f"cpu bump on {other.node}"


def _early_blip(w: World, p: Params, host: Host) -> str:
    """The alerting instance's queue depth jumped for a few minutes an hour earlier."""
    begin = p.cause - float(w.rng.uniform(60, 120)) * 60
    w.add(
        "gauge",
        "app_batch_size",
        {"instance": host.instance, "job": host.job},
        np.round(50 + w.noise(4, 0.9) + 400 * w.window(begin, begin + 240)),
    )
    return f"app_batch_size jump on {host.instance} well before"


def _daily_backup(w: World, p: Params, host: Host, lead_minutes: float) -> str:
    """A nightly job at the same clock time every day, starting just before today's cause."""
    begin = p.cause - lead_minutes * 60
    on = w.daily_window(begin, float(w.rng.uniform(25, 40)))
    labels = {"instance": "backup-1:9102", "job": "backup"}
    w.add("gauge", "backup_running", labels, on)
    w.add(
        "counter",
        "backup_bytes_written_total",
        labels,
        w.counter(on * 8e7 + 1e3, offset=1e11),
    )
    host.disk_write = host.disk_write + on * 6e7
    host.cpu["system"] = host.cpu["system"] + on * 0.08
    return "backup_running"


# --- the stories -------------------------------------------------------------------------------


@dataclass
class Params:
    end: float
    cause: float  # onset of the cause
    rng: np.random.Generator


@dataclass
class Outcome:
    kind: str
    alerts: list[dict[str, Any]]
    cause: CauseRef
    equivalents: tuple[CauseRef, ...] = ()
    distractions: list[str] = field(default_factory=list)
    recurring: str | None = None


Builder = Callable[[World, Params], Outcome]


def _app(w: World, job: str, n: int, rps: float = 60, latency: float = 0.08) -> list[Host]:
    return [
        w.host(f"{job}-{i}", job, rps=rps * float(w.rng.uniform(0.9, 1.1)), latency=latency)
        for i in range(1, n + 1)
    ]


def _pick(w: World, hosts: list[Host]) -> Host:
    return hosts[int(w.rng.integers(0, len(hosts)))]


def _slower(w: World, h: Host, start: float, factor: float, ramp: float = 180) -> None:
    h.lat = h.lat * (1 + (factor - 1) * w.ramp(start, start + ramp))


def _cpu_cause(h: Host, mode: str) -> tuple[CauseRef, tuple[CauseRef, ...]]:
    cause = CauseRef("node_cpu_seconds_total", {"instance": h.node, "mode": mode})
    return cause, (CauseRef("node_cpu_seconds_total", {"instance": h.node, "mode": "idle"}),)


def memory_leak(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    h = _pick(w, hosts)
    restart = p.end - float(w.rng.uniform(8, 16)) * 60
    limit = 1.0 * GIB
    growth = w.ramp(p.cause, restart)
    h.rss = h.rss + (limit - float(np.median(h.rss))) * growth
    h.heap = h.heap + 0.6 * (limit - float(np.median(h.rss))) * growth
    after = w.step(restart)
    h.rss = h.rss - (h.rss - float(np.median(h.rss[: len(h.rss) // 2]))) * after
    h.heap = h.heap - (h.heap - float(np.median(h.heap[: len(h.heap) // 2]))) * after
    h.restarts.append((restart, 120.0))
    _slower(w, h, restart - 600, 2.0, 400)
    h.lat = h.lat - (h.lat - float(np.median(h.lat))) * after
    distractions = [_unrelated_deploy(w, p)]
    return Outcome(
        "leak",
        [down_alert(h, restart + 60)],
        CauseRef("process_resident_memory_bytes", {"instance": h.instance}),
        (
            CauseRef("node_memory_MemAvailable_bytes", {"instance": h.node}),
            CauseRef("go_memstats_heap_inuse_bytes", {"instance": h.instance}),
        ),
        distractions,
    )


def disk_filling(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    h = _pick(w, hosts)
    full = p.end - float(w.rng.uniform(10, 20)) * 60
    level = float(np.median(h.fs_app))
    h.fs_app = h.fs_app - (level - 0.05 * GIB) * w.ramp(p.cause, full) - w.step(full) * 0.05 * GIB
    h.err = h.err + w.ramp(full, full + 60) * float(w.rng.uniform(0.15, 0.4))
    recurring = _daily_backup(w, p, h, float(w.rng.uniform(3, 10)))
    return Outcome(
        "disk",
        [error_alert(h, full + 180)],
        CauseRef("node_filesystem_avail_bytes", {"instance": h.node, "mountpoint": "/var/lib/app"}),
        distractions=["nightly backup (daily)"],
        recurring=recurring,
    )


def cpu_batch(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 4)
    h = _pick(w, hosts)
    h.cpu["user"] = h.cpu["user"] + float(w.rng.uniform(0.55, 0.7)) * w.ramp(p.cause, p.cause + 60)
    lag = float(w.rng.uniform(4, 10)) * 60
    _slower(w, h, p.cause + lag, float(w.rng.uniform(8, 12)))
    cause, eq = _cpu_cause(h, "user")
    return Outcome(
        "cpu",
        [latency_alert(h, p.cause + lag + 240)],
        cause,
        eq,
        [_other_host_cpu(w, p, h), _early_blip(w, p, h)],
    )


def noisy_neighbour(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    h = _pick(w, hosts)
    h.cpu["steal"] = h.cpu["steal"] + float(w.rng.uniform(0.3, 0.5)) * w.ramp(
        p.cause, p.cause + 120
    )
    lag = float(w.rng.uniform(3, 8)) * 60
    _slower(w, h, p.cause + lag, float(w.rng.uniform(8, 12)))
    cause, eq = _cpu_cause(h, "steal")
    return Outcome(
        "steal", [latency_alert(h, p.cause + lag + 240)], cause, eq, [_unrelated_deploy(w, p)]
    )


def slow_upstream(w: World, p: Params) -> Outcome:
    callers = _app(w, "checkout", 3)
    callees = _app(w, "payments", 2, rps=40, latency=0.04)
    factor = float(w.rng.uniform(15, 30))
    for c in callees:
        _slower(w, c, p.cause, factor, 120)
    lag = float(w.rng.uniform(3, 6)) * 60
    alerts = []
    for h in callers:
        base = np.asarray(0.04 * (1 + w.noise(0.05)))
        h.client_lat["payments"] = base * (
            1 + (factor - 1) * w.ramp(p.cause + lag, p.cause + lag + 120)
        )
        h.client_lat["inventory"] = np.asarray(0.02 * (1 + w.noise(0.05)))
        _slower(w, h, p.cause + lag, factor * 0.6)
        alerts.append(latency_alert(h, p.cause + lag + float(w.rng.uniform(200, 300))))
    return Outcome(
        "dependency",
        alerts,
        CauseRef("http_request_duration_seconds", {"job": "payments"}),
        distractions=[_early_blip(w, p, callers[0])],
    )


def upstream_deploy(w: World, p: Params) -> Outcome:
    callers = _app(w, "frontend", 3)
    callees = _app(w, "catalog", 2, rps=50, latency=0.03)
    for i, c in enumerate(callees):
        at = p.cause + 90 * i
        c.versions.append((at, "2.8.0"))
        c.restarts.append((at, 15.0))
        c.err = c.err + float(w.rng.uniform(0.2, 0.4)) * w.step(at + 30)
    lag = float(w.rng.uniform(2, 4)) * 60
    alerts = []
    for h in callers:
        h.client_lat["catalog"] = np.asarray(0.03 * (1 + w.noise(0.05)))
        h.err = h.err + float(w.rng.uniform(0.1, 0.25)) * w.step(p.cause + lag)
        alerts.append(error_alert(h, p.cause + lag + float(w.rng.uniform(150, 240))))
    return Outcome(
        "dependency-deploy",
        alerts,
        CauseRef("catalog_build_info", {"job": "catalog"}),
        distractions=[_unrelated_deploy(w, p)],
    )


def traffic_surge(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    factor = float(w.rng.uniform(2.5, 3.5))
    alerts = []
    lag = float(w.rng.uniform(4, 8)) * 60
    for h in hosts:
        h.rate = h.rate * (1 + (factor - 1) * w.ramp(p.cause, p.cause + 300))
        h.cpu["user"] = h.cpu["user"] * (1 + (factor - 1) * 0.5 * w.ramp(p.cause, p.cause + 300))
        _slower(w, h, p.cause + lag, float(w.rng.uniform(8, 12)))
        alerts.append(latency_alert(h, p.cause + lag + float(w.rng.uniform(200, 300))))
    return Outcome(
        "surge",
        alerts,
        CauseRef("http_requests_total", {"job": "api"}),
        distractions=[_unrelated_deploy(w, p)],
    )


def lb_imbalance(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 4)
    h = _pick(w, hosts)
    factor = float(w.rng.uniform(2.5, 3.5))
    h.rate = h.rate * (1 + (factor - 1) * w.ramp(p.cause, p.cause + 60))
    h.cpu["user"] = h.cpu["user"] * (1 + (factor - 1) * 0.6 * w.ramp(p.cause, p.cause + 60))
    for other in hosts:
        if other is not h:
            other.rate = other.rate * (1 - 0.3 * w.ramp(p.cause, p.cause + 60))
    lag = float(w.rng.uniform(4, 8)) * 60
    _slower(w, h, p.cause + lag, float(w.rng.uniform(8, 12)))
    return Outcome(
        "imbalance",
        [latency_alert(h, p.cause + lag + 240)],
        CauseRef("http_requests_total", {"instance": h.instance}),
        distractions=[_other_host_cpu(w, p, h)],
    )


def rolling_deploy(w: World, p: Params) -> Outcome:
    hosts = _app(w, "orders", 4)
    gap = float(w.rng.uniform(2, 4)) * 60
    alerts = []
    for i, h in enumerate(hosts):
        at = p.cause + gap * i
        h.versions.append((at, "1.5.0"))
        h.restarts.append((at, 20.0))
        h.err = h.err + float(w.rng.uniform(0.1, 0.3)) * w.step(at + 60)
        alerts.append(error_alert(h, at + 60 + float(w.rng.uniform(150, 240))))
    return Outcome(
        "deploy",
        alerts,
        CauseRef("orders_build_info", {"job": "orders"}),
        distractions=[_early_blip(w, p, hosts[0])],
    )


def canary_deploy(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 4)
    h = _pick(w, hosts)
    h.versions.append((p.cause, "1.5.0-rc1"))
    h.restarts.append((p.cause, 20.0))
    lag = float(w.rng.uniform(1, 3)) * 60
    h.err = h.err + float(w.rng.uniform(0.1, 0.3)) * w.step(p.cause + lag)
    return Outcome(
        "canary",
        [error_alert(h, p.cause + lag + 200)],
        CauseRef("api_build_info", {"instance": h.instance}),
        distractions=[_unrelated_deploy(w, p), _other_host_cpu(w, p, h)],
    )


def db_pool(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    h = _pick(w, hosts)
    full = p.cause + float(w.rng.uniform(20, 40)) * 60
    h.pool = np.minimum(h.pool + (h.pool_max) * w.ramp(p.cause, full), h.pool_max)
    _slower(w, h, full, float(w.rng.uniform(10, 20)), 120)
    recurring = _daily_backup(w, p, h, float(w.rng.uniform(3, 8)))
    return Outcome(
        "saturation",
        [latency_alert(h, full + 240)],
        CauseRef("db_pool_connections", {"instance": h.instance, "state": "in_use"}),
        distractions=["nightly backup (daily)"],
        recurring=recurring,
    )


def iowait(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    h = _pick(w, hosts)
    h.cpu["iowait"] = h.cpu["iowait"] + float(w.rng.uniform(0.25, 0.45)) * w.ramp(
        p.cause, p.cause + 120
    )
    lag = float(w.rng.uniform(3, 8)) * 60
    _slower(w, h, p.cause + lag, float(w.rng.uniform(8, 12)))
    cause, eq = _cpu_cause(h, "iowait")
    return Outcome(
        "iowait", [latency_alert(h, p.cause + lag + 240)], cause, eq, [_early_blip(w, p, h)]
    )


def gc_pressure(w: World, p: Params) -> Outcome:
    hosts = _app(w, "search", 3)
    h = _pick(w, hosts)
    grow = w.ramp(p.cause, p.cause + float(w.rng.uniform(15, 25)) * 60)
    h.heap = h.heap * (1 + float(w.rng.uniform(4, 6)) * grow)
    gc_on = p.cause + float(w.rng.uniform(10, 15)) * 60
    h.gc = h.gc * (1 + 20 * w.ramp(gc_on, gc_on + 300))
    _slower(w, h, gc_on + 120, float(w.rng.uniform(8, 12)))
    recurring = _daily_cache_refresh(w, p, h)
    return Outcome(
        "gc",
        [latency_alert(h, gc_on + 120 + 240)],
        CauseRef("go_memstats_heap_inuse_bytes", {"instance": h.instance}),
        distractions=["daily cache refresh"],
        recurring=recurring,
    )


def _daily_cache_refresh(w: World, p: Params, host: Host) -> str:
    """Every day at this clock time a cron job reloads the product cache on every host."""
    begin = p.cause - float(w.rng.uniform(3, 10)) * 60
    on = w.daily_window(begin, 20)
    for h in w.hosts:
        w.add(
            "gauge",
            "app_cache_refresh_running",
            {"instance": h.instance, "job": h.job},
            on,
        )
        h.cpu["user"] = h.cpu["user"] + 0.15 * on
    del host
    return "app_cache_refresh_running"


def nightly_not_guilty(w: World, p: Params) -> Outcome:
    hosts = _app(w, "api", 3)
    h = _pick(w, hosts)
    limit = 1024.0
    exhausted = p.cause + float(w.rng.uniform(25, 40)) * 60
    h.fds = np.minimum(
        h.fds + (limit - float(np.median(h.fds))) * w.ramp(p.cause, exhausted), limit
    )
    h.err = h.err + float(w.rng.uniform(0.2, 0.4)) * w.ramp(exhausted - 60, exhausted)
    recurring = _daily_backup(w, p, h, float(w.rng.uniform(5, 12)))
    return Outcome(
        "nightly",
        [error_alert(h, exhausted + 180)],
        CauseRef("process_open_fds", {"instance": h.instance}),
        distractions=["nightly backup (daily), starts first"],
        recurring=recurring,
    )


def config_reload(w: World, p: Params) -> Outcome:
    """One gateway reloads a bad config; its errors follow. Another reloaded long before."""
    hosts = _app(w, "gateway", 3)
    h = _pick(w, hosts)
    other = next(o for o in hosts if o is not h)
    earlier = p.cause - float(w.rng.uniform(70, 100)) * 60
    for g in hosts:
        last = np.full(len(w.t), g.started + float(w.rng.uniform(0.2, 2.0)) * 86400)
        at = p.cause if g is h else earlier if g is other else None
        if at is not None:
            last = np.where(w.t >= at, at, last)
        labels = {"instance": g.instance, "job": g.job}
        w.add("gauge", "gateway_config_last_reload_success_timestamp_seconds", labels, last)
        w.add("gauge", "gateway_config_last_reload_successful", labels, 1.0)
    lag = float(w.rng.uniform(1, 3)) * 60
    h.err = h.err + float(w.rng.uniform(0.15, 0.3)) * w.step(p.cause + lag)
    return Outcome(
        "config",
        [error_alert(h, p.cause + lag + float(w.rng.uniform(150, 240)))],
        CauseRef("gateway_config_last_reload_success_timestamp_seconds", {"instance": h.instance}),
        distractions=[f"config reload on {other.instance} an hour earlier", _early_blip(w, p, h)],
    )


def queue_backlog(w: World, p: Params) -> Outcome:
    """One ingester's queue fills up to its capacity; once full, requests are rejected."""
    hosts = _app(w, "ingest", 3, rps=80)
    h = _pick(w, hosts)
    capacity = float(w.rng.choice([5_000.0, 10_000.0, 20_000.0]))
    full = p.cause + float(w.rng.uniform(15, 25)) * 60
    for g in hosts:
        depth = np.clip(capacity * 0.03 * (1 + w.noise(0.3, 0.9)), 0, None)
        if g is h:
            depth = np.minimum(depth + capacity * w.ramp(p.cause, full) ** 1.5, capacity)
        labels = {"instance": g.instance, "job": g.job, "queue": "events"}
        w.add("gauge", "ingest_queue_depth", labels, np.round(depth))
        w.add("gauge", "ingest_queue_capacity", labels, capacity)
    h.err = h.err + float(w.rng.uniform(0.2, 0.4)) * w.ramp(full - 60, full)
    return Outcome(
        "backlog",
        [error_alert(h, full + 180)],
        CauseRef("ingest_queue_depth", {"instance": h.instance}),
        distractions=[_other_host_cpu(w, p, h)],
    )


def peer_timeout(w: World, p: Params) -> Outcome:
    """Lock waits pile up in the ledger service; every edge instance's calls to its `peer`
    time out, and the edge tier's errors follow."""
    callers = _app(w, "edge", 3)
    callees = _app(w, "ledger", 2, rps=30, latency=0.02)
    for c in callees:
        waiting = np.clip(np.round(2 + w.noise(1.0, 0.8)), 0, None)
        waiting = waiting + float(w.rng.uniform(40, 80)) * w.ramp(p.cause, p.cause + 180)
        w.add("gauge", "ledger_db_locks_waiting", {"instance": c.instance, "job": c.job}, waiting)
        _slower(w, c, p.cause + float(w.rng.uniform(2, 4)) * 60, float(w.rng.uniform(5, 10)))
    lag = float(w.rng.uniform(3, 5)) * 60
    alerts = []
    for h in callers:
        labels = {"instance": h.instance, "job": h.job, "peer": "ledger"}
        calls = h.rate * 0.5
        timeouts = calls * (0.001 + float(w.rng.uniform(0.1, 0.3)) * w.step(p.cause + lag))
        w.add("counter", "edge_peer_requests_total", labels, w.counter(calls))
        w.add("counter", "edge_peer_timeouts_total", labels, w.counter(timeouts))
        h.err = h.err + float(w.rng.uniform(0.1, 0.25)) * w.step(p.cause + lag + 30)
        alerts.append(error_alert(h, p.cause + lag + float(w.rng.uniform(150, 240))))
    return Outcome(
        "dependency-saturation",
        alerts,
        CauseRef("ledger_db_locks_waiting", {"job": "ledger"}),
        distractions=[_unrelated_deploy(w, p)],
    )


# (builder, minutes of the cause before "now" (low, high), whether it needs earlier days)
STORIES: dict[str, tuple[Builder, tuple[float, float], bool]] = {
    "memory_leak": (memory_leak, (80, 110), False),
    "disk_filling": (disk_filling, (60, 90), True),
    "cpu_batch": (cpu_batch, (25, 40), False),
    "noisy_neighbour": (noisy_neighbour, (25, 40), False),
    "slow_upstream": (slow_upstream, (20, 35), False),
    "upstream_deploy": (upstream_deploy, (20, 35), False),
    "traffic_surge": (traffic_surge, (25, 40), False),
    "lb_imbalance": (lb_imbalance, (25, 40), False),
    "rolling_deploy": (rolling_deploy, (30, 40), False),
    "canary_deploy": (canary_deploy, (20, 35), False),
    "db_pool": (db_pool, (60, 80), True),
    "iowait": (iowait, (25, 40), False),
    "gc_pressure": (gc_pressure, (35, 50), True),
    "nightly_not_guilty": (nightly_not_guilty, (60, 80), True),
    "config_reload": (config_reload, (25, 40), False),
    "queue_backlog": (queue_backlog, (40, 60), False),
    "peer_timeout": (peer_timeout, (20, 35), False),
}


def timeline(end: int, days: int) -> npt.NDArray[np.int64]:
    """The last 6 h at 15 s, preceded by `days` days at a 2 min step."""
    fine = np.arange(end - WINDOW + STEP, end + 1, STEP, dtype=np.int64)
    if not days:
        return fine
    first = int(fine[0]) - days * 86400
    coarse = np.arange(first - first % HISTORY_STEP, int(fine[0]), HISTORY_STEP, dtype=np.int64)
    return np.concatenate([coarse, fine])


def build(name: str, seed: int = 1, now: float | None = None) -> Story:
    """Generate story `name` for `seed`, its data ending a minute before `now`."""
    import time

    builder, (low, high), needs_days = STORIES[name]
    index = list(STORIES).index(name)
    rng = np.random.default_rng([seed, index])
    current = time.time() if now is None else now
    end = int(current - 60) // STEP * STEP
    times = timeline(end, HISTORY_DAYS if needs_days else 0)
    world = World(rng, times)
    cause = end - float(rng.uniform(low, high)) * 60
    outcome = builder(world, Params(end=float(end), cause=cause, rng=rng))
    return Story(
        name=name,
        kind=outcome.kind,
        seed=seed,
        times=times,
        families=world.families(),
        alerts=outcome.alerts,
        cause=outcome.cause,
        equivalents=outcome.equivalents,
        cause_onset=cause,
        distractions=outcome.distractions,
        recurring=outcome.recurring,
    )


def build_all(seed: int = 1, now: float | None = None) -> list[Story]:
    return [build(name, seed, now) for name in STORIES]


# --- a real Prometheus holding a story ----------------------------------------------------------


def backfill(story: Story, workdir: Path) -> Path:
    """Write the story as OpenMetrics and turn it into TSDB blocks with promtool."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "story.om"
    source.write_text(story.openmetrics())
    tsdb = workdir / "tsdb"
    subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            # one pass over the file per block: few long blocks instead of many 2 h ones
            "--max-block-duration=96h",
            str(source),
            str(tsdb),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    source.unlink()
    return tsdb


@contextlib.contextmanager
def story_prometheus(story: Story, workdir: Path) -> Iterator[Endpoint]:
    """A real `prometheus` serving the story's backfilled blocks (no scraping)."""
    tsdb = backfill(story, workdir)
    with prometheus(workdir, tsdb_path=tsdb) as endpoint:
        yield endpoint


# --- verdict ------------------------------------------------------------------------------------


def _base(metric: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


# The alert's own items (its labels, its expression, its group) restate the symptom; an
# expression such as `rate(http_requests_total{job="api",code=~"5.."}[5m])` would otherwise
# "name" a request-rate cause just by quoting the alert.
SYMPTOM_KINDS = frozenset({"alert", "expression", "group"})


def _names(item: Mapping[str, Any], cause: CauseRef) -> bool:
    if item.get("kind") in SYMPTOM_KINDS:
        return False
    data = item.get("data")
    if isinstance(data, Mapping):
        metric = str(data.get("metric") or "")
        query = str(data.get("query") or "")
        labels = data.get("labels")
        same = bool(metric) and _base(metric) == _base(cause.metric)
        if not same and not (query and cause.metric in query):
            return False
        if isinstance(labels, Mapping):
            return all(str(labels.get(k)) == v for k, v in cause.labels.items())
        # no labels: the label values must at least appear in the query
        return all(v in query for v in cause.labels.values())
    # no structured data (the API served title/text only): the text must name the series
    text = f"{item.get('title') or ''}\n{item.get('text') or ''}"
    return cause.metric in text and all(v in text for v in cause.labels.values())


@dataclass(frozen=True)
class Verdict:
    hit: bool
    cited: list[str]  # titles of the items the top hypothesis cites
    reason: str


def verdict(analysis: Mapping[str, Any], story: Story) -> Verdict:
    """HIT when an evidence item cited by the top hypothesis names the cause (or an equivalent).

    Items of the alert itself (kinds alert, expression, group) never count.

    An item names it when `data.metric` (base name; `_bucket/_sum/_count` stripped) equals the
    cause's metric, or the cause's metric occurs in `data.query`, and the cause's labels are a
    subset of `data.labels`. Without `data`, its title and text must contain the metric and
    every label value.
    """
    hypotheses = analysis.get("hypotheses") or []
    if not hypotheses:
        return Verdict(False, [], "no hypotheses")
    top = hypotheses[0]
    by_id = {str(e.get("id")): e for e in analysis.get("evidence") or [] if isinstance(e, dict)}
    items = [by_id[i] for i in top.get("evidence_ids") or [] if i in by_id]
    cited = [str(i.get("title") or i.get("id")) for i in items]
    for ref in (story.cause, *story.equivalents):
        if any(_names(i, ref) for i in items):
            return Verdict(True, cited, f"top hypothesis cites {ref.metric}")
    return Verdict(False, cited, f"top hypothesis cites none of {story.cause.metric}")


# --- the scripted model -------------------------------------------------------------------------

# Evidence kinds that describe the alert itself; anything else in the prompt is a candidate.
NOT_CANDIDATES = frozenset({"alert", "expression", "group", "detector", "history", "note"})


def first_candidate(prompt: str) -> str | None:
    """The id of the first cause candidate in an analysis prompt's evidence (its rank order)."""
    from receiver.enrich.prompt import BEGIN_MARKER, END_MARKER

    if BEGIN_MARKER not in prompt or END_MARKER not in prompt:
        return None
    body = prompt.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
    try:
        document = json.loads(body)
    except ValueError:
        return None
    for item in document.get("evidence") or []:
        if isinstance(item, dict) and item.get("kind") not in NOT_CANDIDATES:
            return str(item.get("id"))
    return None


def trusting_answer(prompt: str) -> str:
    """A model answer whose top hypothesis cites the prompt's first candidate (else E1)."""
    top = first_candidate(prompt) or "E1"
    return json.dumps(
        {
            "summary": f"The first-ranked candidate {top} explains the alert.",
            "cause": f"The change shown in {top} started before the alert.",
            "fix": ["Check the series in the cited evidence."],
            "simplified": "Something changed shortly before the alert.",
            "confidence": 0.6,
            "hypotheses": [
                {
                    "claim": f"The candidate {top} is the cause.",
                    "evidence_ids": [top],
                    "confidence": 0.6,
                },
            ],
            "unknowns": [],
        }
    )


# --- what the data shows (for the generator's own tests) -----------------------------------------

SMOOTH = 20  # points: 5 min at 15 s, like rate(...[5m])


def _rates(values: FloatArray, times: FloatArray) -> FloatArray:
    """Per-second increase between samples; NaN across gaps and counter resets."""
    rate = np.diff(values, prepend=np.nan) / np.diff(times, prepend=np.nan)
    return np.asarray(np.where(rate < 0, np.nan, rate))


def _smooth(values: FloatArray) -> FloatArray:
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - SMOOTH + 1) : i + 1]
        if np.any(~np.isnan(chunk)):
            out[i] = float(np.nanmean(chunk))
    return out


def observed(story: Story, ref: CauseRef) -> FloatArray:
    """The series `ref` names as an analysis would graph it over the final 6 h: counters as
    5 min rates, histograms as mean latency, gauges as is (summed over matching series)."""
    fine = story.times >= story.end - WINDOW + STEP
    t = story.times[fine].astype(np.float64)
    family = story.families[_family_name(ref.metric)]

    def total(name: str, rate: bool) -> FloatArray:
        rows = [s.values[fine] for s in story.series(name, ref.labels)]
        if rate:
            rows = [_rates(r, t) for r in rows]
        return np.asarray(np.nansum(np.vstack(rows), axis=0)) if rows else np.full(len(t), np.nan)

    if family.type == "histogram":
        base = _base(ref.metric)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(
                _smooth(total(f"{base}_sum", True)) / _smooth(total(f"{base}_count", True))
            )
    if family.type == "counter":
        return _smooth(total(ref.metric, True))
    return total(ref.metric, False)


def departure(story: Story, ref: CauseRef, run: int = 8) -> float | None:
    """When `ref`'s series leaves its normal band for `run` consecutive points, searching from
    10 min before the story's cause onset with a robust band (median, MAD) over the hour before
    that; for a `*_info` series, when a new label set appears in the final 6 h."""
    t = story.times[story.times >= story.end - WINDOW + STEP].astype(np.float64)
    if ref.metric.endswith("_info"):
        firsts = [
            float(story.times[int(np.argmax(~np.isnan(s.values)))])
            for s in story.series(ref.metric, ref.labels)
        ]
        fresh = [f for f in firsts if f > t[0]]
        return min(fresh) if fresh else None
    values = observed(story, ref)
    if ref.metric.endswith("_timestamp_seconds"):
        jumps = np.flatnonzero(np.diff(values) > 0)
        return float(t[jumps[0] + 1]) if jumps.size else None
    search = story.cause_onset - 600
    base = values[(t >= search - 3600) & (t < search)]
    median = float(np.nanmedian(base))
    mad = float(np.nanmedian(np.abs(base - median))) * 1.4826
    scale = max(5 * mad, 0.05 * abs(median), 1e-9)
    out = np.abs(values - median) > scale
    for i in range(int(np.searchsorted(t, search)), len(values) - run):
        if out[i : i + run].all():
            return float(t[i])
    return None
