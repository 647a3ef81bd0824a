"""Normalising captured Alertmanager 0.25 payloads into signals and identities."""

from __future__ import annotations

from datetime import datetime

import pytest

from receiver.domain import Severity, Source, Status
from receiver.ingest.models import WebhookPayload
from receiver.ingest.normalise import (
    delivery_key,
    episode_key,
    fingerprint,
    group_id,
    parse_value,
    to_signals,
)
from tests.support.payloads import CAPTURED, load


@pytest.mark.parametrize("name", CAPTURED)
def test_fingerprint_matches_alertmanager(name: str) -> None:
    """Our FNV-1a fingerprint equals the one Alertmanager put in every captured alert."""
    payload = load(name)
    for alert in payload["alerts"]:
        assert fingerprint(alert["labels"]) == alert["fingerprint"]


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_payloads_validate(name: str) -> None:
    """Every captured payload parses as a version-4 webhook with at least one alert."""
    payload = WebhookPayload.model_validate(load(name))
    assert payload.version == "4"
    assert payload.alerts


def test_firing_alert_has_no_end_and_fields_are_mapped() -> None:
    """Go's zero endsAt becomes None; severity, instance and reason come from labels/annotations."""
    signals = to_signals(WebhookPayload.model_validate(load("am_payload_firing.json")))
    first = signals[0]
    assert first.source is Source.ALERTMANAGER
    assert first.status is Status.FIRING
    assert first.ends_at is None
    assert first.severity is Severity.CRITICAL
    assert first.instance == "checkout-1:8080"
    assert first.reason == "p99 latency above 2s"
    assert first.alertname == "HighLatency"


def test_resolved_alert_keeps_its_end() -> None:
    """A resolved alert carries the real endsAt."""
    signals = to_signals(WebhookPayload.model_validate(load("am_payload_resolved.json")))
    assert all(s.status is Status.RESOLVED and s.ends_at is not None for s in signals)


def test_delivery_key_ignores_external_url_and_alert_order() -> None:
    """An HA twin (other externalURL, alerts reordered) has the same delivery key."""
    raw = load("am_payload_partially_resolved.json")
    twin = load("am_payload_partially_resolved.json")
    twin["externalURL"] = "http://other-am:9093"
    twin["alerts"].reverse()
    a = delivery_key(WebhookPayload.model_validate(raw))
    b = delivery_key(WebhookPayload.model_validate(twin))
    assert a == b


def test_delivery_key_changes_with_status() -> None:
    """Firing and partially-resolved notifications of one group are different deliveries."""
    a = delivery_key(WebhookPayload.model_validate(load("am_payload_firing.json")))
    b = delivery_key(WebhookPayload.model_validate(load("am_payload_partially_resolved.json")))
    assert a != b


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("critical", Severity.CRITICAL),
        ("warning", Severity.MEDIUM),
        ("HIGH", Severity.HIGH),
        ("info", Severity.LOW),
        (None, Severity.MEDIUM),
        ("bogus", Severity.MEDIUM),
    ],
)
def test_severity_aliases(raw: str | None, level: Severity) -> None:
    """Alertmanager-style severity labels map onto the seed's levels."""
    assert Severity.parse(raw) is level


def test_episode_key_is_millisecond_precise() -> None:
    """Nanosecond and millisecond renderings of one startsAt name the same episode."""
    ns = datetime.fromisoformat("2026-11-28T20:57:21.636123+00:00")
    ms = datetime.fromisoformat("2026-11-28T20:57:21.636+00:00")
    other = datetime.fromisoformat("2026-11-28T20:57:21.637+00:00")
    am = Source.ALERTMANAGER
    assert episode_key(am, "ab", ns, "g") == episode_key(am, "ab", ms, "g")
    assert episode_key(am, "ab", ns, "g") != episode_key(am, "ab", other, "g")


def test_group_identity_is_receiver_and_group_key() -> None:
    """Alertmanager groups differ by receiver or groupKey, and never equal a synthetic key."""
    am = Source.ALERTMANAGER
    one = group_id(am, "monitor", '{}:{alertname="A"}')
    assert one == group_id(am, "monitor", '{}:{alertname="A"}')
    assert one != group_id(am, "pager", '{}:{alertname="A"}')
    assert one != group_id(am, "monitor", '{}:{instance="h1"}')
    # the two fields are not simply joined: moving text between them is another group
    assert group_id(am, "a:b", "c") != group_id(am, "a", "b:c")
    assert group_id(am, "detector", "detector:t:m:i") != "detector:t:m:i"
    assert group_id(Source.DETECTOR, "detector", "detector:t:m:i") == "detector:t:m:i"
    at = datetime.fromisoformat("2026-11-28T20:57:21.636+00:00")
    assert episode_key(am, "ab", at, one) != episode_key(
        am, "ab", at, group_id(am, "pager", '{}:{alertname="A"}')
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("97.2", 97.2),
        (" 97.2 ", 97.2),
        ("1.1k", 1100.0),
        ("2.5M", 2.5e6),
        ("12.3m", 0.0123),
        ("250u", 0.00025),
        ("0", 0.0),
        ("-3", -3.0),
        ("1e3", 1000.0),
        ("n/a", None),
        ("k", None),
        ("", None),
        ("NaN", None),
        ("inf", None),
    ],
)
def test_value_annotation_reads_humanized_numbers(raw: str, expected: float | None) -> None:
    """A `value` annotation written by Prometheus' `humanize` becomes the episode's number."""
    got = parse_value(raw)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)
