"""Property test: no webhook body of the Alertmanager shape can hurt the pipeline.

Hypothesis generates deliveries with extreme and malformed dates, huge and negative numbers,
unicode and control characters, very long labels and duplicate JSON keys. For each one the
answer must be 2xx or 4xx (never 5xx: that would make Alertmanager retry a poison forever), and
a normal alert sent right after must still become an incident; at the end every normal alert
has produced exactly one email. The service is a real `receiver serve` process on the embedded
store with a real SMTP server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, webhook
from tests.support.replica import Replica, receiver, replica_env, smtp_env, wait_until
from tests.support.service import TOKEN
from tests.support.smtp import SmtpServer, email_event, smtp_server

EXAMPLES = 400


@dataclass
class Harness:
    replica: Replica
    smtp: SmtpServer
    client: httpx.Client
    normal_groups: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    examples: int = 0


@pytest.fixture(scope="module")
def harness(
    embedded_store: EmbeddedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("property")
    with smtp_server() as smtp:
        env = replica_env(
            embedded_store.uri,
            f"t_{uuid.uuid4().hex[:12]}",
            tmp,
            **smtp_env(smtp),
            NOTIFY_RCA_WAIT_SECONDS="0",
            NOTIFY_RATE_LIMIT="0",
            NOTIFY_RESOLVED="false",
            RETRY_BASE_SECONDS="0.05",
            RETRY_MAX_SECONDS="0.2",
            RETRY_MAX_ATTEMPTS="2",
        )
        with (
            receiver(env, tmp / "receiver.log") as replica,
            httpx.Client(base_url=replica.url, timeout=30) as client,
        ):
            yield Harness(replica, smtp, client)


# -- strategies ------------------------------------------------------------------------------

_odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
) | st.sampled_from(["", "\x00", "\u202e", "\ufeff", "a\nb", "\U0001f525" * 30, "x" * 20_000])

_dates = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.sampled_from(
            [
                UTC,
                timezone(timedelta(hours=14)),
                timezone(timedelta(hours=-12)),
            ]
        ),
    ).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "1969-12-31T23:59:59Z",
            "2026-02-30T00:00:00Z",
            "2026-11-28T10:00:00.123456789Z",
            "2026-11-28T10:00:00",
            "not a date",
            "",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
)

_numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**63, 2**64, 10**20, 1e308]),
)

_label_names = st.one_of(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True),
    st.sampled_from(["", "0bad", "service.name", "x" * 300, "a b"]),
)
_labels = st.dictionaries(_label_names, _odd_text, max_size=6)


def _mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` 39 times in 40: about half of the deliveries pass validation whole, so the
    odd-but-valid values (unicode, long text, extreme valid dates) reach the pipeline too."""
    return st.integers(0, 39).flatmap(lambda i: odd if i == 0 else valid)


_valid_dates = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.isoformat())
_valid_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=60
) | st.sampled_from(["\u202e", "\ufeff", "a\nb", "\U0001f525" * 30, "<script>", "x" * 16_000])
_valid_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
_valid_labels = st.dictionaries(_valid_names, _valid_text, max_size=6)


@st.composite
def _alerts(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": draw(_mostly(st.sampled_from(["firing", "resolved"]), st.sampled_from(["", 1]))),
        "labels": {
            "alertname": draw(_mostly(_valid_text, _odd_text)),
            **draw(_mostly(_valid_labels, _labels)),
        },
        "annotations": draw(_mostly(_valid_labels, _labels)),
        "startsAt": draw(_mostly(_valid_dates, _dates)),
        "endsAt": draw(_mostly(st.just("0001-01-01T00:00:00Z") | _valid_dates, _dates)),
        "generatorURL": draw(_mostly(_valid_text, _odd_text)),
    }
    if draw(st.booleans()):
        body["fingerprint"] = draw(
            _mostly(st.from_regex(r"[0-9a-f]{16}", fullmatch=True), _odd_text)
        )
    if draw(st.booleans()):
        body["extra"] = draw(_numbers)
    return body


@st.composite
def _deliveries(draw: st.DrawFn) -> bytes:
    payload: dict[str, Any] = {
        "version": draw(_mostly(st.just("4"), st.sampled_from(["1", 4, None]))),
        "groupKey": draw(_mostly(_valid_text, _odd_text)),
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "receiver": draw(_mostly(_valid_names, _odd_text)),
        "alerts": draw(st.lists(_alerts(), min_size=1, max_size=4) | st.just([])),
        "groupLabels": draw(_mostly(_valid_labels, _labels)),
        "commonLabels": draw(_mostly(_valid_labels, _labels)),
        "commonAnnotations": draw(_mostly(_valid_labels, _labels)),
        "externalURL": draw(_mostly(_valid_text, _odd_text)),
        "truncatedAlerts": draw(_mostly(st.integers(0, 1000), _numbers)),
    }
    if draw(st.booleans()):
        payload["extra"] = draw(_numbers)
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:
        # a duplicate key: JSON allows it, the last one wins in Python's parser
        text = text.replace('"status": ', '"status": "firing", "status": ', 1)
    return text.encode()


# -- the property ----------------------------------------------------------------------------


def _normal_alert_still_works(h: Harness) -> None:
    group = f"normal-{len(h.normal_groups)}"
    resp = h.client.post(
        "/api/v1/alerts",
        json=webhook([alert("AfterFuzz", group)], group=group),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 200, resp.text
    h.normal_groups.append(group)

    def opened() -> bool:
        body = h.client.get("/api/v1/incidents", params={"alertname": "AfterFuzz"}).json()
        return bool(body["total"] == len(h.normal_groups))

    wait_until(opened, 20, f"incident for {group}")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(body=_deliveries())
def test_any_webhook_gets_2xx_or_4xx_and_the_pipeline_keeps_going(
    harness: Harness, body: bytes
) -> None:
    """Every generated delivery is answered 2xx/4xx; a normal alert after it is processed."""
    h = harness
    resp = h.client.post(
        "/api/v1/alerts",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    h.examples += 1
    h.statuses[resp.status_code] = h.statuses.get(resp.status_code, 0) + 1
    assert resp.status_code < 500, resp.text[:500]
    if resp.status_code >= 400:
        assert resp.json()["detail"]
    if h.examples % 10 == 0:
        _normal_alert_still_works(h)


def test_every_normal_alert_was_paged_once(harness: Harness) -> None:
    """After the property run: one email per normal alert, no stuck deliveries, no 5xx."""
    h = harness
    assert h.examples >= EXAMPLES
    assert not [s for s in h.statuses if s >= 500]

    def firing_emails() -> list[str]:
        return [
            m.message["Subject"]
            for m in h.smtp.messages
            if email_event(m) == "firing" and "AfterFuzz" in m.message["Subject"]
        ]

    wait_until(lambda: len(firing_emails()) >= len(h.normal_groups), 60, "emails")
    assert len(firing_emails()) == len(h.normal_groups)
    pending = h.client.get("/api/v1/deliveries", params={"status": "pending"}).json()
    retrying = [d for d in pending["deliveries"] if d["attempts"] == 0]
    assert not retrying, retrying[:3]
    print(f"property run: {h.examples} examples, statuses {sorted(h.statuses.items())}")
