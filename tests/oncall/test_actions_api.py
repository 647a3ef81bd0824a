"""The on-call actions through the API: scopes, state, history, audit, close semantics."""

from __future__ import annotations

import json
from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from tests.oncall.helpers import (
    ADMIN,
    OPERATOR,
    READ,
    act,
    auth,
    firing_incident,
    get,
    oncall_service,
    open_incident,
)
from tests.support.payloads import alert, webhook

XSS = '<script>alert("x")</script>'


async def test_ack_assign_note_land_in_history_and_audit(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """A read token may not act; an operator acks, assigns and notes; the incident shows its
    state, assignee, notes and history; each action is in the audit log without the token."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        incident = await open_incident(svc, "checkout", service="checkout")
        iid = incident["id"]
        assert incident["state"] == "open"

        refused = await act(svc, iid, "ack", token=READ)
        assert refused.status_code == 403
        assert "operator" in refused.json()["detail"]

        acked = await act(svc, iid, "ack", {"author": "alice"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "acknowledged"
        assert acked.json()["acked_by"] == "alice"
        assigned = await act(svc, iid, "assign", {"assignee": "bob"}, token=ADMIN)
        assert assigned.status_code == 200
        noted = await act(svc, iid, "notes", {"text": f"looking at the db {XSS}"})
        assert noted.status_code == 201

        detail = await get(svc, f"/api/v1/incidents/{iid}")
        assert detail["state"] == "acknowledged"
        assert detail["assignee"] == "bob"
        assert detail["acked_at"] is not None
        assert [n["text"] for n in detail["notes"]] == [f"looking at the db {XSS}"]
        assert [h["kind"] for h in detail["history"]] == ["ack", "assign", "note"]
        ack_event = detail["history"][0]
        assert ack_event["author"] == "alice"
        assert ack_event["actor"].startswith("operator:")
        assert detail["history"][1]["actor"].startswith("admin:")

        unacked = await act(svc, iid, "unack")
        assert unacked.json()["state"] == "open"
        assert (await act(svc, iid, "unack")).status_code == 409

        assert (
            await svc.client.get(f"{svc.url}/api/v1/audit", headers=auth(OPERATOR))
        ).status_code == 403
        audit = await get(svc, "/api/v1/audit", token=ADMIN)
        actions = [e["action"] for e in audit["entries"]]
        assert actions == ["incident.unack", "incident.note", "incident.assign", "incident.ack"]
        assert all(e["target"] == iid for e in audit["entries"])
        raw = json.dumps(audit)
        assert OPERATOR not in raw
        assert ADMIN not in raw


async def test_bad_action_bodies_are_refused_and_change_nothing(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Bodies that are not JSON objects, too long or of the wrong type answer 4xx naming the
    problem, and leave no history entry; an unknown incident is 404."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        iid = (await open_incident(svc, "bad"))["id"]
        url = f"{svc.url}/api/v1/incidents/{iid}"
        form = await svc.client.post(
            f"{url}/notes",
            content=b"text=hi",
            headers={**auth(OPERATOR), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415
        not_json = await svc.client.post(
            f"{url}/notes",
            content=b"{nope",
            headers={**auth(OPERATOR), "Content-Type": "application/json"},
        )
        assert not_json.status_code == 400
        too_long = await act(svc, iid, "notes", {"text": "x" * 2001})
        assert too_long.status_code == 422
        assert "text" in too_long.json()["detail"]
        empty = await act(svc, iid, "notes", {"text": "  \u200b "})
        assert empty.status_code == 422
        wrong_type = await act(svc, iid, "assign", {"assignee": 5})
        assert wrong_type.status_code == 422
        assert "assignee" in wrong_type.json()["detail"]
        missing = await act(svc, "0123456789abcdef01234567", "ack")
        assert missing.status_code == 404
        detail = await get(svc, f"/api/v1/incidents/{iid}")
        assert detail["history"] == []
        assert (await get(svc, "/api/v1/audit", token=ADMIN))["total"] == 0


async def test_close_is_by_hand_and_a_new_firing_opens_a_new_incident(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Close marks the incident closed (resolved_by operator, not Alertmanager); acking or
    closing it again is 409; the same alert re-sent opens nothing, a new firing of the same
    group opens a new incident."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        first = alert("DiskFull", "db-1:9100")
        assert (await svc.post_alerts(webhook([first], group="disk"))).status_code == 200
        incident = await firing_incident(svc, "disk")
        iid = incident["id"]

        closed = await act(svc, iid, "close", {"comment": "fixed by hand"})
        assert closed.status_code == 200, closed.text
        body = closed.json()
        assert body["state"] == "closed"
        assert body["status"] == "resolved"
        assert body["resolved_by"] == "operator"
        assert body["closed_by"].startswith("operator:")
        assert (await act(svc, iid, "close")).status_code == 409
        assert (await act(svc, iid, "ack")).status_code == 409

        # the same still-firing alert again (a repeat notification): nothing new opens
        assert (await svc.post_alerts(webhook([first], group="disk"))).status_code == 200
        second = alert("DiskFull", "db-2:9100")
        assert (await svc.post_alerts(webhook([first, second], group="disk"))).status_code == 200
        reopened = await firing_incident(svc, "disk")
        assert reopened["id"] != iid
        assert reopened["state"] == "open"
        listed = await get(svc, "/api/v1/incidents", state="closed")
        assert [i["id"] for i in listed["incidents"]] == [iid]
        detail = await get(svc, f"/api/v1/incidents/{iid}")
        assert detail["state"] == "closed"
        assert detail["episode_count"] == 1


async def test_admin_changes_are_audited(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """Config PUTs, target changes and deletes, re-analysis and delivery retries are audited
    with the admin's identity; refused requests and reads are not."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        iid = (await open_incident(svc, "audited"))["id"]
        headers = auth(ADMIN)
        base = svc.url
        target = {"name": "staging", "url": "http://127.0.0.1:9"}
        assert (
            await svc.client.post(f"{base}/api/v1/targets", json=target, headers=headers)
        ).status_code == 201
        assert (
            await svc.client.put(
                f"{base}/api/v1/targets/staging", json={"job": "x"}, headers=headers
            )
        ).status_code == 200
        assert (
            await svc.client.delete(f"{base}/api/v1/targets/staging", headers=headers)
        ).status_code in (200, 204)
        assert (
            await svc.client.post(f"{base}/api/v1/incidents/{iid}/reanalyse", headers=headers)
        ).status_code == 202
        refused = await svc.client.post(f"{base}/api/v1/targets", json={}, headers=headers)
        assert refused.status_code >= 400
        await svc.client.get(f"{base}/api/v1/targets", headers=headers)

        audit = await get(svc, "/api/v1/audit", token=ADMIN)
        seen = [(e["method"], e["path"]) for e in reversed(audit["entries"])]
        assert seen == [
            ("POST", "/api/v1/targets"),
            ("PUT", "/api/v1/targets/staging"),
            ("DELETE", "/api/v1/targets/staging"),
            ("POST", f"/api/v1/incidents/{iid}/reanalyse"),
        ]
        assert {e["actor"][:6] for e in audit["entries"]} == {"admin:"}
        assert ADMIN not in json.dumps(audit)
        one = await get(svc, "/api/v1/audit", token=ADMIN, action="PUT /api/v1/targets/staging")
        assert one["total"] == 1
