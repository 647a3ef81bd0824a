"""Chat limits on the real service: per-token rate, the shared LLM budget, session ownership."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.support.fake_llm import FakeLLM, ollama_chat
from tests.support.payloads import alert, webhook
from tests.support.service import Running, make_settings, serve

READ = "read-token-aaaaaaaaaaaa"
READ_2 = "read-token-bbbbbbbbbbbb"
ADMIN = "admin-token-cccccccccccc"


async def _chat(svc: Running, token: str | None = None, **body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await svc.client.post(f"{svc.url}/api/chat", json=body, headers=headers)


async def test_chat_rate_is_per_token(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """Past CHAT_RATE_PER_MINUTE a token gets 429 with Retry-After; another token is not held."""
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        api_token=f"{READ},{READ_2}",
        admin_token=ADMIN,
        chat_rate_per_minute=2,
    )
    async with serve(settings) as svc:
        for _ in range(2):
            assert (await _chat(svc, READ, message="anything firing?")).status_code == 200
        held = await _chat(svc, READ, message="anything firing?")
        other = await _chat(svc, READ_2, message="anything firing?")
    assert held.status_code == 429
    assert held.json()["error"] == "rate_limited"
    assert "CHAT_RATE_PER_MINUTE" in held.json()["detail"]
    assert 1 <= int(held.headers["retry-after"]) <= 60
    assert other.status_code == 200


async def test_chat_rate_without_auth_is_per_address(service: Running) -> None:
    """With auth off the default rate (20 a minute) holds one address."""
    codes = [(await _chat(service, message="status?")).status_code for _ in range(21)]
    assert codes[:20] == [200] * 20
    assert codes[20] == 429


async def test_chat_tokens_count_against_the_enrichment_budget(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """Chat turns spend the hourly LLM budget: the next turn and the next analysis go offline."""
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        llm_url=fake_llm.url,
        llm_provider="ollama",
        llm_max_tokens_per_hour=6_000,
        llm_max_tokens_per_incident=0,
    )
    fake_llm.script(ollama_chat(json.dumps({"answer": "Nothing is firing."}), prompt_tokens=5_000))
    async with serve(settings) as svc:
        first = await _chat(svc, message="is anything firing?")
        second = await _chat(svc, message="and now?")
        assert (await svc.post_alerts(webhook([alert("DiskFull", "db-1")]))).status_code == 200
        incidents = await svc.wait_for(
            "/api/v1/incidents",
            lambda b: b["incidents"] and b["incidents"][0]["analysis_id"],
        )
        analysis = await svc.get(f"/api/v1/incidents/{incidents['incidents'][0]['id']}/analysis")
        metrics = (await svc.client.get(f"{svc.url}/metrics")).text
    assert first.json()["offline"] is False
    assert first.json()["tokens"] == {"input": 5_000, "output": 45}
    assert second.json()["offline"] is True
    assert "hourly LLM budget of 6000 tokens" in second.json()["response"]
    assert len(fake_llm.requests) == 1  # neither the second turn nor the analysis asked it
    assert analysis["offline"] is True
    assert 'llm_budget_exceeded_total{limit="hour"} 1.0' in metrics


async def test_sessions_belong_to_the_token_that_created_them(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Another token (admin too) gets 404 for a session and does not list it; the owner does."""
    settings = make_settings(
        embedded_store.uri, tmp_path, api_token=f"{READ},{READ_2}", admin_token=ADMIN
    )
    async with serve(settings) as svc:
        created = await _chat(svc, READ, message="what is firing?")
        session_id = created.json()["session_id"]
        url = f"{svc.url}/api/sessions/{session_id}"

        def as_(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        mine = await svc.client.get(url, headers=as_(READ))
        theirs = await svc.client.get(url, headers=as_(READ_2))
        continued = await _chat(svc, READ_2, message="and now?", session_id=session_id)
        listed_mine = (await svc.client.get(f"{svc.url}/api/sessions", headers=as_(READ))).json()
        listed_theirs = (
            await svc.client.get(f"{svc.url}/api/sessions", headers=as_(READ_2))
        ).json()
        admin_delete = await svc.client.delete(url, headers=as_(ADMIN))
        still = await svc.client.get(url, headers=as_(READ))
        stored = await svc.client.get(url, headers=as_(READ))
    assert mine.status_code == 200
    assert "owner" not in mine.json()
    assert READ not in mine.text
    assert theirs.status_code == 404
    assert continued.status_code == 404
    assert [s["session_id"] for s in listed_mine["sessions"]] == [session_id]
    assert listed_theirs["sessions"] == []
    assert listed_theirs["total"] == 0
    assert admin_delete.status_code == 404
    assert still.status_code == 200
    assert stored.json()["message_count"] == 2
