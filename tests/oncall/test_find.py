"""GET /api/v1/incidents with Alertmanager matchers, sort and the on-call state filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from receiver.oncall.matchers import MatcherError, compile_regex, parse_matchers, silence_link
from receiver.store.embedded import EmbeddedStore
from tests.oncall.helpers import READ, act, auth, get, oncall_service, open_incident


async def test_filter_sort_and_state(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """Equality, negative and anchored regex matchers over group/common labels, several joined
    by commas; sort by severity; state=unacknowledged leaves out the acknowledged one."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        pay = await open_incident(svc, "pay", service="checkout", severity="low")
        cart = await open_incident(svc, "cart", service="checkout", severity="critical")
        auth_ = await open_incident(svc, "login", service="auth", severity="high")

        def ids(body: dict[str, Any]) -> list[str]:
            return [str(i["id"]) for i in body["incidents"]]

        checkout = await get(svc, "/api/v1/incidents", filter='service="checkout"')
        assert sorted(ids(checkout)) == sorted([pay["id"], cart["id"]])
        assert checkout["total"] == 2
        both = await get(svc, "/api/v1/incidents", filter='{service="checkout",severity!="low"}')
        assert ids(both) == [cart["id"]]
        regex = await get(svc, "/api/v1/incidents", filter='severity=~"critical|high"')
        assert sorted(ids(regex)) == sorted([cart["id"], auth_["id"]])
        anchored = await get(svc, "/api/v1/incidents", filter='service=~"check"')
        assert anchored["total"] == 0
        negative = await get(svc, "/api/v1/incidents", filter='service!~"check.*"')
        assert ids(negative) == [auth_["id"]]

        by_severity = await get(svc, "/api/v1/incidents", sort="severity")
        assert ids(by_severity) == [cart["id"], auth_["id"], pay["id"]]
        paged = await get(svc, "/api/v1/incidents", sort="severity", limit=1, offset=1)
        assert ids(paged) == [auth_["id"]]
        assert paged["total"] == 3

        assert (await act(svc, cart["id"], "ack")).status_code == 200
        updated = await get(svc, "/api/v1/incidents", sort="updated")
        assert ids(updated)[0] == cart["id"]
        unacked = await get(svc, "/api/v1/incidents", state="unacknowledged")
        assert sorted(ids(unacked)) == sorted([pay["id"], auth_["id"]])
        acked = await get(
            svc, "/api/v1/incidents", state="acknowledged", filter='service="checkout"'
        )
        assert ids(acked) == [cart["id"]]

        for bad in ('service=~"(a+)+"', 'service=~"["', "service", 'x="' + "a" * 2000 + '"'):
            resp = await svc.client.get(
                f"{svc.url}/api/v1/incidents", params={"filter": bad}, headers=auth(READ)
            )
            assert resp.status_code == 400, bad
            assert resp.json()["detail"].startswith("filter:")
        resp = await svc.client.get(
            f"{svc.url}/api/v1/incidents", params={"sort": "name"}, headers=auth(READ)
        )
        assert resp.status_code == 400


def test_matcher_syntax_follows_alertmanager() -> None:
    """Quoted and unquoted values, escapes, braces; a missing label matches as ""."""
    [a, b, c] = parse_matchers(r'{job="a\"b", env!=prod, team=~""}')
    assert (a.name, a.op.value, a.value) == ("job", "=", 'a"b')
    assert (b.op.value, b.value) == ("!=", "prod")
    assert c.matches({})
    assert not c.matches({"team": "x"})
    assert str(a) == r'job="a\"b"'
    with pytest.raises(MatcherError, match="unterminated"):
        parse_matchers('job="open')
    with pytest.raises(MatcherError, match="back-references"):
        compile_regex(r"(a)\1")
    with pytest.raises(MatcherError, match="alternation inside a repeat"):
        compile_regex("(ab|a)*c")
    assert compile_regex("[a-z]+-[0-9]+").fullmatch("api-12")


def test_silence_link_is_prefilled_for_alertmanager_ui() -> None:
    """The link opens Alertmanager's new-silence form with the labels as the filter."""
    link = silence_link("http://127.0.0.1:9093/", {"alertname": "X", "job": 'a"b'})
    assert link == (
        "http://127.0.0.1:9093/#/silences/new?filter="
        "%7Balertname%3D%22X%22%2Cjob%3D%22a%5C%22b%22%7D"
    )
    assert silence_link("", {"a": "b"}) == ""
    assert silence_link("http://am", {}) == ""
