"""Headless Chromium (Debian `chromium`) driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` speaks CDP as NUL-terminated JSON on fds 3 (commands in) and 4
(events and replies out), so no websocket library is needed. Every network request the page
makes is logged (`Network.requestWillBeSent`), which is how tests prove a page loads nothing
from outside loopback. The calls block: from async tests, run them with `asyncio.to_thread`
(the service under test shares the test's event loop).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def is_local(url: str) -> bool:
    """True for loopback http(s) URLs and for URLs that never touch the network."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    return parts.scheme in ("http", "https") and (host in LOOPBACK_HOSTS or host.startswith("127."))


@dataclass
class PageLoad:
    url: str
    status: int | None
    html: str
    requests: list[str] = field(default_factory=list)


def _high_fd(fd: int) -> int:
    """Move `fd` above the range the child's dup2 to 3 and 4 could clobber."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
    os.close(fd)
    return moved


class Browser:
    """One Chromium process with one page; `open(url)` loads a URL and returns what it did."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900) -> None:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        to_child_r, to_child_w = (_high_fd(fd) for fd in os.pipe())
        from_child_r, from_child_w = (_high_fd(fd) for fd in os.pipe())

        def child_fds() -> None:
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self._log = (profile.parent / f"{profile.name}.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_fds,  # maps our pipe ends to fds 3 and 4 in the child
            close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = os.fdopen(to_child_w, "wb", buffering=0)
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)
        self.call("Network.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # -- protocol ---------------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._replies.get(message["id"])
                    if waiting is not None:
                        waiting.put(message)
                else:
                    self._events.put(message)

    def call(
        self, method: str, *, session: bool = False, timeout: float = 30.0, **params: Any
    ) -> Any:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            reply: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[ident] = reply
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        try:
            answer = reply.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer to {method} within {timeout}s") from None
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._events.get_nowait()

    # -- what tests use ---------------------------------------------------------------------

    def open(self, url: str, timeout: float = 30.0) -> PageLoad:
        """Navigate, wait for the load event and a quiet network, return DOM and requests."""
        self._drain()
        frame = self.call("Page.navigate", session=True, url=url)
        if frame.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {frame['errorText']}")
        return self._settle(timeout)

    def act(self, expression: str, timeout: float = 30.0) -> PageLoad:
        """Run a script that navigates (submits a form, clicks a link); wait like `open`."""
        self._drain()
        self.evaluate(expression)
        return self._settle(timeout)

    def _settle(self, timeout: float) -> PageLoad:
        requests: list[str] = []
        status: int | None = None
        deadline = time.monotonic() + timeout
        loaded = False
        quiet_since = time.monotonic()
        pending: set[str] = set()
        while time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                if loaded and not pending and time.monotonic() - quiet_since > 0.5:
                    break
                continue
            method = event.get("method", "")
            params = event.get("params", {})
            if method == "Network.requestWillBeSent":
                requests.append(params["request"]["url"])
                pending.add(params["requestId"])
            elif method in ("Network.loadingFinished", "Network.loadingFailed"):
                pending.discard(params.get("requestId", ""))
                quiet_since = time.monotonic()
            elif method == "Network.responseReceived" and params.get("type") == "Document":
                status = int(params["response"]["status"])
            elif method == "Page.loadEventFired":
                loaded = True
                quiet_since = time.monotonic()
        else:
            raise TimeoutError(f"the page did not finish loading within {timeout}s")
        url = str(self.evaluate("location.href"))
        return PageLoad(url=url, status=status, html=self.html(), requests=requests)

    def html(self) -> str:
        result = self.evaluate("document.documentElement.outerHTML")
        return str(result)

    def evaluate(self, expression: str) -> Any:
        answer = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def requests_during(self, seconds: float) -> list[str]:
        """URLs requested in the next `seconds` (after a click, say)."""
        deadline = time.monotonic() + seconds
        urls: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                break
            if event.get("method") == "Network.requestWillBeSent":
                urls.append(event["params"]["request"]["url"])
        return urls

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics", session=True)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 6000),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5.0)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
        self._reader.join(timeout=5)
        self._in.close()
        self._log.close()


@contextlib.contextmanager
def browser(workdir: Path, width: int = 1280, height: int = 900) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile under `workdir`; always stopped."""
    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    instance = Browser(profile, width, height)
    try:
        yield instance
    finally:
        instance.close()
