"""promtool on the generated files: they check, their unit tests pass, and those tests can fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from receiver.rulegen.cli import main
from tests.rulegen.helpers import REPO, copy_repo_rules

RULE_FILES = [
    *sorted((REPO / "rules" / "generated").glob("*.yml")),
    REPO / "prometheus-rules.example.yml",
]
TEST_FILES = sorted((REPO / "rules" / "tests").glob("*.yml"))


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_expected_files_are_generated() -> None:
    """One rule file per spec, unit tests per spec, z-score tests where baselines exist."""
    assert [p.name for p in RULE_FILES] == [
        "app.yml",
        "availability.yml",
        "http.yml",
        "node.yml",
        "prometheus-rules.example.yml",
    ]
    assert [p.name for p in TEST_FILES] == [
        "app_test.yml",
        "availability_test.yml",
        "http_test.yml",
        "http_zscore_test.yml",
        "node_test.yml",
        "node_zscore_test.yml",
    ]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_accepts(path: Path) -> None:
    """`promtool check rules` accepts every generated rule file and the one-file example."""
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_counts_every_rule_in_the_example() -> None:
    """The example holds all 29 rules: 8 alerts, 6 recording rules, 5 z-score triples."""
    result = _promtool("check", "rules", REPO / "prometheus-rules.example.yml")
    assert "SUCCESS: 29 rules found" in result.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules_passes(path: Path) -> None:
    """Every generated unit-test file passes `promtool test rules`."""
    result = _promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_check_with_promtool_passes(capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver rules check --promtool` runs both promtool commands and reports success."""
    assert main(["check", "--promtool", "--root", str(REPO)]) == 0
    assert capsys.readouterr().out == (
        "generated rule files are up to date\npromtool: 5 rule file(s) valid, 6 test file(s) pass\n"
    )


@pytest.mark.parametrize(
    ("old", "new", "failure"),
    [
        # threshold moved: the alert no longer fires at the generated firing value
        ("instance:cpu_usage:percent > 80", "instance:cpu_usage:percent > 90", "HighCPUUsage"),
        # `for` shortened: the alert fires while the test expects it pending
        (
            "for: 5m\n        labels:\n          family: memory",
            "for: 1m\n        labels:\n          family: memory",
            "HighMemoryUsage",
        ),
        # a label changed
        ("family: disk\n", "family: storage\n", "HighDiskUsage"),
        # a recording rule changed: the example's expected value is no longer produced
        ('{mode="idle"}[5m]', '{mode="user"}[5m]', "instance:cpu_usage:percent"),
    ],
    ids=["threshold", "for", "label", "recording"],
)
def test_generated_tests_fail_when_the_rules_drift(
    tmp_path: Path, old: str, new: str, failure: str
) -> None:
    """A hand edit to a generated rule makes its generated promtool test fail, naming it."""
    root = copy_repo_rules(tmp_path)
    rules = root / "rules" / "generated" / "node.yml"
    text = rules.read_text()
    assert old in text
    rules.write_text(text.replace(old, new, 1))
    result = _promtool("test", "rules", root / "rules" / "tests" / "node_test.yml")
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr
    assert failure in result.stdout + result.stderr
