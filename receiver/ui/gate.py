"""The console's way through API access control, as ASGI middleware outside it.

A browser cannot add `Authorization: Bearer` to a page load, so when API tokens are configured
the console keeps the token in a cookie (HttpOnly, SameSite=Strict, set by the login form at
`/ui/login`) and this middleware copies it into the Authorization header of console requests
(`/ui/...`) and of the feedback and on-call action routes the console posts to. Access control
itself is unchanged: `receiver.api.access.AccessControl` still decides, with the same token.
The middleware serves the login form, logout and the stylesheet/script itself (they must work
before a login), with the same security headers the API adds. Without configured tokens it
only serves those files.
"""

from __future__ import annotations

import re
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.api.access import ApiTokens, bearer
from receiver.api.body import BodyTooLarge, read_limited
from receiver.api.throttle import client_address
from receiver.ratelimit import SlidingLimit
from receiver.settings import Settings
from receiver.ui.templating import TEMPLATES

COOKIE = "monitor_console"
COOKIE_MAX_AGE = 12 * 3600
MAX_FORM = 8 * 1024
STATIC_PREFIX = "/ui/static"
STATIC_DIR = Path(__file__).resolve().parent / "static"
# API routes the console's pages call with the login cookie (fetch, JSON bodies)
FEEDBACK = re.compile(r"/api/v1/incidents/[^/]+/(feedback|ack|unack|assign|notes|close|silence)")
_NEXT = re.compile(r"/ui(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(\?[^\s#]*)?")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
LOGIN_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def _console_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


def safe_next(raw: str | None) -> str:
    """Where to go after the login: a console path on this site, never another origin."""
    if raw and _NEXT.fullmatch(raw) and "//" not in raw and "\\" not in raw:
        return raw
    return "/ui"


def _cookie(header: bytes) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header.decode("latin-1"))
    except CookieError:  # a malformed Cookie header is just no cookie
        return None
    morsel = jar.get(COOKIE)
    return unquote(morsel.value) if morsel is not None and morsel.value else None


def cookie_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The console's token from the Cookie header(s), if any."""
    for name, value in headers:
        if name.lower() == b"cookie" and (token := _cookie(value)) is not None:
            return token
    return None


class ConsoleGate:
    """Login cookie → bearer header for console requests; login/logout/static served here."""

    def __init__(
        self, app: ASGIApp, settings: Settings, throttle: SlidingLimit | None = None
    ) -> None:
        self.app = app
        self.tokens = ApiTokens.from_settings(settings)
        self.static = StaticFiles(directory=STATIC_DIR)
        self.throttle = throttle or SlidingLimit(0)
        # behind a TLS proxy the request says http: PUBLIC_URL tells the scheme browsers use
        self.https = settings.public_url.lower().startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = str(scope.get("root_path", ""))
        if path.startswith(STATIC_PREFIX + "/"):
            static_scope = {**scope, "root_path": root + STATIC_PREFIX}
            await self.static(static_scope, receive, _with_headers(send, None))
            return
        if path == "/ui/login":
            await self.login(scope, receive, send)
            return
        if path == "/ui/logout":
            await self.logout(scope, receive, send)
            return
        if self.tokens.configured and (_console_path(path) or FEEDBACK.fullmatch(path)):
            headers: list[tuple[bytes, bytes]] = list(scope["headers"])
            if bearer(headers) is None:
                token = cookie_token(headers)
                address = client_address(scope)
                if token is not None and (wait := self.throttle.retry_after(address)):
                    await _too_many(wait)(scope, receive, _with_headers(send, None))
                    return
                valid = token is not None and self.tokens.scope_of(token) is not None
                if token is not None and not valid:
                    self.throttle.record(address)
                if token is not None and valid:
                    headers = [(k, v) for k, v in headers if k.lower() != b"authorization"]
                    headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
                    scope = {**scope, "headers": headers}
                elif _console_path(path) and scope["method"] in ("GET", "HEAD"):
                    query = scope.get("query_string", b"").decode("latin-1")
                    target = path + (f"?{query}" if query else "")
                    login = f"{root}/ui/login?{urlencode({'next': target})}"
                    response = RedirectResponse(login, status_code=303)
                    if token is not None:  # a stale cookie (token rotated): forget it
                        response.delete_cookie(COOKIE, path="/")
                    await response(scope, receive, _with_headers(send, None))
                    return
        await self.app(scope, receive, send)

    async def login(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        root = str(scope.get("root_path", ""))
        if not self.tokens.configured:
            response: Response = RedirectResponse(f"{root}/ui", status_code=303)
        elif request.method == "POST":
            response = await self._check(request, root)
        elif request.method in ("GET", "HEAD"):
            response = _login_page(root, safe_next(request.query_params.get("next")), False)
        else:
            response = Response("method not allowed", status_code=405, media_type="text/plain")
        await response(scope, receive, _with_headers(send, LOGIN_CSP))

    async def _check(self, request: Request, root: str) -> Response:
        try:
            body = await read_limited(request, MAX_FORM)
        except BodyTooLarge as err:
            return Response(
                f"login form too large: {err}", status_code=413, media_type="text/plain"
            )
        address = client_address(request.scope)
        if wait := self.throttle.retry_after(address):
            return _too_many(wait)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        token = (form.get("token") or [""])[0].strip()
        target = safe_next(form.get("next", [""])[0])
        if not token or self.tokens.scope_of(token) is None:
            self.throttle.record(address)
            return _login_page(root, target, True, status_code=401)
        response = RedirectResponse(root + target, status_code=303)
        response.set_cookie(
            COOKIE,
            quote(token, safe=""),
            max_age=COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.https or request.url.scheme == "https",
        )
        return response

    async def logout(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = str(scope.get("root_path", ""))
        if scope["method"] != "POST":
            response = Response("use POST", status_code=405, media_type="text/plain")
        else:
            response = RedirectResponse(f"{root}/ui/login", status_code=303)
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        await response(scope, receive, _with_headers(send, LOGIN_CSP))


def _too_many(wait: int) -> Response:
    return Response(
        f"too many failed logins from this address; try again in {wait} s",
        status_code=429,
        media_type="text/plain",
        headers={"Retry-After": str(wait)},
    )


def _login_page(root: str, target: str, failed: bool, status_code: int = 200) -> Response:
    body = TEMPLATES.get_template("login.html").render(
        base=root, auth_on=False, next=target, failed=failed
    )
    return Response(body, status_code=status_code, media_type="text/html; charset=utf-8")


def _with_headers(send: Send, csp: str | None) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
            headers.setdefault("Content-Security-Policy", csp or "default-src 'none'")
            if csp:
                headers.setdefault("Cache-Control", "no-store")
        await send(message)

    return wrapped
