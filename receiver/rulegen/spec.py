"""Rule specs (`rules/specs/*.yml`) as pydantic models, and the values generated tests feed.

Field-level checks live here (durations, names, templates, PromQL brackets); checks between
fields and between files are in `receiver.rulegen.load`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from receiver.durations import format_duration, parse_duration
from receiver.rulegen import templates

Severity = Literal["critical", "high", "medium", "low"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]

# Labels the generator sets from dedicated spec fields; a rule's free-form `labels` may not.
RESERVED_LABELS = ("alertname", "family", "metric", "owner", "severity", "team")

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_ALERT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
STEM = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_URL = re.compile(r"^https?://\S+$")
_SEED_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _duration(value: str) -> str:
    return format_duration(parse_duration(value))


def _metric_name(value: str) -> str:
    if not _METRIC.match(value):
        raise ValueError(f"invalid metric name {value!r} (letters, digits, '_' and ':')")
    return value


def _alert_name(value: str) -> str:
    if not _ALERT.match(value):
        raise ValueError(
            f"invalid alert name {value!r} (letters, digits and '_', e.g. HighCPUUsage)"
        )
    return value


def _label_name(value: str) -> str:
    if not _LABEL.match(value) or value.startswith("__"):
        raise ValueError(f"invalid label name {value!r} (letters, digits and '_', not '__...')")
    return value


def _seed_metric(value: str) -> str:
    if not _SEED_METRIC.match(value):
        raise ValueError(
            f"invalid metric label {value!r} (lower-case letters, digits and '_', e.g. cpu_usage)"
        )
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _template(value: str) -> str:
    _non_empty(value)
    templates.parse_template(value)
    return value.strip()


def _url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


def _promql(value: str) -> str:
    """Cheap structural check: non-empty, brackets balanced outside string literals."""
    text = _non_empty(value)
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'`":
            quote = char
        elif char in _PAIRS:
            stack.append(_PAIRS[char])
        elif char in _PAIRS.values() and (not stack or stack.pop() != char):
            raise ValueError(f"unbalanced {char!r} in PromQL expression")
    if quote is not None:
        raise ValueError("unterminated string literal in PromQL expression")
    if stack:
        raise ValueError(f"unclosed bracket in PromQL expression (expected {stack[-1]!r})")
    return text


Duration = Annotated[str, AfterValidator(_duration)]
MetricName = Annotated[str, AfterValidator(_metric_name)]
AlertName = Annotated[str, AfterValidator(_alert_name)]
LabelName = Annotated[str, AfterValidator(_label_name)]
NonEmpty = Annotated[str, AfterValidator(_non_empty)]
Template = Annotated[str, AfterValidator(_template)]
SeedMetric = Annotated[str, AfterValidator(_seed_metric)]
Url = Annotated[str, AfterValidator(_url)]
PromQL = Annotated[str, AfterValidator(_promql)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSeries(_Model):
    """One promtool input series: a `series` selector and `values` in promtool's notation."""

    series: NonEmpty
    values: NonEmpty


class ExpectedSample(_Model):
    labels: dict[LabelName, str] = Field(default_factory=dict)
    value: FiniteFloat


class RecordingExample(_Model):
    """Given `input_series`, the recorded series at `eval_time` is exactly `expect`."""

    interval: Duration = "1m"
    input_series: list[InputSeries] = Field(min_length=1)
    eval_time: Duration
    expect: list[ExpectedSample]


class RecordingRule(_Model):
    record: MetricName
    expr: PromQL
    labels: dict[LabelName, str] = Field(default_factory=dict)
    examples: list[RecordingExample] = Field(default_factory=list)


class ZScoreBaseline(_Model):
    """Mean, standard deviation and z-score of `series` over `window` (GitLab-style)."""

    series: MetricName
    window: Duration = "1w"

    @property
    def avg_record(self) -> str:
        return f"{self.series}:avg_over_time_{self.window}"

    @property
    def stddev_record(self) -> str:
        return f"{self.series}:stddev_over_time_{self.window}"

    @property
    def zscore_record(self) -> str:
        return f"{self.series}:z_score_{self.window}"


