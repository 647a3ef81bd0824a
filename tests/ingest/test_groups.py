"""Groups stay separate: one alert in two Alertmanager groups (another groupKey or another
receiver) is two episodes and two incidents, each superseded and resolved only by its own group's
deliveries. Through the webhook and the delivery worker, on the embedded store."""

from __future__ import annotations

from typing import Any

from tests.support.payloads import alert, resolved, webhook
from tests.support.service import Running

GROUP_A = '{}:{group="a"}'
GROUP_B = '{}:{group="b"}'


async def _post(service: Running, *payloads: dict[str, Any]) -> None:
    for payload in payloads:
        assert (await service.post_alerts(payload)).status_code == 200
    await service.settled()


async def _incidents(service: Running) -> dict[tuple[str, str], dict[str, Any]]:
    """Incidents by (receiver, visible group key); each pair must be unique."""
    listed = (await service.get("/api/v1/incidents"))["incidents"]
    by_group = {(i["receiver"], i["key"]): i for i in listed}
    assert len(by_group) == len(listed), listed
    return by_group


async def _episodes(service: Running, incident: dict[str, Any]) -> list[tuple[str, str]]:
    detail = await service.get(f"/api/v1/incidents/{incident['id']}")
    return sorted((e["starts_at"][11:16], e["status"]) for e in detail["episodes"])


async def test_same_alert_under_two_group_keys_is_two_incidents(service: Running) -> None:
    """The same labels delivered under two groupKeys make two episodes and two incidents."""
    a = alert("DiskFull", "db-1")
    await _post(service, webhook([a], group="a"), webhook([a], group="b"))
    incidents = await _incidents(service)
    assert sorted(incidents) == [("monitor", GROUP_A), ("monitor", GROUP_B)]
    for incident in incidents.values():
        assert (incident["status"], incident["firing_count"]) == ("firing", 1)
        assert await _episodes(service, incident) == [("10:00", "firing")]
    assert (await service.get("/anomalies"))["total"] == 2


async def test_two_receivers_with_one_group_key_do_not_merge(service: Running) -> None:
    """One groupKey from two receivers is two incidents, each showing that groupKey."""
    a = alert("DiskFull", "db-1")
    await _post(service, webhook([a], group="a"), webhook([a], group="a", receiver="pager"))
    incidents = await _incidents(service)
    assert sorted(incidents) == [("monitor", GROUP_A), ("pager", GROUP_A)]
    await _post(service, webhook([resolved(a)], group="a", receiver="pager"))
    statuses = {k: i["status"] for k, i in (await _incidents(service)).items()}
    assert statuses == {("monitor", GROUP_A): "firing", ("pager", GROUP_A): "resolved"}


async def test_later_start_in_another_group_does_not_supersede(service: Running) -> None:
    """A later startsAt for the same labels supersedes only within its own group."""
    old = alert("Flappy", "web-9", starts="2026-11-28T09:00:00Z")
    new = alert("Flappy", "web-9", starts="2026-11-28T09:30:00Z")
    await _post(service, webhook([old], group="a"), webhook([new], group="b"))
    incidents = await _incidents(service)
    assert await _episodes(service, incidents["monitor", GROUP_A]) == [("09:00", "firing")]
    assert await _episodes(service, incidents["monitor", GROUP_B]) == [("09:30", "firing")]
    assert {i["status"] for i in incidents.values()} == {"firing"}

    # the same later start in group a does supersede a's older episode, and only that one
    await _post(service, webhook([new], group="a"))
    incidents = await _incidents(service)
    assert await _episodes(service, incidents["monitor", GROUP_A]) == [
        ("09:00", "resolved"),
        ("09:30", "firing"),
    ]
    assert await _episodes(service, incidents["monitor", GROUP_B]) == [("09:30", "firing")]
    assert {(i["status"], i["firing_count"]) for i in incidents.values()} == {("firing", 1)}


async def test_resolve_in_one_group_leaves_the_other_firing(service: Running) -> None:
    """A resolve delivered in group b closes b's incident only; a's own resolve closes a's."""
    a = alert("DiskFull", "db-1")
    await _post(service, webhook([a], group="a"), webhook([a], group="b"))
    await _post(service, webhook([resolved(a)], group="b"))
    incidents = await _incidents(service)
    assert incidents["monitor", GROUP_A]["status"] == "firing"
    assert await _episodes(service, incidents["monitor", GROUP_A]) == [("10:00", "firing")]
    assert incidents["monitor", GROUP_B]["status"] == "resolved"

    await _post(service, webhook([resolved(a)], group="a"))
    incidents = await _incidents(service)
    assert {i["status"] for i in incidents.values()} == {"resolved"}
    assert {i["resolved_by"] for i in incidents.values()} == {"alertmanager"}
