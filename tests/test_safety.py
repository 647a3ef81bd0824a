"""The one copy of text, URL and secret safety (receiver/safety.py)."""

from __future__ import annotations

import pytest

from receiver.safety import (
    MASK,
    defuse_mentions,
    html_escape,
    mask_url,
    mask_url_secrets,
    one_line,
    redact,
    safe_url,
    slack_escape,
    slack_plain,
    split_userinfo,
    strip_control,
)

BIDI = "\u202e\u2066\u2069\u200f\u061c"  # right-to-left override, isolates, marks


def test_strip_control_removes_controls_and_bidi_but_keeps_lines() -> None:
    """C0/C1 controls, DEL, bidi overrides and lone surrogates go; tab and newline stay."""
    raw = f"a\x00b\x1bc\x7fd\x85e{BIDI}f\ud800g\th\ni"
    assert strip_control(raw) == "abcdefg\th\ni"
    assert strip_control("x\ry", " ") == "x y"


def test_strip_control_keeps_ordinary_unicode() -> None:
    """Accents, CJK and emoji are text, not controls."""
    text = "Zürich 東京 🔥 μs"
    assert strip_control(text) == text


def test_one_line_flattens_strips_and_caps() -> None:
    """Newlines, controls and bidi marks collapse to single spaces; long text ends in one `…`."""
    assert one_line(f"  disk\n full\x07on{BIDI}node  ", 100) == "disk full on node"
    capped = one_line("word " * 50, 20)
    assert len(capped) <= 20
    assert capped.endswith("word…")  # the space before the cut is not kept


def test_html_escape_escapes_markup_quotes_and_drops_bidi() -> None:
    """Tags, ampersands and both quotes are escaped; a bidi override cannot reorder the page."""
    out = html_escape(f"<img src=x onerror='a()'> & \"q\" {BIDI}evil")
    assert out == "&lt;img src=x onerror=&#x27;a()&#x27;&gt; &amp; &quot;q&quot; evil"


def test_slack_escape_defuses_links_and_mentions() -> None:
    """`<!channel>`, `<url|text>` and a bare @here are literal text in Slack mrkdwn."""
    out = slack_escape("<!channel> <https://x.example|click> @here &\x00")
    assert out == "&lt;!\u200bchannel&gt; &lt;https://x.example|click&gt; @\u200bhere &amp;"
    assert defuse_mentions("!everyone") == "!\u200beveryone"


def test_slack_plain_is_one_line_and_capped() -> None:
    """Plain-text Slack fields: no newline, no live `<`, no mention, at most `limit` characters."""
    out = slack_plain("@channel <b>\nnext line " + "x" * 200, 50)
    assert "\n" not in out
    assert "@channel" not in out
    assert "<b" not in out
    assert len(out) <= 50


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox",
        "//evil.example/path",
        "/relative/path",
        "http:///no-host",
        "http://[::1",  # unbalanced bracket: urlsplit raises
        "",
    ],
)
def test_safe_url_refuses_non_web_targets(raw: str) -> None:
    """Only absolute http(s) URLs with a host survive; everything else becomes ""."""
    assert safe_url(raw) == ""


def test_safe_url_keeps_web_urls() -> None:
    """An absolute http(s) URL comes back unchanged but trimmed."""
    assert safe_url(" https://prom.example:9090/graph?g0.expr=up ") == (
        "https://prom.example:9090/graph?g0.expr=up"
    )
    assert safe_url("HTTP://127.0.0.1/x") == "HTTP://127.0.0.1/x"


def test_split_userinfo_decodes_and_removes_credentials() -> None:
    """user:password@ leaves the URL and comes back percent-decoded."""
    url, credentials = split_userinfo("https://al%40ce:p%3Ass@prom.example:9090/api")
    assert url == "https://prom.example:9090/api"
    assert credentials == ("al@ce", "p:ss")
    assert split_userinfo("http://127.0.0.1:9090") == ("http://127.0.0.1:9090", None)


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("https://admin:hunter22@prom.example:9090", "hunter22"),
        ("http://user:s%3Acret@127.0.0.1:9090/api", "s%3Acret"),
        ("mailtos://bot:app-pass-1@smtp.example:587/?to=a@b.example", "app-pass-1"),
    ],
)
def test_mask_url_hides_user_info_password(url: str, hidden: str) -> None:
    """The password in user-info is masked; the host stays readable."""
    masked = mask_url(url)
    assert hidden not in masked
    assert f":{MASK}@" in masked
    assert masked.split("@", 1)[1].startswith(url.split("@", 1)[1][:8])


def test_mask_url_secrets_lists_raw_and_decoded_forms() -> None:
    """Both spellings of a percent-encoded secret are listed, so either is redacted from text."""
    masked, secrets = mask_url_secrets("http://u:s%3Acret@127.0.0.1:9090")
    assert masked == f"http://u:{MASK}@127.0.0.1:9090"
    assert {"s%3Acret", "s:cret"} <= set(secrets)


def test_redact_replaces_every_secret() -> None:
    """Each listed secret is replaced wherever it occurs; empty secrets are ignored."""
    text = "token abc123 and abc123 again, pw hunter22"
    assert redact(text, ["abc123", "hunter22", ""]) == f"token {MASK} and {MASK} again, pw {MASK}"
    assert redact(text, ["hunter22"], "***").endswith("pw ***")
