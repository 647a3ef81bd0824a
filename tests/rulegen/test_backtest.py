"""`receiver rules backtest` against a real Prometheus holding a known, backfilled week."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.rulegen.backtest import SeriesStats, series_stats
from receiver.rulegen.cli import main
from tests.rulegen.helpers import DATA
from tests.support.procs import free_port
from tests.support.prom import prometheus

T0 = 1_699_920_000  # 2023-11-14T00:00:00Z; one sample per minute from here for 7 days
END = T0 + 7 * 86_400
# Minutes (from T0) during which queue_depth is 5000, per instance; 10 otherwise.
HIGH = {
    "a": [(100, 130), (500, 505), (1000, 1020), (1025, 1045)],
    "b": [(2000, 2015)],
    "c": [],
}
# Instance c sits exactly AT the threshold for a while: `> 1000` must not count it.
AT_THRESHOLD = {"c": [(3000, 3100)]}

# QueueBacklog (queue_depth > 1000 for 10m), from HIGH by hand:
#   a 100-130: 29 min true -> fires, firing 110..129 (20 min)
#   a 500-505: 4 min true  -> pending only
#   a 1000-1020 -> fires (10 min firing); a 1025-1045 -> fires (10 min), 5 min after the
#                  previous resolved at 1020 -> a flap (window 15m)
#   b 2000-2015: 14 min true -> fires, firing 2010..2014 (5 min)
QUEUE_BACKLOG = {
    "alert": "QueueBacklog",
    "severity": "high",
    "expr": "queue_depth > 1000",
    "query": "queue_depth > 1000",
    "fired": 4,
    "flaps": 1,
    "pending_only": 1,
    "series_crossed": 2,
    "series_fired": 2,
    "firing_seconds": 45 * 60.0,
}
# AnyQueueHigh (max without (queue) (queue_depth) > 1000, for 0s): every run fires.
ANY_QUEUE_HIGH = {
    "alert": "AnyQueueHigh",
    "severity": "medium",
    "expr": "instance:queue_depth:max > 1000",
    "query": "(max without (queue) (queue_depth)) > 1000",
    "fired": 5,
    "flaps": 1,
    "pending_only": 0,
    "series_crossed": 2,
    "series_fired": 2,
    "firing_seconds": 90 * 60.0,
}


def _value(instance: str, minute: int) -> int:
    if any(a <= minute < b for a, b in HIGH[instance]):
        return 5000
    if any(a <= minute < b for a, b in AT_THRESHOLD.get(instance, [])):
        return 1000
    return 10


def _openmetrics(path: Path) -> None:
    lines = ["# HELP queue_depth Items waiting.", "# TYPE queue_depth gauge"]
    for instance, queue in (("a", "orders"), ("b", "mail"), ("c", "bulk")):
        labels = f'instance="{instance}",job="app",queue="{queue}"'
        lines += [
            f"queue_depth{{{labels}}} {_value(instance, m)} {T0 + 60 * m}"
            for m in range(7 * 1440 + 1)
        ]
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")


@pytest.fixture(scope="module")
def prom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus serving the backfilled week (no scraping, no rules)."""
    work = tmp_path_factory.mktemp("backtest-prom")
    history = work / "history.om"
    _openmetrics(history)
    tsdb = work / "tsdb"
    subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=192h",  # a few large blocks load faster than 84 small ones
            str(history),
            str(tsdb),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with prometheus(work / "prom", tsdb_path=tsdb) as prom:
        yield prom.url


