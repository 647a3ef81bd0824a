"""With the real enrichment worker (offline analyst, no LLM configured): the first page waits for
the analysis the service writes itself and carries it; no follow-up is needed."""

from __future__ import annotations

from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import incident_id, notify_settings, rows, rows_where
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, webhook
from tests.support.service import serve
from tests.support.smtp import smtp_server


async def test_first_page_carries_the_services_own_analysis(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Webhook → enrichment stores an analysis → the waiting first messages include it."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            smtp=smtp,
            slack=slack,
            notify_rca_wait_seconds=30,
            enrich_settle_seconds=0.1,
            enrich_poll_seconds=1.0,
        )
        async with serve(settings) as service:
            payload = webhook([alert("HighCPU", "node-1:9100", severity="high")])
            assert (await service.post_alerts(payload)).status_code == 200
            incident = await incident_id(service)
            found = await rows_where(
                service,
                lambda found: len(found) == 2 and all(r["status"] == "sent" for r in found),
                event="firing",
            )
            detail = await service.get(f"/api/v1/incidents/{incident}")
            follow_ups = await rows(service, event="analysis")
    assert {r["with_analysis"] for r in found} == {True}
    assert follow_ups == []
    assert detail["analysis_id"]
    [mail] = smtp.messages
    html = next(p for p in mail.message.walk() if p.get_content_type() == "text/html")
    assert "Evidence summary (offline analyst, no LLM)" in str(html.get_content())
    [post] = slack.accepted
    assert "Evidence summary (offline analyst, no LLM)" in str(post)
