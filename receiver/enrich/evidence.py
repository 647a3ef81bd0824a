"""Evidence items an analysis may cite, and the text hygiene that keeps untrusted text inert.

Labels, annotations and generator URLs come from whoever can push alerts, so every string taken
from them is cleaned (control and format characters removed, prompt delimiters defused) and
length-capped before it enters an `EvidenceItem`. A bundle has a total size bound; items added
after the budget is spent are counted, not kept.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from receiver.detect.promql import generator_expression
from receiver.domain import IncidentView, Signal, Status

EvidenceKind = Literal[
    "alert",
    "expression",
    "sibling",
    "group",
    "detector",
    "history",
    "note",
    "candidate",  # a ranked series that could explain the alert (enrich/timeline.py)
    "timeline",  # what the candidate search covered and how the candidates were ranked
]

TITLE_LIMIT = 200
TEXT_LIMIT = 2_000
VALUE_LIMIT = 300  # one label or annotation value
ANNOTATION_LIMIT = 1_000  # descriptions are longer than label values
MAX_LABELS = 40
BUNDLE_LIMIT = 16_000  # characters of title + text over all items (~4k tokens)
MIN_USEFUL_TEXT = 120  # below this a truncated item is noise; drop it instead

# The prompt wraps evidence between markers built from these; untrusted text may not contain them.
DELIMITER_OPEN = "<<<"
DELIMITER_CLOSE = ">>>"

_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r"[ \t]+")


def clean_text(raw: str, limit: int, *, multiline: bool = True) -> str:
    """Remove control/format characters, defuse prompt delimiters, and cap the length.

    Newlines survive only when `multiline` (descriptions); label values become one line.
    """
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for ch in text:
        if ch == "\n":
            out.append("\n" if multiline else " ")
            continue
        if ch == "\t":
            out.append(" ")
            continue
        category = unicodedata.category(ch)
        if category in ("Zl", "Zp"):
            out.append("\n" if multiline else " ")
        elif category[0] == "C":
            # Cc control, Cf format (zero-width, bidi overrides), Cs/Co/Cn: never meaningful here.
            continue
        else:
            out.append(ch)
    text = "".join(out)
    text = text.replace(DELIMITER_OPEN, "\u2039\u2039\u2039").replace(
        DELIMITER_CLOSE, "\u203a\u203a\u203a"
    )
    text = _SPACE_RUNS.sub(" ", text)
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    return truncate(text, limit)


def truncate(text: str, limit: int) -> str:
    """Cap `text` at `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    marker = f" …[+{len(text) - limit} chars]"
    keep = max(limit - len(marker), 0)
    return text[:keep] + marker


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def clean_mapping(
    raw: Mapping[str, str], *, value_limit: int = VALUE_LIMIT, multiline: bool = False
) -> dict[str, str]:
    """Clean keys and values of a label/annotation map, keeping at most `MAX_LABELS` entries."""
    cleaned: dict[str, str] = {}
    for key in sorted(raw)[:MAX_LABELS]:
        name = clean_text(key, 100, multiline=False)
        if name:
            cleaned[name] = clean_text(raw[key], value_limit, multiline=multiline)
    return cleaned


def format_mapping(values: Mapping[str, str]) -> str:
    """One `key="value"` per line; values are JSON-quoted so they cannot fake another line."""
    return "\n".join(f"{k}={_q(v)}" for k, v in values.items())


class EvidenceItem(BaseModel):
    """One piece of evidence; `id` ("E1", "E2", …) is what hypotheses cite.

    `text` is what the model sees; `data` is structured detail for the offline analyst and the
    UI and is not sent to the model.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    kind: EvidenceKind
    title: str
    text: str
    data: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return len(self.title) + len(self.text)


class EvidenceBundle(BaseModel):
    """Evidence for one incident, in the order it was gathered, under a total size bound."""

    max_chars: int = Field(default=BUNDLE_LIMIT, gt=0)
    items: list[EvidenceItem] = Field(default_factory=list)
    omitted: int = 0  # items that did not fit the budget
    queries: int = 0  # Prometheus requests made to gather it
    seconds: float = 0.0  # time spent gathering it

    @property
    def size(self) -> int:
        return sum(item.size for item in self.items)

    @property
    def ids(self) -> set[str]:
        return {item.id for item in self.items}

    def get(self, item_id: str) -> EvidenceItem | None:
        return next((item for item in self.items if item.id == item_id), None)

    def of_kind(self, *kinds: EvidenceKind) -> list[EvidenceItem]:
        return [item for item in self.items if item.kind in kinds]

    def add(
        self,
        kind: EvidenceKind,
        title: str,
        text: str,
        data: Mapping[str, Any] | None = None,
    ) -> EvidenceItem | None:
        """Append an item (title and text are cleaned and capped); None when over budget.

        Callers pass text they built from untrusted values already cleaned with `clean_text`;
        the item is cleaned again as a whole, which is idempotent.
        """
        title = clean_text(title, TITLE_LIMIT, multiline=False)
        text = clean_text(text, TEXT_LIMIT)
        room = self.max_chars - self.size - len(title)
        if room < min(MIN_USEFUL_TEXT, len(text)):
            self.omitted += 1
            return None
        item = EvidenceItem(
            id=f"E{len(self.items) + 1}",
            kind=kind,
            title=title,
            text=truncate(text, room),
            data=dict(data) if data is not None else None,
        )
        self.items.append(item)
        return item

    def for_prompt(self) -> list[dict[str, str]]:
        """The items as the model sees them (no `data`)."""
        return [
            {"id": item.id, "kind": item.kind, "title": item.title, "text": item.text}
            for item in self.items
        ]


def _ordered(signals: Iterable[Signal]) -> list[Signal]:
    """Firing before resolved, most severe first, oldest first: the first is the 'primary'."""
    return sorted(
        signals,
        key=lambda s: (s.status != Status.FIRING, -s.severity.rank, s.starts_at, s.fingerprint),
    )


def primary_signal(incident: IncidentView) -> Signal | None:
    """The signal the evidence is about first (E1): most severe firing, oldest."""
    signals = _ordered(incident.signals)
    return signals[0] if signals else None


def _value(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}"


def _alert_text(signal: Signal) -> str:
    labels = clean_mapping(signal.labels)
    lines = [
        f"alertname: {_q(clean_text(signal.alertname, VALUE_LIMIT, multiline=False))}",
        f"status: {signal.status.value} (started {signal.starts_at.isoformat()}"
        + (f", ended {signal.ends_at.isoformat()})" if signal.ends_at else ")"),
        f"severity: {signal.severity.value}",
        f"instance: {_q(clean_text(signal.instance, VALUE_LIMIT, multiline=False))}",
        f"value: {_value(signal.value)}",
    ]
    if signal.metric:
        lines.append(f"metric: {_q(clean_text(signal.metric, VALUE_LIMIT))}")
    if signal.reason:
        lines.append(f"reason: {_q(clean_text(signal.reason, VALUE_LIMIT))}")
    lines.append("labels:")
    lines.append(format_mapping(labels))
    return "\n".join(lines)


def _alert_data(signal: Signal) -> dict[str, Any]:
    return {
        "alertname": clean_text(signal.alertname, VALUE_LIMIT, multiline=False),
        "instance": clean_text(signal.instance, VALUE_LIMIT, multiline=False),
        "status": signal.status.value,
        "severity": signal.severity.value,
        "value": signal.value,
        "metric": clean_text(signal.metric, VALUE_LIMIT, multiline=False),
        "starts_at": signal.starts_at.isoformat(),
        "fingerprint": clean_text(signal.fingerprint, 64, multiline=False),
    }


def _short(signal: Signal) -> str:
    name = clean_text(signal.alertname or "alert", 80, multiline=False)
    instance = clean_text(signal.instance, 80, multiline=False)
    return f"{name} on {instance}" if instance else name


def _detector_text(signal: Signal) -> str:
    det = signal.detector
    assert det is not None
    lines = [
        f"method: {clean_text(det.method, 80, multiline=False)}",
        f"score: {det.score:g} (threshold {det.threshold:g})",
        f"value: {det.value:g}",
    ]
    if det.baseline is not None:
        lines.append(f"baseline: {det.baseline:g}")
    if det.band_low is not None or det.band_high is not None:
        lines.append(f"normal band: [{_value(det.band_low)}, {_value(det.band_high)}]")
    if det.expected is not None:
        period = f" (period {det.period_seconds:g}s)" if det.period_seconds else ""
        lines.append(f"seasonal expectation: {det.expected:g}{period}")
    if det.onset is not None:
        lines.append(f"onset: {clean_text(det.onset, 40, multiline=False)}")
    if det.query:
        lines.append(f"query: {clean_text(det.query, 500, multiline=False)}")
    if det.target:
        lines.append(f"target: {clean_text(det.target, 200, multiline=False)}")
    return "\n".join(lines)


def evidence_from_incident(
    incident: IncidentView,
    bundle: EvidenceBundle | None = None,
    *,
    max_group_items: int = 15,
) -> EvidenceBundle:
    """Add the deterministic evidence an incident carries itself to `bundle` (or a new one).

    Primary signal: the alert (E1), its annotations, its expression from generatorURL, its
    detector result. Other signals: one `group` item each, up to `max_group_items`, then one
    item counting the rest. PromQL evidence (siblings, range queries, history) is added by the
    caller afterwards with `bundle.add`.
    """
    bundle = bundle if bundle is not None else EvidenceBundle()
    signals = _ordered(incident.signals)
    if not signals:
        return bundle
    primary, others = signals[0], signals[1:]

    bundle.add("alert", f"alert {_short(primary)}", _alert_text(primary), _alert_data(primary))
    if primary.annotations:
        annotations = clean_mapping(
            primary.annotations, value_limit=ANNOTATION_LIMIT, multiline=True
        )
        bundle.add(
            "alert",
            f"annotations of {_short(primary)}",
            format_mapping(annotations),
            {"annotations": annotations},
        )
    found = generator_expression(primary.generator_url)
    if found.expr:
        expr = clean_text(found.expr, TEXT_LIMIT)
        bundle.add("expression", f"alert expression of {_short(primary)}", expr, {"expr": expr})
    elif found.problem:
        bundle.add(
            "note",
            f"the generatorURL expression of {_short(primary)} was not used",
            f"{found.problem}; no query was run with it.",
            {"generator_expression": "refused", "problem": found.problem},
        )
    if primary.detector is not None:
        det = primary.detector
        bundle.add(
            "detector",
            f"detector result for {_short(primary)}",
            _detector_text(primary),
            det.model_dump(mode="json"),
        )

    for signal in others[:max_group_items]:
        text = _alert_text(signal)
        summary = signal.annotations.get("summary") or signal.annotations.get("description")
        if summary:
            text += f"\nsummary: {_q(clean_text(summary, VALUE_LIMIT))}"
        if signal.detector is not None:
            text += "\n" + _detector_text(signal)
        bundle.add(
            "group", f"other alert in the group: {_short(signal)}", text, _alert_data(signal)
        )
    rest = others[max_group_items:]
    if rest:
        names = sorted({_short(s) for s in rest})
        bundle.add(
            "group",
            f"{len(rest)} more alerts in the group",
            "\n".join(names[:50]),
            {"count": len(rest)},
        )
    return bundle
