"""Spec validation: every bad spec fails with one exact line naming file, rule and field."""

from __future__ import annotations

import shutil
import typing
from pathlib import Path

import pytest

from receiver.domain import Severity
from receiver.durations import format_duration, parse_duration
from receiver.rulegen.cli import main
from receiver.rulegen.load import load_specs
from receiver.rulegen.spec import Severity as SpecSeverity
from receiver.rulegen.spec import ThresholdRule
from tests.rulegen.helpers import DATA, REPO

BAD = DATA / "bad"

EXPECTED = {
    "bad_alert_name.yml": 'rules/specs/bad_alert_name.yml: rule "High CPU usage": field "name": '
    "invalid alert name 'High CPU usage' (letters, digits and '_', e.g. HighCPUUsage)",
    "bad_duration.yml": 'rules/specs/bad_duration.yml: rule "HighCPUUsage": field "for": '
    "invalid Prometheus duration '5 minutes' (e.g. 30s, 5m, 1h30m, 1w; units y w d h m s ms)",
    "bad_severity.yml": 'rules/specs/bad_severity.yml: rule "HighCPUUsage": field "severity": '
    "Input should be 'critical', 'high', 'medium' or 'low'",
    "duplicate_key.yml": "rules/specs/duplicate_key.yml: invalid YAML at line 8, column 5: "
    "duplicate key 'threshold'",
    "expr_without_test.yml": 'rules/specs/expr_without_test.yml: rule "HighCPUUsage": '
    'field "test.metric": is required with "expr": name the series the test drives',
    "firing_value_below_threshold.yml": "rules/specs/firing_value_below_threshold.yml: "
    'rule "HighCPUUsage": field "test.firing": 70 does not satisfy > 80',
    "metric_and_expr.yml": 'rules/specs/metric_and_expr.yml: rule "HighCPUUsage": '
    'field "metric": give exactly one of "metric" or "expr"',
    "missing_team.yml": 'rules/specs/missing_team.yml: field "team": is required',
    "misspelt_field.yml": 'rules/specs/misspelt_field.yml: rule "HighCPUUsage": '
    'field "threshold": is required\n'
    'rules/specs/misspelt_field.yml: rule "HighCPUUsage": field "treshold": unknown field '
    "(allowed: description, expr, family, for, labels, metric, metric_label, name, op, owner, "
    "runbook_url, severity, summary, team, test, threshold)",
    "bad_metric_label.yml": 'rules/specs/bad_metric_label.yml: rule "HighCPUUsage": '
    "field \"metric_label\": invalid metric label 'CPU usage' (lower-case letters, digits "
    "and '_', e.g. cpu_usage)",
    "reserved_label.yml": 'rules/specs/reserved_label.yml: rule "HighCPUUsage": '
    "field \"labels.severity\": 'severity' is set by the generator; use the severity field",
    "threshold_not_number.yml": 'rules/specs/threshold_not_number.yml: rule "HighCPUUsage": '
    'field "threshold": Input should be a valid number, unable to parse string as a number',
    "unbalanced_promql.yml": 'rules/specs/unbalanced_promql.yml: rule "HighCPUUsage": '
    "field \"expr\": unclosed bracket in PromQL expression (expected ')')",
    "unknown_recorded_series.yml": 'rules/specs/unknown_recorded_series.yml: rule "HighCPUUsage": '
    "field \"metric\": unknown recorded series 'instance:cpu_usge:percent' "
    "(no recording rule in rules/specs)",
    "unsupported_template.yml": 'rules/specs/unsupported_template.yml: rule "HighCPUUsage": '
    "field \"description\": unsupported template action '{{ $value | humanizeTimestamp }}' "
    "(supported: {{ $labels.<name> }}, {{ $value }}, {{ $value | humanize }}, "
    "{{ $value | humanize1024 }}, {{ $value | humanizePercentage }}, "
    '{{ $value | humanizeDuration }}, {{ $value | printf "%.Nf" }})',
}


def _check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "--root", str(root)])
    return code, capsys.readouterr().err


