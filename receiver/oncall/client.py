"""`receiver incidents ...`: the on-call workflow from a terminal, in the style of amtool.

Talks to a running service over its API (RECEIVER_URL, RECEIVER_TOKEN, or --url/--token);
prints a table by default and the API's JSON with `-o json`; exits 1 with a one-line message
when the service refuses or cannot be reached, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 15.0


class ClientError(Exception):
    """The service refused the request or could not be reached; the message is one line."""


class IncidentsClient:
    def __init__(self, url: str, token: str | None, timeout: float = TIMEOUT) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ClientError(f"cannot reach {self.url}: {type(err).__name__}") from err
        if resp.status_code >= 400:
            try:
                body = resp.json()
                detail = body.get("detail") or body.get("error") or resp.text
            except ValueError:
                detail = resp.text
            raise ClientError(f"HTTP {resp.status_code}: {str(detail)[:300]}")
        return resp.json()

    def list(self, **params: str | int) -> Any:
        query = {k: v for k, v in params.items() if v not in ("", None)}
        return self._call("GET", "/api/v1/incidents", params=query)

    def show(self, incident_id: str) -> Any:
        return self._call("GET", f"/api/v1/incidents/{_safe(incident_id)}")

    def act(self, incident_id: str, action: str, body: dict[str, Any]) -> Any:
        return self._call("POST", f"/api/v1/incidents/{_safe(incident_id)}/{action}", json=body)

    def unsilence(self, incident_id: str) -> Any:
        return self._call("DELETE", f"/api/v1/incidents/{_safe(incident_id)}/silence")


def _safe(incident_id: str) -> str:
    if not incident_id.isalnum():
        raise ClientError(f"not an incident id: {incident_id[:40]!r}")
    return incident_id


# --- output -----------------------------------------------------------------------------------

COLUMNS = (
    ("ID", "id"),
    ("STATE", "state"),
    ("SEVERITY", "severity"),
    ("STARTED", "started_at"),
    ("ASSIGNEE", "assignee"),
    ("TITLE", "title"),
)


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    cells = [[_cell(r.get(key)) for _, key in COLUMNS] for r in rows]
    widths = [
        max([len(name), *(len(row[i]) for row in cells)]) for i, (name, _) in enumerate(COLUMNS)
    ]
    for line in ([name for name, _ in COLUMNS], *cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")


def details(incident: dict[str, Any], out: TextIO) -> None:
    fields = (
        "id",
        "title",
        "state",
        "status",
        "severity",
        "source",
        "started_at",
        "resolved_at",
        "resolved_by",
        "acked_by",
        "assignee",
        "closed_by",
        "silence_id",
        "silenced_until",
    )
    for name in fields:
        if incident.get(name) is not None:
            out.write(f"{name + ':':16}{_cell(incident[name], 200)}\n")
    labels = {**incident.get("common_labels", {}), **incident.get("group_labels", {})}
    if labels:
        shown = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        out.write(f"{'labels:':16}{_cell(shown, 200)}\n")
    history = incident.get("history") or []
    if history:
        out.write("history:\n")
        for h in history:
            who = h.get("author") or h.get("actor")
            text = f"  {_cell(h.get('text'), 200)}" if h.get("text") else ""
            out.write(f"  {h.get('at')}  {h.get('kind'):10} {who}{text}\n")


# --- the command ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiver incidents", description="Incidents from a running service."
    )
    parser.add_argument("--url", default=None, help=f"service URL (RECEIVER_URL, {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="API token (RECEIVER_TOKEN)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    author = os.environ.get("USER") or _user()
    parser.add_argument("--author", default=author, help="name recorded with an action ($USER)")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="list incidents, newest first")
    listing.add_argument("--filter", default="", help='matchers: service="x",severity=~"a|b"')
    listing.add_argument(
        "--state", default="", help="open, unacknowledged, acknowledged, resolved, closed"
    )
    listing.add_argument("--sort", default="", help="started (default), severity, updated")
    listing.add_argument("--limit", type=int, default=50)
    for name, text in (
        ("show", "one incident with its history"),
        ("ack", "acknowledge: you have it"),
        ("unack", "give it back"),
        ("unsilence", "expire its silence in Alertmanager"),
    ):
        sub.add_parser(name, help=text).add_argument("id")
    closing = sub.add_parser("close", help="resolve by hand")
    closing.add_argument("id")
    closing.add_argument("--comment", default="")
    assign = sub.add_parser("assign", help='assign to someone ("" to unassign)')
    assign.add_argument("id")
    assign.add_argument("assignee")
    note = sub.add_parser("note", help="add a note to the timeline")
    note.add_argument("id")
    note.add_argument("text")
    silence = sub.add_parser("silence", help="silence its group in Alertmanager")
    silence.add_argument("id")
    silence.add_argument("--duration", default="2h")
    silence.add_argument("--comment", default="")
    return parser


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _run(client: IncidentsClient, args: argparse.Namespace) -> Any:
    author = {"author": args.author} if args.author else {}
    if args.action == "list":
        return client.list(filter=args.filter, state=args.state, sort=args.sort, limit=args.limit)
    if args.action == "show":
        return client.show(args.id)
    if args.action == "unsilence":
        return client.unsilence(args.id)
    bodies: dict[str, dict[str, Any]] = {
        "ack": {},
        "unack": {},
        "close": {"comment": getattr(args, "comment", "")},
        "assign": {"assignee": getattr(args, "assignee", "")},
        "note": {"text": getattr(args, "text", "")},
        "silence": {
            "duration": getattr(args, "duration", ""),
            "comment": getattr(args, "comment", ""),
        },
    }
    path = "notes" if args.action == "note" else args.action
    return client.act(args.id, path, {**bodies[args.action], **author})


def main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(list(argv))
    url = args.url or os.environ.get("RECEIVER_URL") or DEFAULT_URL
    token = args.token or os.environ.get("RECEIVER_TOKEN") or None
    client = IncidentsClient(url, token)
    try:
        answer = _run(client, args)
    except ClientError as problem:
        err.write(f"receiver incidents {args.action}: {problem}\n")
        return 1
    finally:
        client.close()
    if args.output == "json":
        out.write(json.dumps(answer, indent=2, sort_keys=True) + "\n")
    elif args.action == "list":
        table(answer["incidents"], out)
        out.write(f"{len(answer['incidents'])} of {answer['total']}\n")
    else:
        details(answer, out)
    return 0