class ThresholdTest(_Model):
    """What the generated promtool test feeds: `metric{labels}` at `quiet`, then at `firing`."""

    metric: MetricName | None = None
    labels: dict[LabelName, str] | None = None
    quiet: FiniteFloat | None = None
    firing: FiniteFloat | None = None


class ThresholdRule(_Model):
    name: AlertName
    metric: MetricName | None = None
    expr: PromQL | None = None
    # the alert's `metric` label: the short name /anomalies, emails and Slack show
    metric_label: SeedMetric | None = None
    op: Op
    threshold: FiniteFloat
    for_: Duration = Field(alias="for")
    severity: Severity
    family: NonEmpty | None = None
    summary: Template
    description: Template
    runbook_url: Url
    team: NonEmpty | None = None
    owner: NonEmpty | None = None
    labels: dict[LabelName, str] = Field(default_factory=dict)
    test: ThresholdTest | None = None

    @property
    def subject(self) -> str:
        """The left-hand side of the comparison."""
        if self.metric is not None:
            return self.metric
        return f"({self.expr})"

    @property
    def metric_name(self) -> str:
        """`metric_label`, else the series' name: a recorded one's middle part
        (`instance:cpu_usage:percent` → `cpu_usage`), a raw one as it is; an `expr` rule's
        series is the one its test drives."""
        if self.metric_label is not None:
            return self.metric_label
        series = self.metric or (self.test.metric if self.test is not None else None) or ""
        parts = series.split(":")
        return parts[1] if len(parts) == 3 and parts[1] else series

    @property
    def family_label(self) -> str:
        return self.family if self.family is not None else self.name


class SpecFile(_Model):
    """One `rules/specs/<name>.yml`: becomes group `<name>` (and `<name>-zscore`)."""

    description: str = ""
    team: NonEmpty
    owner: NonEmpty
    interval: Duration = "1m"
    zscore_interval: Duration = "5m"
    recording: list[RecordingRule] = Field(default_factory=list)
    zscore: list[ZScoreBaseline] = Field(default_factory=list)
    thresholds: list[ThresholdRule] = Field(default_factory=list)


@dataclass(frozen=True)
class Spec:
    name: str  # file stem: the group name and the generated file's name
    display: str  # path as shown in messages and headers (relative to the root when possible)
    model: SpecFile


@dataclass(frozen=True)
class RuleSet:
    specs: tuple[Spec, ...]

    @property
    def recorded(self) -> dict[str, RecordingRule]:
        """Every recording rule by the series name it records."""
        return {r.record: r for s in self.specs for r in s.model.recording}

    def thresholds(self) -> Iterator[tuple[Spec, ThresholdRule]]:
        for spec in self.specs:
            for rule in spec.model.thresholds:
                yield spec, rule


# -- test values -------------------------------------------------------------------------------


def holds(op: str, value: float, threshold: float) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
        "==": value == threshold,
        "!=": value != threshold,
    }[op]


def probe_values(rule: ThresholdRule) -> tuple[float, float]:
    """(quiet, firing) values for the generated test: the boundary itself on the quiet side of
    strict comparisons, and a step of 10 % of the threshold (at least 1) across it."""
    t = rule.threshold
    step = max(abs(t) * 0.1, 1.0)
    quiet, firing = {
        ">": (t, t + step),
        ">=": (t - step, t),
        "<": (t, t - step),
        "<=": (t + step, t),
        "==": (t + step, t),
        "!=": (t, t + step),
    }[rule.op]
    if rule.test is not None:
        quiet = rule.test.quiet if rule.test.quiet is not None else quiet
        firing = rule.test.firing if rule.test.firing is not None else firing
    return quiet, firing


def probe_series(rule: ThresholdRule) -> tuple[str, dict[str, str]]:
    """The metric name and labels the generated test drives for `rule`."""
    test = rule.test or ThresholdTest()
    metric = test.metric or rule.metric or ""
    if test.labels is not None:
        return metric, dict(sorted(test.labels.items()))
    labels = {"instance": "test-host:9100", "job": "test-job"}
    for name in template_labels(rule):
        labels.setdefault(name, f"test-{name}")
    return metric, dict(sorted(labels.items()))


def template_labels(rule: ThresholdRule) -> list[str]:
    return sorted(
        set(templates.labels_used(rule.summary)) | set(templates.labels_used(rule.description))
    )
