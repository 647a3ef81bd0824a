"""What a notification says about an incident, before any channel's syntax: the headline
signal, the facts table and the links (each one passed through `safe_url`). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from receiver.domain import Analysis, IncidentView, Signal, Source, Status
from receiver.oncall.matchers import silence_link
from receiver.safety import safe_url


@dataclass(frozen=True)
class RenderOptions:
    """Links and identifiers that come from settings, not from the incident."""

    public_url: str = ""  # this service's base URL, for the console and API links
    incident_path: str = "/api/v1/incidents/{id}"  # appended to public_url; {id} = incident id
    console_path: str = "/ui/incidents/{id}"  # the incident's console page; "" = no link
    link: str = ""  # an explicit API link (a digest's query); wins over incident_path
    thread_domain: str = "ai-devops-monitor"  # right-hand side of the email thread id


@dataclass(frozen=True)
class Facts:
    metric: str
    instance: str
    value: str
    reason: str
    severity: str
    status: str
    started: str
    alerts: int


@dataclass(frozen=True)
class Links:
    prometheus: str
    alertmanager: str
    api: str
    runbook: str
    console: str = ""
    dashboard: str = ""  # Grafana: the alert's dashboard (or panel)
    # a silence form: Grafana's own for the alert, else Alertmanager's for the group (firing)
    silence: str = ""
    sender: str = "Alertmanager"  # what `alertmanager` (the externalURL) links to


def primary(incident: IncidentView) -> Signal | None:
    """The signal the headline describes: firing before resolved, then most severe, earliest."""
    if not incident.signals:
        return None
    return min(
        incident.signals,
        key=lambda s: (s.status is not Status.FIRING, -s.severity.rank, s.starts_at),
    )


def name(incident: IncidentView, first: Signal | None) -> str:
    if first is not None and (first.metric or first.alertname):
        return first.metric or first.alertname
    return incident.title or (incident.alertnames[0] if incident.alertnames else incident.key)


def group_phrase(incident: IncidentView) -> str:
    """`group k=v, ...` from the group labels; else the title (a digest says "12 groups")."""
    if incident.group_labels:
        return "group " + ", ".join(f"{k}={v}" for k, v in sorted(incident.group_labels.items()))
    return incident.title or f"group {incident.key}"


def fmt_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6g}"


def facts(incident: IncidentView, first: Signal | None) -> Facts:
    instance = first.instance if first is not None else ""
    if not instance and incident.instances:
        instance = ", ".join(incident.instances[:5])
    reason = ""
    if first is not None:
        reason = (
            first.reason
            or first.annotations.get("summary", "")
            or first.annotations.get("description", "")
        )
    return Facts(
        metric=name(incident, first),
        instance=instance or "n/a",
        value=fmt_value(first.value if first is not None else None),
        reason=reason,
        severity=incident.severity.value,
        status=incident.status.value,
        started=incident.started_at.isoformat(timespec="seconds"),
        alerts=len(incident.signals),
    )


def api_link(incident: IncidentView, opts: RenderOptions) -> str:
    if opts.link:
        return safe_url(opts.link)
    return service_link(incident, opts, opts.incident_path)


def service_link(incident: IncidentView, opts: RenderOptions, path: str) -> str:
    """`public_url` + `path` for the incident; "" without a base URL or a path."""
    if not opts.public_url or not path:
        return ""
    return safe_url(opts.public_url.rstrip("/") + path.format(id=incident.id))


_SENDER_NAMES = {Source.GRAFANA: "Grafana", Source.ONCALL: "OnCall"}


def _silence(incident: IncidentView, first: Signal | None) -> str:
    """Grafana's own silence form for the alert, else Alertmanager's for a firing group."""
    grafana = safe_url(first.links.get("silence", "")) if first else ""
    if grafana:
        return grafana
    if incident.source is Source.ALERTMANAGER and incident.status is Status.FIRING:
        return safe_url(silence_link(incident.external_url, incident.group_labels))
    return ""


def links(incident: IncidentView, first: Signal | None, api: str, console: str) -> Links:
    return Links(
        prometheus=safe_url(first.generator_url) if first is not None else "",
        alertmanager=safe_url(incident.external_url),
        api=api,
        runbook=safe_url(first.annotations.get("runbook_url", "")) if first else "",
        console=console,
        dashboard=safe_url(first.links.get("dashboard") or first.links.get("panel", ""))
        if first
        else "",
        silence=_silence(incident, first),
        sender=_SENDER_NAMES.get(incident.source, "Alertmanager"),
    )


def link_pairs(links: Links) -> list[tuple[str, str]]:
    """(label, url) of every link there is, in the order every channel shows them."""
    pairs = [
        ("Console", links.console),
        ("Silence", links.silence),
        ("Prometheus", links.prometheus),
        (links.sender, links.alertmanager),
        ("Dashboard", links.dashboard),
        ("Runbook", links.runbook),
        ("Incident API", links.api),
    ]
    return [(label, url) for label, url in pairs if url]


def analysis_label(analysis: Analysis) -> str:
    if analysis.offline:
        return "Evidence summary (offline analyst, no LLM)"
    return f"Analysis ({analysis.provider}, confidence {analysis.confidence:.0%})"
