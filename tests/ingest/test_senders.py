"""The sender corpus in tests/data/senders/: what each sender posts is accepted with its source,
or refused with a message naming why, and nothing is stored for a refusal. Also: an Alertmanager
and a Grafana with the same groupKey never share an incident, and OnCall's resolve closes one."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from receiver.domain import Source, Status
from receiver.ingest.normalise import delivery_key, fingerprint, to_signals
from receiver.ingest.senders import Refused, parse_payload
from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import DATA, alert, webhook
from tests.support.service import Running, make_settings, serve

SENDERS = DATA / "senders"
CASES: list[dict[str, Any]] = json.loads((SENDERS / "cases.json").read_text())["cases"]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SENDERS / name).read_text())
    return data


@pytest.fixture(scope="module")
async def senders_service(
    embedded_store: EmbeddedStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    tmp: Path = tmp_path_factory.mktemp("senders")
    async with serve(make_settings(embedded_store.uri, tmp)) as running:
        yield running


async def _deliveries(svc: Running) -> int:
    await svc.settled()
    total: int = (await svc.get("/api/v1/deliveries"))["total"]
    return total


def test_corpus_covers_every_sender() -> None:
    """The corpus holds accepted cases of each source and refusals of each foreign format."""
    sources = {c.get("source") for c in CASES if c["status"] == 200}
    assert sources == {"alertmanager", "grafana", "oncall"}
    assert sum(c["status"] == 422 for c in CASES) >= 7


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case_parses_as_expected(case: dict[str, Any]) -> None:
    """parse_payload gives the case's source and alert count, or refuses naming why."""
    body = _load(case["file"])
    if case["status"] != 200:
        with pytest.raises((Refused, ValidationError)) as caught:
            parse_payload(body)
        assert case["needle"] in str(caught.value)
        return
    payload = parse_payload(body)
    assert payload.source.value == case["source"]
    assert len(payload.alerts) == case["alerts"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_corpus_case_through_the_webhook(
    senders_service: Running, case: dict[str, Any]
) -> None:
    """Each sender's body gets its documented answer; a refusal names why and stores nothing."""
    svc = senders_service
    before = await _deliveries(svc)
    resp = await svc.post_alerts(_load(case["file"]))
    assert resp.status_code == case["status"], resp.text[:500]
    if case["status"] != 200:
        assert case["needle"] in resp.json()["detail"]
        assert await _deliveries(svc) == before
        return
    assert resp.json()["status"] in ("accepted", "duplicate")
    await svc.settled()
    listed = await svc.get("/api/v1/incidents", source=case["source"])
    assert listed["total"] >= 1
    assert {i["source"] for i in listed["incidents"]} == {case["source"]}


def test_grafana_payload_keeps_links_and_values() -> None:
    """Grafana's silence/dashboard/panel links and evaluated values reach the signal."""
    first = to_signals(parse_payload(_load("grafana_11_firing.json")))[0]
    assert first.source is Source.GRAFANA
    assert first.values == {"B": 7.31, "C": 1.0}
    assert first.value == 7.31  # the first query, not the threshold condition C
    assert first.links["dashboard"].startswith("http://127.0.0.1:3000/d/shop-overview")
    assert first.links["silence"].startswith("http://127.0.0.1:3000/alerting/silence/new")
    assert first.labels["service.name"] == "checkout"


def test_grafana_8_value_string_is_parsed() -> None:
    """Grafana 8 sends only valueString; its value becomes the signal's value."""
    signal = to_signals(parse_payload(_load("grafana_8_valuestring.json")))[0]
    assert signal.values == {"node_filesystem_avail_bytes": 93.2}
    assert signal.value == 93.2


def test_empty_fingerprint_is_absent() -> None:
    """`"fingerprint": ""` is computed from the labels, as if it were missing."""
    body = _load("alertmanager_0.25_empty_fingerprint.json")
    signal = to_signals(parse_payload(body))[0]
    assert signal.fingerprint == fingerprint(body["alerts"][0]["labels"])


def test_utf8_names_are_kept() -> None:
    """Dotted and non-Latin label/annotation names are kept as sent."""
    signal = to_signals(parse_payload(_load("alertmanager_0.27_utf8_names.json")))[0]
    assert signal.labels["k8s.pod.name"] == "payments-7d9f-x2"
    assert signal.annotations["значение"] == "0.12"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "at least 1 character"),
        ("a\x00b", "U+0000"),
        ("tab\there", "U+0009"),
        ("\ud800", "valid string"),  # a lone surrogate is not UTF-8
        ("x" * 257, "at most 256"),
    ],
)
def test_bad_label_names_are_refused(name: str, message: str) -> None:
    """Empty, control-character, surrogate and over-long label names stay refused."""
    body = webhook([alert("X", "h")])
    body["alerts"][0]["labels"][name] = "v"
    with pytest.raises(ValidationError) as caught:
        parse_payload(body)
    assert message in str(caught.value)


