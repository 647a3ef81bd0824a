"""Pair and group rules on timed candidates: a gauge at its limit, one instance's load share,
a surge, a rollout, event timestamps, and a dependency's chain across hosts."""

from __future__ import annotations

import numpy as np

from receiver.enrich.candidates import effect
from receiver.enrich.relations import limit_pairs, load, relate
from receiver.enrich.timeline import Candidate, Scope, departure, event_departure, host_of, rank

STEP = 30.0
TS = np.arange(0.0, 3 * 3600 + STEP, STEP)
ALERT = 2.5 * 3600
BASE_END = 3600.0


def _noisy(level: float, seed: int, rel: float = 0.02) -> np.ndarray:
    return level * (1 + rel * np.random.default_rng(seed).standard_normal(TS.size))


def _gauge(
    metric: str, labels: dict[str, str], values: np.ndarray, kind: str = "gauge", role: str = ""
) -> Candidate:
    c = Candidate(
        metric=metric,
        labels=labels,
        query=metric,
        role=role or "other",
        timestamps=TS,
        values=values,
        kind=kind,
        host=host_of(labels.get("instance", "")),
    )
    c.departure = departure(TS, values, BASE_END, ALERT)
    return c


def _ramp(start: float, end: float) -> np.ndarray:
    return np.clip((TS - start) / (end - start), 0.0, 1.0)


def test_gauges_pair_with_their_limits_by_name_and_by_state_label() -> None:
    """`x` ↔ `x_max`-style names with the same other words, and state="in_use" ↔ state="max";
    a gauge with no limit word in common, or on another instance, is no pair."""
    a = {"instance": "db-1:9187", "job": "pg"}
    used = _gauge("pool_connections", {**a, "state": "in_use"}, _noisy(5, 1))
    limit = _gauge("pool_max_connections", a, np.full(TS.size, 20.0))
    other_host = _gauge("pool_max_connections", {**a, "instance": "db-2:9187"}, _noisy(20, 2))
    fds = _gauge("process_open_fds", a, _noisy(40, 3))
    fds_max = _gauge("process_max_fds", a, np.full(TS.size, 1024.0))
    unrelated = _gauge("app_batch_size", a, _noisy(50, 4))
    state_used = _gauge("threads", {**a, "state": "busy"}, _noisy(5, 5))
    state_max = _gauge("threads", {**a, "state": "max"}, np.full(TS.size, 64.0))
    pairs = limit_pairs([used, limit, other_host, fds, fds_max, unrelated, state_used, state_max])
    named = {
        (u.metric, u.labels.get("state"), lim.metric, lim.labels["instance"]) for u, lim in pairs
    }
    assert named == {
        ("pool_connections", "in_use", "pool_max_connections", "db-1:9187"),
        ("process_open_fds", None, "process_max_fds", "db-1:9187"),
        ("threads", "busy", "threads", "db-1:9187"),
    }


def test_a_gauge_reaching_its_limit_becomes_a_strong_saturation_candidate() -> None:
    """A queue rising from 3 % to 100 % of its capacity is raised and says so; the same rise
    far below its limit (30 %) is not."""
    a = {"instance": "in-1:8080", "job": "ingest"}
    rise = 300 + 9700 * _ramp(ALERT - 1500, ALERT - 300)
    full = _gauge("ingest_queue_depth", a, np.minimum(_noisy(300, 6) + rise, 10_000))
    cap = _gauge("ingest_queue_capacity", a, np.full(TS.size, 10_000.0))
    low = _gauge("ingest_queue_depth", {**a, "instance": "in-2:8080"}, _noisy(30, 7) + rise / 10)
    low_cap = _gauge("ingest_queue_capacity", {**a, "instance": "in-2:8080"}, cap.values.copy())
    relate([full, cap, low, low_cap], BASE_END, ALERT)
    assert full.role == "saturation"
    assert full.boost >= 1.9
    assert "100% of its limit ingest_queue_capacity" in full.notes[0]
    assert low.boost == 1.0
    assert not low.notes


def _requests(instance: str, values: np.ndarray) -> Candidate:
    labels = {"instance": instance, "job": "api", "code": "200"}
    return _gauge("http_requests_total", labels, values, kind="counter", role="load")


