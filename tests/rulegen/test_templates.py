"""Annotation rendering: the Python renderer produces exactly what Prometheus' templates produce."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from receiver.rulegen import templates

# Every supported action; promtool renders them, the Python renderer must agree byte for byte.
ANNOTATIONS = {
    "plain": "{{ $value }}",
    "humanize": "{{ $value | humanize }}",
    "humanize_call": "{{ humanize $value }}",
    "humanize1024": "{{ $value | humanize1024 }}",
    "percentage": "{{ $value | humanizePercentage }}",
    "duration": "{{ $value | humanizeDuration }}",
    "printf": '{{ $value | printf "%.2f" }}',
    "printf_call": '{{printf "%.1f" $value}}',
    "labels": "{{ $labels.instance }} / {{$labels.job}} / {{ $labels.absent }}",
}
VALUES = [
    "0", "1", "-0.5", "0.25", "2.675", "88", "99.99", "1536", "3725", "90061.5", "123456",
    "999999.9", "1e6", "1234567", "0.0001", "0.00001234", "1e-9", "1e15",
]  # fmt: skip
# Not 1e21 and up: Go's humanizeDuration converts to int64, which overflows (platform-defined).


def test_renderer_matches_promtool(tmp_path: Path) -> None:
    """For many values and every supported action, promtool's alert annotations equal ours."""
    rules = {
        "groups": [
            {
                "name": "render",
                "rules": [{"alert": "Render", "expr": "probe", "annotations": ANNOTATIONS}],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    labels = {"instance": "host-1:9100", "job": "node"}
    tests = []
    for index, raw in enumerate(VALUES):
        series_labels = {**labels, "case": str(index)}
        expected = {
            name: templates.render(text, series_labels, float(raw))
            for name, text in ANNOTATIONS.items()
        }
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'probe{{case="{index}", instance="host-1:9100", job="node"}}',
                        "values": raw,
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "0s",
                        "alertname": "Render",
                        "exp_alerts": [{"exp_labels": series_labels, "exp_annotations": expected}],
                    }
                ],
            }
        )
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        ["promtool", "test", "rules", str(tmp_path / "rules_test.yml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [(88.0, "88"), (1e6, "1e+06"), (123456.0, "123456"), (1e-05, "1e-05"), (-0.5, "-0.5")],
)
def test_go_float_spells_values_like_go(value: float, expected: str) -> None:
    """`{{ $value }}` spells floats like Go's %v: exponent from 1e6 and below 1e-4."""
    assert templates.go_float(value) == expected


def test_labels_used_lists_template_labels() -> None:
    """labels_used returns the `$labels` a template reads, sorted and without duplicates."""
    text = "{{ $labels.job }} {{ $labels.instance }} {{ $labels.job }} {{ $value }}"
    assert templates.labels_used(text) == ["instance", "job"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ $value | humanizeTimestamp }}", "unsupported template action"),
        ("{{ if gt $value 1.0 }}x{{ end }}", "unsupported template action"),
        ("{{ $value ", "unbalanced '{{' / '}}' in template"),
        ("value }}", "unbalanced '{{' / '}}' in template"),
    ],
)
def test_unsupported_templates_are_rejected(text: str, message: str) -> None:
    """Anything outside the supported subset is a ValueError, so tests never guess a rendering."""
    with pytest.raises(ValueError, match=message):
        templates.parse_template(text)
