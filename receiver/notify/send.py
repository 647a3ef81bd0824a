"""Deliver a rendered `Message` to one `Channel`; say whether a failure is worth retrying.

Errors (none escape `send`):

    SendResult(ok=False, retryable=True)   connection refused/reset, timeout, HTTP 5xx, 429,
                                           408, SMTP failures Apprise cannot tell apart (auth
                                           and transient failures look the same to us)
    SendResult(ok=False, retryable=False)  HTTP 4xx (invalid_payload, no_service, ...),
                                           SMTP recipient refused with 5xx, a URL Apprise
                                           rejects

Email and APPRISE_URLS go through Apprise's async API (its blocking plugins run in Apprise's
worker threads, never on our loop). Slack webhooks are posted by us with httpx: Apprise's
slack plugin builds its own single attachment (four notify-type colours, no fields, no
splitting) and cannot be pointed at a loopback test server.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import apprise
import httpx
from apprise.attachment.memory import AttachMemory

from receiver.notify.channels import Channel, ChannelKind
from receiver.notify.render import Event, Message
from receiver.notify.smtp_tls import install as share_smtp_tls_context
from receiver.ports import UsesHttpClient
from receiver.safety import one_line

log = logging.getLogger(__name__)

APP_ID = "AI DevOps Monitor"
ERROR_LIMIT = 500
RETRY_STATUS = frozenset({408, 429})
_SMTP_REFUSED = re.compile(r"was refused: (\d{3})")

_NOTIFY_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "high": apprise.NotifyType.WARNING,
    "medium": apprise.NotifyType.WARNING,
    "low": apprise.NotifyType.INFO,
}


@dataclass(frozen=True)
class SendResult:
    """Outcome of one delivery. `error` is already masked and safe to log, store and show."""

    ok: bool
    retryable: bool = False
    error: str = ""
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After header
    parts_sent: int = 0  # Slack messages accepted (a long message is split into several)


class Notifier(Protocol):
    """Sends one message to one channel. Implementations never raise for delivery failures."""

    async def send(
        self, channel: Channel, message: Message, *, first_part: int = 0
    ) -> SendResult: ...


class AppriseNotifier(UsesHttpClient):
    """The real notifier: Apprise for email and APPRISE_URLS, httpx for Slack webhooks.

    Pass the lifespan's shared `httpx.AsyncClient`, or let it own one (closed by `aclose`).
    """

    def __init__(
        self,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = 30.0,
        app_id: str = APP_ID,
    ) -> None:
        self._use_client(http, timeout=timeout)
        self._timeout = timeout
        self._asset = apprise.AppriseAsset(app_id=app_id, secure_logging=True)
        share_smtp_tls_context()

    async def send(self, channel: Channel, message: Message, *, first_part: int = 0) -> SendResult:
        """Deliver `message`; for Slack, `first_part` skips parts a previous attempt delivered."""
        if channel.kind is ChannelKind.SLACK:
            result = await self._send_slack(channel, message, first_part)
        else:
            result = await self._send_apprise(channel, message)
        extra = {
            "incident_id": message.incident_id,
            "channel": channel.name,
            "event": message.event.value,
        }
        if result.ok:
            log.info("notified %s via %s", message.event.value, channel.masked_url, extra=extra)
        else:
            log.warning(
                "notify %s via %s failed (retryable=%s): %s",
                message.event.value,
                channel.masked_url,
                result.retryable,
                result.error,
                extra=extra,
            )
        return result

    # --- Apprise (email and any other URL) -------------------------------------------------

    async def _send_apprise(self, channel: Channel, message: Message) -> SendResult:
        url = channel.url
        is_email = channel.kind is ChannelKind.EMAIL
        attach: apprise.AppriseAttachment | None = None
        if is_email:
            params = email_headers(message)
            if message.attachments:
                # `inline`: images the HTML names by cid: go into a multipart/related part
                params["inline"] = "yes"
                attach = apprise.AppriseAttachment(asset=self._asset)
                for item in message.attachments:
                    memory = AttachMemory(  # type: ignore[no-untyped-call]
                        content=item.data, name=item.name, mimetype=item.mimetype
                    )
                    attach.add(memory)
            url = _with_params(url, params)
        apobj = apprise.Apprise(asset=self._asset)
        if not apobj.add(url):
            return _failed(channel, f"Apprise rejected the URL {channel.masked_url}", False)
        notify_type = (
            apprise.NotifyType.SUCCESS
            if message.event is Event.RESOLVED
            else _NOTIFY_TYPES[message.severity.value]
        )
        result = await apobj.async_notify(
            body=message.html if is_email else message.text,
            title=message.title,
            notify_type=notify_type,
            body_format=apprise.NotifyFormat.HTML if is_email else apprise.NotifyFormat.TEXT,
            attach=attach,
            timeout=self._timeout,
        )
        if result:
            return SendResult(ok=True, parts_sent=1)
        return _apprise_failure(channel, result)

    # --- Slack webhook ---------------------------------------------------------------------

    async def _send_slack(self, channel: Channel, message: Message, first_part: int) -> SendResult:
        sent = first_part
        for payload in message.slack[first_part:]:
            body: dict[str, Any] = dict(payload)
            if channel.slack_channel:
                body["channel"] = channel.slack_channel
            try:
                response = await self._http.post(channel.url, json=body, timeout=self._timeout)
            except httpx.TimeoutException as err:
                return _failed(
                    channel, f"timeout posting to {channel.masked_url}: {err!r}", True, sent
                )
            except httpx.TransportError as err:
                return _failed(channel, f"cannot reach {channel.masked_url}: {err!r}", True, sent)
            except httpx.HTTPError as err:
                return _failed(
                    channel, f"cannot post to {channel.masked_url}: {err!r}", False, sent
                )
            if not response.is_success:
                status = response.status_code
                detail = one_line(response.text, 200)
                return _failed(
                    channel,
                    f"{channel.masked_url} answered {status} {detail}".rstrip(),
                    status >= 500 or status in RETRY_STATUS,
                    sent,
                    _retry_after(response),
                )
            sent += 1
        return SendResult(ok=True, parts_sent=sent)


def email_headers(message: Message) -> dict[str, str]:
    """Threading headers: every email of an incident references the same msg-id.

    Apprise 2.3 adds `+Header=value` URL parameters to the email, but always generates its own
    Message-ID after them (a second Message-ID would be invalid), so the first email cannot
    carry the thread id itself. All of them reference it instead; follow-ups also reply to it.
    """
    headers = {"References": message.thread_id, "X-Incident-Id": one_line(message.incident_id, 100)}
    if message.event is not Event.FIRING:
        headers["In-Reply-To"] = message.thread_id
    return {f"+{name}": value for name, value in headers.items()}


def _with_params(url: str, params: dict[str, str]) -> str:
    """Append Apprise URL parameters (`+Name` ones become email headers)."""
    query = "&".join(f"{quote(k, safe='+')}={quote(v, safe='')}" for k, v in params.items())
    return url + ("&" if "?" in url else "?") + query


def _failed(
    channel: Channel,
    error: str,
    retryable: bool,
    parts_sent: int = 0,
    retry_after: float | None = None,
) -> SendResult:
    text = one_line(channel.redact(f"{channel.name}: {error}"), ERROR_LIMIT)
    return SendResult(
        ok=False, retryable=retryable, error=text, retry_after=retry_after, parts_sent=parts_sent
    )


def _apprise_failure(channel: Channel, result: apprise.AppriseResult) -> SendResult:
    """Turn an AppriseResult into an error; only explicit permanent refusals are final."""
    lines: list[str] = []
    timed_out = result.status == apprise.AppriseResultStatus.TIMEOUT
    for service in result:
        timed_out = timed_out or service.status == apprise.AppriseResultStatus.TIMEOUT
        lines += [entry.message for entry in service.logs()]
    permanent = any(code.startswith("5") for line in lines for code in _SMTP_REFUSED.findall(line))
    detail = "; ".join(dict.fromkeys(lines)) or f"Apprise status {result.status.name}"
    if timed_out:
        detail = f"timed out: {detail}"
    return _failed(channel, detail, not permanent)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # HTTP-date form: leave the back-off to the caller
