"""Evidence in notifications: the email carries the main evidence series as an inline PNG (drawn
from a real Prometheus, threshold line included) and Slack links to the incident's console page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import httpx

from receiver.store.embedded import EmbeddedStore
from receiver.ui.chart import PALETTE, THRESHOLD
from tests.notify.outbox_helpers import (
    PUBLIC_URL,
    incident_id,
    notify_settings,
    put_analysis,
    rows_where,
)
from tests.support.exporter import SyntheticExporter
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, resolved, rfc3339, webhook
from tests.support.prom import prometheus, until_scraped
from tests.support.service import serve
from tests.support.smtp import smtp_server
from tests.ui import pngs


def _image(message: EmailMessage) -> tuple[EmailMessage, bytes]:
    [part] = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert isinstance(part, EmailMessage)
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return part, data


def _html(message: EmailMessage) -> str:
    [part] = [p for p in message.walk() if p.get_content_type() == "text/html"]
    return str(part.get_content())


async def test_email_carries_the_evidence_chart_and_slack_links_the_console(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    with (
        SyntheticExporter() as exporter,
        prometheus(tmp_path / "prom", scrape_targets=[exporter.target]) as prom,
        smtp_server() as smtp,
        fake_slack() as slack,
    ):
        exporter.set("demo_queue_depth", {}, 7.0)
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            smtp=smtp,
            slack=slack,
            prom_url=prom.url,
            notify_rca_wait_seconds=15,
        )
        async with serve(settings) as service, httpx.AsyncClient() as client:
            await until_scraped(client, prom.url, "demo_queue_depth", samples=3)
            starts = rfc3339(datetime.now(UTC) - timedelta(seconds=30))
            queue = alert(
                "QueueBacklog", exporter.target, severity="critical", starts=starts, job="synthetic"
            )
            queue["generatorURL"] = f"{prom.url}/graph?g0.expr={quote('demo_queue_depth > 5')}"
            assert (await service.post_alerts(webhook([queue]))).status_code == 200
            incident = await incident_id(service)
            await put_analysis(settings, incident)
            await rows_where(service, lambda r: sum(x["status"] == "sent" for x in r) == 2)

            [mail] = smtp.messages
            first = mail.message
            assert first.get_content_type() == "multipart/related"
            part, png = _image(first)
            assert part["Content-ID"] == "<evidence.png>"
            assert part.get_content_disposition() == "inline"
            assert part.get_filename() == "evidence.png"
            assert 'src="cid:evidence.png" width="640"' in _html(first)
            assert pngs.size(png) == (1280, 480)  # twice the console's pixels, shown 640 wide
            pixels = pngs.decode(png)
            assert pngs.count(pixels, THRESHOLD) > 400  # the `> 5` line of the rule
            assert pngs.count(pixels, PALETTE[0]) > 80  # the series itself
            assert pngs.texts(png)["Title"].startswith("QueueBacklog on ")  # case kept

            [post] = slack.accepted
            [footer] = [b for b in post["attachments"][0]["blocks"] if b["type"] == "context"]
            links = footer["elements"][0]["text"]
            assert links.startswith(f"<{PUBLIC_URL}/ui/incidents/{incident}|Console>")
            assert f"<{PUBLIC_URL}/api/v1/incidents/{incident}|Incident API>" in links

            # the resolved email shows the recovery with its own chart, threaded under the page
            assert (
                await service.post_alerts(webhook([resolved(queue, rfc3339(datetime.now(UTC)))]))
            ).status_code == 200
            await rows_where(service, lambda r: sum(x["status"] == "sent" for x in r) == 4)
            _, second = smtp.messages
            assert second.message["In-Reply-To"] == f"<incident.{incident}@ai-devops-monitor>"
            assert pngs.size(_image(second.message)[1]) == (1280, 480)
