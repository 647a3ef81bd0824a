"""The HTML body of an email, from the Jinja2 templates in `receiver/notify/templates`.

Autoescape is on and every printed value goes through `receiver.safety.html_escape` (control
characters stripped, quotes escaped), so labels, annotations and model output are text, never
markup; URLs reach `href` only after `safe_url` (in `receiver.notify.content`).
"""

from __future__ import annotations

from collections.abc import Sequence

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from receiver.domain import Analysis
from receiver.notify.content import Facts, Links, analysis_label, link_pairs
from receiver.safety import html_escape

CHART_WIDTH = 640  # CSS pixels: the chart is drawn at twice that for sharp screens


def _escaped(value: object) -> object:
    """Every `{{ value }}` escaped by our one escaping helper (markup the templates build is
    passed through as it is)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return Markup(html_escape(value))  # noqa: S704 - html_escape has just escaped it
    return value


# Immutable configuration, not state: built once at import like a compiled regex.
TEMPLATES = Environment(
    loader=PackageLoader("receiver.notify", "templates"),
    autoescape=True,
    finalize=_escaped,
    trim_blocks=True,
    lstrip_blocks=True,
)


def incident_html(
    title: str,
    facts: Facts,
    analysis: Analysis | None,
    links: Links,
    *,
    pending: bool,
    chart: str = "",
) -> str:
    """One incident's page: facts, the chart (`chart` = its attachment name), the analysis."""
    return TEMPLATES.get_template("incident.html").render(
        title=title,
        facts=facts,
        analysis=analysis,
        analysis_label=analysis_label(analysis) if analysis is not None else "",
        pending=pending,
        chart=chart,
        chart_width=CHART_WIDTH,
        links=link_pairs(links),
    )


def digest_html(title: str, intro: str, rows: Sequence[Sequence[str]], api_link: str) -> str:
    """A digest: the top alerts of a group as a table, and a link to all of them."""
    return TEMPLATES.get_template("digest.html").render(
        title=title, intro=intro, rows=rows, api_link=api_link
    )