def test_every_bad_fixture_has_an_expected_message() -> None:
    """Each file in tests/data/rulegen/bad is pinned by an exact message below (and vice versa)."""
    assert sorted(p.name for p in BAD.glob("*.yml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_fails_with_exact_message(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad spec makes `receiver rules check` exit 2 with one exact line per problem."""
    (tmp_path / "rules" / "specs").mkdir(parents=True)
    shutil.copy(BAD / name, tmp_path / "rules" / "specs" / name)
    code, err = _check(tmp_path, capsys)
    assert code == 2
    assert err == f"receiver rules: invalid spec\n{EXPECTED[name]}\n"


def test_duplicate_alert_across_files_names_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same alert name in two spec files is an error naming the second file and the first."""
    shutil.copytree(BAD / "duplicate_alert", tmp_path / "rules" / "specs")
    code, err = _check(tmp_path, capsys)
    assert code == 2
    assert err == (
        "receiver rules: invalid spec\n"
        'rules/specs/node.yml: rule "HighCPUUsage": field "name": '
        "duplicate alert name, already defined in rules/specs/host.yml\n"
    )


def test_missing_spec_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without rules/specs under --root the command says where it looked and exits 2."""
    code, err = _check(tmp_path, capsys)
    assert code == 2
    assert err == (
        f"receiver rules: no rules/specs under {tmp_path.resolve()} "
        "(run from the repository root or pass --root)\n"
    )


def test_shipped_specs_define_the_seed_defaults() -> None:
    """The shipped specs carry the seed's thresholds with their severities."""
    rule_set = load_specs(REPO / "rules" / "specs", REPO)
    got = {
        rule.name: (rule.subject, rule.op, rule.threshold, rule.severity)
        for _, rule in rule_set.thresholds()
    }
    assert got == {
        "ServiceDown": ("up", "<", 1, "critical"),
        "HighCPUUsage": ("instance:cpu_usage:percent", ">", 80, "high"),
        "HighMemoryUsage": ("instance:memory_usage:percent", ">", 80, "high"),
        "HighDiskUsage": ("instance:disk_usage:percent", ">", 90, "critical"),
        "HighRequestLatency": ("job:http_request_latency_seconds:p95", ">", 5, "high"),
        "HighErrorRate": ("job:http_error_rate:percent", ">", 5, "high"),
        "HighDatabaseConnections": ("db_connections", ">", 100, "medium"),
        "HighQueueDepth": ("queue_depth", ">", 1000, "high"),
    }


def test_spec_severities_are_the_domain_severities() -> None:
    """Spec severities are exactly the receiver's Severity levels, so alerts map 1:1."""
    assert set(typing.get_args(SpecSeverity)) == {s.value for s in Severity}


@pytest.mark.parametrize(
    ("text", "ms", "canonical"),
    [
        ("0s", 0, "0s"),
        ("90s", 90_000, "1m30s"),
        ("1h30m", 5_400_000, "1h30m"),
        ("7d", 604_800_000, "1w"),
    ],
)
def test_durations_round_trip_to_canonical_form(text: str, ms: int, canonical: str) -> None:
    """Prometheus durations parse to milliseconds and format back in canonical spelling."""
    assert parse_duration(text) == ms
    assert format_duration(ms) == canonical


@pytest.mark.parametrize("text", ["", "5", "5 m", "1m1h", "-1s", "1.5h"])
def test_invalid_durations_are_rejected(text: str) -> None:
    """Anything Prometheus would not parse as a duration raises ValueError."""
    with pytest.raises(ValueError, match="invalid Prometheus duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"metric": "instance:cpu_usage:percent"}, "cpu_usage"),
        ({"metric": "queue_depth"}, "queue_depth"),
        ({"metric": "job:http_request_latency_seconds:p95"}, "http_request_latency_seconds"),
        (
            {"metric": "job:http_request_latency_seconds:p95", "metric_label": "http_latency_p95"},
            "http_latency_p95",
        ),
        ({"expr": "max(queue_depth)", "test": {"metric": "queue_depth"}}, "queue_depth"),
    ],
)
def test_metric_label_comes_from_the_spec_or_the_series_name(
    fields: dict[str, object], expected: str
) -> None:
    """`metric_label` wins; else a recorded series' middle part, else the series' own name."""
    rule = ThresholdRule.model_validate(
        {
            "name": "A",
            "op": ">",
            "threshold": 1,
            "for": "1m",
            "severity": "high",
            "summary": "s",
            "description": "d",
            "runbook_url": "https://runbooks.example/a",
            **fields,
        }
    )
    assert rule.metric_name == expected
