"""The embedded store: an nx-27017 child process on a free loopback port, data under a dir.

Used when MONGO_URI is unset (by `make run` and by the tests): the same pymongo + Beanie code
path as a real MongoDB, over real TCP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from receiver.ports import free_port

log = logging.getLogger(__name__)


class EmbeddedStoreError(RuntimeError):
    """The embedded server did not start; the message carries its log tail."""


async def _answers(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


class EmbeddedStore:
    """Start on `__aenter__`, stop on `__aexit__`; `uri` points at it while running."""

    def __init__(self, data_dir: Path, start_timeout: float = 20.0) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nx-27017.log"

    def _argv(self) -> list[str]:
        """Prepare the data dir and a port; the command line that runs the server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.data_dir / "nx-27017.pid"
        # A pid file left by a crashed run would make nx-27017 refuse to start.
        pid_file.unlink(missing_ok=True)
        # keep the port across a restart so connected clients find the server again
        self.port = self.port or free_port()
        return [
            sys.executable,
            "-P",  # never import a `receiver` folder from the working directory
            "-m",
            "receiver.store.nx_launch",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir.resolve()),
            "--log-file",
            str(self.log_path.resolve()),
            "--pid-file",
            str(pid_file.resolve()),
        ]

    async def start(self) -> None:
        argv = self._argv()
        with self.log_path.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=out, start_new_session=True
            )
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if self._proc.returncode is not None:
                break
            if await _answers(self.port):
                log.info(
                    "embedded store listening on 127.0.0.1:%d (data %s)", self.port, self.data_dir
                )
                return
            await asyncio.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() else ""
        await self.stop()
        raise EmbeddedStoreError(
            f"embedded store (nx-27017) did not answer on 127.0.0.1:{self.port} "
            f"within {self.start_timeout}s; log {self.log_path}:\n{tail}"
        )

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> EmbeddedStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _answers_now(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def embedded_process(data_dir: Path, start_timeout: float = 20.0) -> Iterator[str]:
    """The embedded server for processes that share it (`receiver serve --workers N`,
    `--reload`): started without an event loop by the parent, its URI yielded, stopped on exit."""
    store = EmbeddedStore(data_dir, start_timeout)
    argv = store._argv()
    with store.log_path.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not _answers_now(store.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = store.log_path.read_text(errors="replace")[-1500:]
                raise EmbeddedStoreError(
                    f"embedded store (nx-27017) did not answer on 127.0.0.1:{store.port} "
                    f"within {start_timeout}s; log {store.log_path}:\n{tail}"
                )
            time.sleep(0.05)
        log.info("embedded store listening on 127.0.0.1:%d (data %s)", store.port, data_dir)
        yield store.uri
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
