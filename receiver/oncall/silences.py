"""Silences in Alertmanager through its v2 API (`POST /api/v2/silences`,
`DELETE /api/v2/silence/{id}`), tried on each of ALERTMANAGER_URLS in turn: an HA pair gossips
a silence to its peers, so the first one that takes it is enough."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from receiver.safety import mask_url

TIMEOUT = 5.0


class SilenceError(Exception):
    """No Alertmanager took the request; the message names each one (URLs masked)."""


@dataclass(frozen=True)
class Silence:
    id: str
    url: str  # the Alertmanager that took it (masked when shown)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Silences:
    def __init__(self, http: httpx.AsyncClient, urls: Sequence[str]) -> None:
        self.http = http
        self.urls = [u.rstrip("/") for u in urls if u.strip()]

    async def create(
        self,
        labels: Mapping[str, str],
        starts: datetime,
        ends: datetime,
        created_by: str,
        comment: str,
    ) -> Silence:
        """One equality matcher per label; `SilenceError` if no Alertmanager accepted it."""
        body = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in sorted(labels.items())
            ],
            "startsAt": _iso(starts),
            "endsAt": _iso(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        problems: list[str] = []
        for url in self.urls:
            try:
                resp = await self.http.post(f"{url}/api/v2/silences", json=body, timeout=TIMEOUT)
            except httpx.HTTPError as err:
                problems.append(f"{mask_url(url)}: {type(err).__name__}")
                continue
            if resp.status_code == 200:
                silence_id = resp.json().get("silenceID", "")
                if isinstance(silence_id, str) and silence_id:
                    return Silence(silence_id, url)
            problems.append(f"{mask_url(url)}: HTTP {resp.status_code} {resp.text[:200]!r}")
        raise SilenceError("; ".join(problems) or "no Alertmanager configured")

    async def expire(self, silence_id: str) -> None:
        """Expire the silence; an Alertmanager that no longer knows it (404) counts as done."""
        problems: list[str] = []
        for url in self.urls:
            try:
                resp = await self.http.delete(f"{url}/api/v2/silence/{silence_id}", timeout=TIMEOUT)
            except httpx.HTTPError as err:
                problems.append(f"{mask_url(url)}: {type(err).__name__}")
                continue
            if resp.status_code in (200, 404):
                return
            problems.append(f"{mask_url(url)}: HTTP {resp.status_code} {resp.text[:200]!r}")
        raise SilenceError("; ".join(problems) or "no Alertmanager configured")