def _root(tmp_path: Path, spec: str) -> Path:
    (tmp_path / "rules" / "specs").mkdir(parents=True)
    shutil.copy(DATA / "backtest" / spec, tmp_path / "rules" / "specs" / spec)
    return tmp_path


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(list(argv)) == 0, capsys.readouterr().err
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_backtest_reports_exact_episodes(
    prom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over 7d at a 1m step (two query_range windows), the firing, flap, pending and series
    counts equal the ones worked out by hand from the history."""
    root = _root(tmp_path, "queues.yml")
    argv = ["backtest", "--root", str(root), "--prom-url", prom_url, "--range", "7d"]
    doc = _json(capsys, *argv, "--end", str(END), "--json")
    assert doc["rules"] == [QUEUE_BACKLOG, ANY_QUEUE_HIGH]
    assert (doc["start"], doc["end"], doc["step_seconds"]) == (T0, END, 60)


def test_backtest_counts_do_not_depend_on_the_step(
    prom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At a 30s step (three query_range windows) the counts and firing time are the same."""
    root = _root(tmp_path, "queues.yml")
    argv = ["backtest", "--root", str(root), "--prom-url", prom_url, "--step", "30s"]
    doc = _json(capsys, *argv, "--end", str(END), "--json")
    assert doc["rules"] == [QUEUE_BACKLOG, ANY_QUEUE_HIGH]


def test_no_inline_reads_only_recorded_history(
    prom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --no-inline the recorded series is queried as is; it has no history, so nothing."""
    root = _root(tmp_path, "queues.yml")
    argv = ["backtest", "--root", str(root), "--prom-url", prom_url, "--rule", "AnyQueueHigh"]
    doc = _json(capsys, *argv, "--end", str(END), "--no-inline", "--json")
    [report] = doc["rules"]
    assert report["query"] == "instance:queue_depth:max > 1000"
    assert (report["fired"], report["series_crossed"]) == (0, 0)


def test_backtest_prints_a_table(
    prom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the report is a fixed-width table, one line per rule."""
    root = _root(tmp_path, "queues.yml")
    argv = ["backtest", "--root", str(root), "--prom-url", prom_url, "--end", str(END)]
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        f"backtest against {prom_url}: 7d ending 2023-11-21T00:00:00Z, step 1m, flap window 15m\n"
        "alert         severity  fired  flaps  pending-only  series fired/crossed  firing time\n"
        "QueueBacklog  high          4      1             1                   2/2          45m\n"
        "AnyQueueHigh  medium        5      1             0                   2/2        1h30m\n"
    )


def test_unknown_rule_name_is_a_usage_error(
    prom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rule with a name no spec defines fails with the known names listed."""
    root = _root(tmp_path, "queues.yml")
    argv = ["backtest", "--root", str(root), "--prom-url", prom_url, "--rule", "Nope"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "receiver rules backtest: unknown rule(s): Nope (known: AnyQueueHigh, QueueBacklog)\n"
    )


def test_query_rejected_by_prometheus_names_the_rule(
    prom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule whose expression Prometheus rejects fails the backtest with Prometheus' reason."""
    root = _root(tmp_path, "bad_query.yml")
    argv = ["backtest", "--root", str(root), "--prom-url", prom_url, "--end", str(END)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "receiver rules backtest: rule BrokenRate: Prometheus rejected the query "
        "(HTTP 400 bad_data): 1:7: parse error: expected type range vector in call to "
        'function "rate", got instant vector\n'
    )


def test_unreachable_prometheus_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening at --prom-url: exit 2 with a message naming the URL."""
    root = _root(tmp_path, "queues.yml")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["backtest", "--root", str(root), "--prom-url", url, "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"receiver rules backtest: rule QueueBacklog: cannot reach Prometheus at {url}: "
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--range", "7 days", "--range: invalid Prometheus duration '7 days'"),
        ("--step", "0s", "--step: must be greater than zero"),
        ("--end", "yesterday", "--end: expected RFC 3339 or unix seconds, got 'yesterday'"),
    ],
)
def test_bad_backtest_options_are_usage_errors(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unparseable --range/--step/--end fail with exit 2 before any query is sent."""
    root = _root(tmp_path, "queues.yml")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["backtest", "--root", str(root), "--prom-url", url, option, value]) == 2
    assert capsys.readouterr().err.startswith(f"receiver rules backtest: {message}")


@pytest.mark.parametrize(
    ("minutes", "hold", "expected"),
    [
        # one run of 10 steps; `for` 5m: fires at step 5, firing steps 5..9
        (range(10), 300, SeriesStats(activations=1, episodes=1, flaps=0, firing_steps=5)),
        # run shorter than `for`: pending only
        (range(4), 300, SeriesStats(activations=1, episodes=0, flaps=0, firing_steps=0)),
        # `for` 0: a single true step fires once
        ([7], 0, SeriesStats(activations=1, episodes=1, flaps=0, firing_steps=1)),
        # two runs 3 steps apart (re-fire 2 min after resolving): a flap
        ([0, 1, 2, 5, 6], 0, SeriesStats(activations=2, episodes=2, flaps=1, firing_steps=5)),
        # two runs 20 min apart: not a flap
        ([0, 1, 22, 23], 0, SeriesStats(activations=2, episodes=2, flaps=0, firing_steps=4)),
        # a pending-only run between two firing ones does not reset the flap clock
        ([0, 1, 4, 8, 9], 60, SeriesStats(activations=3, episodes=2, flaps=1, firing_steps=2)),
    ],
)
def test_series_stats_follow_prometheus_pending_semantics(
    minutes: list[int] | range, hold: float, expected: SeriesStats
) -> None:
    """Runs of true steps become episodes only once `for` has passed; quick re-fires are flaps."""
    got = series_stats([60.0 * m for m in minutes], step=60, hold=hold, flap_window=15 * 60)
    assert got == expected