def test_one_instance_taking_more_than_its_share_is_an_imbalance() -> None:
    """api-2's share of the job's requests going from 1/3 to 3/5 is a derived candidate that
    outranks the same instance's raw rate; the others' falling shares are not candidates."""
    shift = _ramp(ALERT - 900, ALERT - 840)
    rates = {
        "api-1:8080": _noisy(50, 8) * (1 - 0.3 * shift),
        "api-2:8080": _noisy(50, 9) * (1 + 2 * shift),
        "api-3:8080": _noisy(50, 10) * (1 - 0.3 * shift),
    }
    raw = [_requests(i, v) for i, v in rates.items()]
    derived = load(raw, BASE_END, ALERT)
    [share] = [c for c in derived if c.kind == "share"]
    assert share.labels == {"instance": "api-2:8080", "job": "api"}
    assert share.role == "imbalance"
    assert share.departure is not None
    assert share.departure.direction == "up"
    scope = Scope(ALERT, STEP, frozenset({"api-2"}), frozenset({"api"}), False, frozenset())
    ranked = rank([*raw, *derived], scope, {"api-1", "api-2", "api-3"})
    assert ranked[0] is share


def test_every_instance_rising_together_is_a_surge_not_an_imbalance() -> None:
    """All three rates tripling: the job total is a candidate, no instance's share is."""
    surge = 1 + 2 * _ramp(ALERT - 900, ALERT - 600)
    raw = [_requests(f"api-{i}:8080", _noisy(50, 20 + i) * surge) for i in (1, 2, 3)]
    derived = load(raw, BASE_END, ALERT)
    assert [(c.kind, c.labels) for c in derived] == [("total", {"job": "api"})]
    assert "rose together" in derived[0].notes[0]


def test_the_same_new_version_on_several_instances_is_one_rollout() -> None:
    """Two instances changing to 2.0 are a rollout (both raised, the note names the span);
    a change on one instance alone is not."""
    changes = []
    for i, at in ((1, ALERT - 600), (2, ALERT - 420), (3, ALERT - 300)):
        version = "2.0" if i < 3 else "9.9"
        labels = {"instance": f"api-{i}:8080", "job": "api", "version": version}
        c = _gauge("api_build_info", labels, np.where(at <= TS, 1.0, np.nan), kind="info")
        c.change = {"version": f"1.0 → {version}"}
        c.departure = departure(TS, np.zeros(TS.size), BASE_END, ALERT)
        c.departure.onset, c.departure.direction = at, "changed"
        changes.append(c)
    relate(changes, BASE_END, ALERT)
    assert [c.boost > 1 for c in changes] == [True, True, False]
    assert "rolled out to 2 instances of api" in changes[0].notes[0]


def test_a_reload_timestamp_is_an_event_but_a_heartbeat_is_not() -> None:
    """A "last reload" time that stood still and jumped once is an event at the jump; one
    that ticks every minute, or already jumped in the baseline, is none."""
    reload = np.where(ALERT - 600 <= TS, ALERT - 600, 1_000.0)
    found = event_departure(TS, reload, BASE_END, ALERT)
    assert found is not None
    assert found.onset == ALERT - 600
    assert found.direction == "step"
    heartbeat = np.floor(TS / 60) * 60
    assert event_departure(TS, heartbeat, BASE_END, ALERT) is None
    early = np.where(BASE_END - 900 <= TS, BASE_END - 900, 1_000.0)
    assert event_departure(TS, early, BASE_END, ALERT) is None


def test_errors_and_request_latency_are_effects_gc_time_is_not() -> None:
    """Names and labels that say "error" or request latency are the alert's kind of trouble."""
    assert effect("app_log_messages_total", {"level": "error"})
    assert effect("http_requests_total", {"code": "503"})
    assert effect("grpc_server_handling_duration_seconds", {})
    assert effect("payment_failures_total", {})
    assert not effect("go_gc_duration_seconds", {"quantile": "0.5"})
    assert not effect("http_requests_total", {"code": "200"})
    assert not effect("app_log_messages_total", {"level": "info"})


def test_a_dependency_chain_names_its_earliest_element_across_hosts() -> None:
    """Lock waits in the callee before the callers' timeouts: the callee's series ranks first
    even though the callers' timeouts jumped further from zero."""
    scope = Scope(ALERT, STEP, frozenset({"edge-1"}), frozenset({"edge"}), False, frozenset())
    locks = _gauge(
        "ledger_db_locks_waiting",
        {"instance": "ledger-1:8080", "job": "ledger"},
        _noisy(2, 30, 0.3) + 60 * _ramp(ALERT - 600, ALERT - 420),
        role="dependency",
    )
    timeouts = _gauge(
        "edge_peer_timeouts_total",
        {"instance": "edge-1:8080", "job": "edge", "peer": "ledger"},
        _noisy(0.01, 31) + 5 * _ramp(ALERT - 300, ALERT - 280),
        role="dependency",
    )
    locks.dependency = timeouts.dependency = True
    ranked = rank([timeouts, locks], scope, {"edge-1", "edge-2"})
    assert [c.metric for c in ranked] == ["ledger_db_locks_waiting", "edge_peer_timeouts_total"]
    assert any("follows ledger_db_locks_waiting" in w for w in ranked[1].why)
