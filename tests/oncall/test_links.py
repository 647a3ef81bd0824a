"""Notifications carry a pre-filled Alertmanager "Silence" link and the console link."""

from __future__ import annotations

import json

from receiver.domain import Status
from receiver.notify.render import Event, RenderOptions, render
from tests.notify.conftest import make_incident

SILENCE = "http://alertmanager.local:9093/#/silences/new?filter=%7Balertname%3D%22HighCPU%22%7D"


def test_firing_page_links_to_silence_and_console() -> None:
    """Email (HTML and text) and Slack carry the silence form for the group's labels and the
    incident's console page."""
    opts = RenderOptions(public_url="https://monitor.example.test")
    message = render(make_incident(), Event.FIRING, options=opts)
    console = "https://monitor.example.test/ui/incidents/inc-0001"
    assert f'<a href="{SILENCE}">Silence</a>' in message.html
    assert f"Silence: {SILENCE}" in message.text
    assert f'<a href="{console}">Console</a>' in message.html
    slack = json.dumps(message.slack)
    assert f"<{SILENCE}|Silence>" in slack
    assert f"<{console}|Console>" in slack


def test_resolved_page_has_no_silence_link() -> None:
    """Nothing to silence once the group resolved."""
    message = render(make_incident(status=Status.RESOLVED), Event.RESOLVED)
    assert "silences/new" not in message.html
    assert "silences/new" not in message.text