def test_oncall_resolve_is_a_resolved_alert_of_the_alert_group() -> None:
    """OnCall's resolve event resolves the group's alert, keyed by the alert group id."""
    firing = parse_payload(_load("oncall_outgoing_escalation.json"))
    done = parse_payload(_load("oncall_outgoing_resolve.json"))
    assert (firing.groupKey, firing.receiver) == ("IXJ47FKMYYJ5W", "Prometheus production")
    assert done.groupKey == firing.groupKey
    signal = to_signals(done)[0]
    assert signal.status is Status.RESOLVED
    assert signal.ends_at is not None
    assert signal.ends_at.isoformat().startswith("2026-11-28T18:20")
    assert signal.starts_at == to_signals(firing)[0].starts_at


def test_delivery_key_separates_sources() -> None:
    """The same body as Alertmanager's and as Grafana's has two delivery keys."""
    body = webhook([alert("X", "h")], groupKey="{}:{}")
    grafana = copy.deepcopy(body) | {"version": "1", "orgId": 1, "state": "alerting"}
    assert delivery_key(parse_payload(body)) != delivery_key(parse_payload(grafana))


async def test_alertmanager_and_grafana_with_one_group_key_do_not_merge(
    senders_service: Running,
) -> None:
    """One receiver name and groupKey `{}:{}` from two sources are two incidents."""
    svc = senders_service
    am = webhook([alert("RootRouteAlert", "r-1")], groupKey="{}:{}", receiver="shared")
    grafana = _load("grafana_8_valuestring.json") | {"receiver": "shared"}
    for body in (am, grafana):
        assert (await svc.post_alerts(body)).status_code == 200
    await svc.settled()
    listed = (await svc.get("/api/v1/incidents"))["incidents"]
    mine = [i for i in listed if i["receiver"] == "shared" and i["key"] == "{}:{}"]
    assert sorted(i["source"] for i in mine) == ["alertmanager", "grafana"]
    assert {i["title"] for i in mine} == {"RootRouteAlert on r-1", "DiskAlmostFull on db-1:9100"}
    page = await svc.client.get(f"{svc.url}/ui", params={"source": "grafana"})
    assert page.status_code == 200
    assert "DiskAlmostFull" in page.text
    assert "RootRouteAlert" not in page.text


async def test_oncall_resolve_closes_its_incident(senders_service: Running) -> None:
    """An OnCall escalation opens an incident (source oncall); its resolve closes it."""
    svc = senders_service
    for name in ("oncall_outgoing_escalation.json", "oncall_outgoing_resolve.json"):
        assert (await svc.post_alerts(_load(name))).status_code == 200
    await svc.settled()
    listed = (await svc.get("/api/v1/incidents", source="oncall"))["incidents"]
    group = [i for i in listed if i["key"] == "IXJ47FKMYYJ5W"]
    assert [(i["status"], i["receiver"]) for i in group] == [("resolved", "Prometheus production")]


def test_grafana_contact_point_example_targets_the_webhook() -> None:
    """grafana-contact-point.example.yml posts to /api/v1/alerts with a Bearer token."""
    example = Path(__file__).resolve().parents[2] / "grafana-contact-point.example.yml"
    config = yaml.safe_load(example.read_text())
    [point] = config["contactPoints"]
    [receiver] = point["receivers"]
    assert receiver["type"] == "webhook"
    settings = receiver["settings"]
    assert settings["url"].endswith("/api/v1/alerts")
    assert (settings["httpMethod"], settings["authorization_scheme"]) == ("POST", "Bearer")
    assert config["policies"][0]["receiver"] == point["name"]


async def test_console_shows_grafana_links_and_values(senders_service: Running) -> None:
    """The incident page of a Grafana alert links its dashboard and silence and shows values."""
    svc = senders_service
    body = _load("grafana_11_firing.json")
    assert (await svc.post_alerts(body)).status_code == 200
    await svc.settled()
    listed = (await svc.get("/api/v1/incidents", source="grafana"))["incidents"]
    [incident] = [i for i in listed if i["key"] == body["groupKey"]]
    page = await svc.client.get(f"{svc.url}/ui/incidents/{incident['id']}")
    assert page.status_code == 200
    dashboard = "/d/shop-overview?from=1796225190000&amp;orgId=1&amp;to=1796232390000"
    assert f'{dashboard}" rel="noreferrer noopener">Dashboard</a>' in page.text
    assert ">Silence</a>" in page.text
    assert "B=7.31, C=1" in page.text
