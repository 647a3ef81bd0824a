"""`receiver rules generate | check | backtest`: the command line over specs, generator, backtest.

Exit codes: 0 success; 1 `check` found stale files or promtool failed; 2 bad usage, bad spec,
or a backtest that could not run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from receiver.durations import parse_duration
from receiver.rulegen.backtest import BacktestError, format_table, run_backtest
from receiver.rulegen.generate import EXAMPLE, GENERATED_DIR, SPEC_DIR, TESTS_DIR, render_all
from receiver.rulegen.generate import stale as stale_files
from receiver.rulegen.generate import write as write_files
from receiver.rulegen.load import SpecError, load_specs
from receiver.rulegen.spec import RuleSet


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiver rules", description="Prometheus rules from rules/specs/*.yml"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_root(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--root",
            type=Path,
            default=Path("."),
            help="repository root holding rules/specs (default: current directory)",
        )
        return p

    with_root(sub.add_parser("generate", help=f"write {GENERATED_DIR}, {TESTS_DIR}, {EXAMPLE}"))
    check = with_root(sub.add_parser("check", help="fail when generated files are stale"))
    check.add_argument(
        "--promtool",
        action="store_true",
        help="also run `promtool check rules` and `promtool test rules` on the generated files",
    )
    backtest = with_root(
        sub.add_parser("backtest", help="replay threshold rules over history with query_range")
    )
    backtest.add_argument("--prom-url", required=True, help="Prometheus base URL")
    backtest.add_argument("--range", default="7d", help="how far back (Prometheus duration)")
    backtest.add_argument("--end", default=None, help="end time: RFC 3339 or unix seconds (now)")
    backtest.add_argument("--step", default="1m", help="evaluation step (Prometheus duration)")
    backtest.add_argument(
        "--flap-window", default="15m", help="re-fire within this long after resolving = flap"
    )
    backtest.add_argument(
        "--rule", action="append", default=[], help="only this alert (repeatable)"
    )
    backtest.add_argument(
        "--no-inline",
        action="store_true",
        help="query recorded series as they are instead of expanding their definitions",
    )
    backtest.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout, seconds")
    backtest.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _generate(args: argparse.Namespace, rule_set: RuleSet) -> int:
    changed = write_files(args.root, render_all(rule_set))
    for rel in changed:
        print(f"wrote {rel}")
    print(f"{len(changed)} file(s) changed" if changed else "generated files already up to date")
    return 0


def _check(args: argparse.Namespace, rule_set: RuleSet) -> int:
    problems = stale_files(args.root, render_all(rule_set))
    if problems:
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        print("run `receiver rules generate` and commit the result", file=sys.stderr)
        return 1
    print("generated rule files are up to date")
    if args.promtool:
        return _promtool(args.root)
    return 0


def _promtool(root: Path) -> int:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not found on PATH", file=sys.stderr)
        return 2
    rule_files = [*sorted((root / GENERATED_DIR).glob("*.yml")), root / EXAMPLE]
    test_files = sorted((root / TESTS_DIR).glob("*.yml"))
    for argv in (
        [promtool, "check", "rules", *map(str, rule_files)],
        [promtool, "test", "rules", *map(str, test_files)],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            print(f"failed: {' '.join(argv[1:3])} (exit {result.returncode})", file=sys.stderr)
            return 1
    print(f"promtool: {len(rule_files)} rule file(s) valid, {len(test_files)} test file(s) pass")
    return 0


def _parse_end(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as err:
        raise ValueError(f"--end: expected RFC 3339 or unix seconds, got {text!r}") from err
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _seconds(option: str, text: str) -> float:
    try:
        ms = parse_duration(text)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from err
    if ms <= 0:
        raise ValueError(f"{option}: must be greater than zero")
    return ms / 1000


def _backtest(args: argparse.Namespace, rule_set: RuleSet) -> int:
    try:
        span = _seconds("--range", args.range)
        step = _seconds("--step", args.step)
        flap_window = _seconds("--flap-window", args.flap_window)
        end = _parse_end(args.end)
    except ValueError as err:
        print(f"receiver rules backtest: {err}", file=sys.stderr)
        return 2
    end -= end % step  # align to the step grid so repeated runs see the same points
    start = end - span
    try:
        reports = run_backtest(
            rule_set,
            args.prom_url,
            start,
            end,
            step,
            flap_window,
            names=args.rule,
            inline=not args.no_inline,
            timeout=args.timeout,
        )
    except BacktestError as err:
        print(f"receiver rules backtest: {err}", file=sys.stderr)
        return 2
    if args.json:
        document = {
            "prom_url": args.prom_url,
            "start": start,
            "end": end,
            "step_seconds": step,
            "flap_window_seconds": flap_window,
            "rules": [r.as_dict() for r in reports],
        }
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    when = datetime.fromtimestamp(end, UTC).isoformat().replace("+00:00", "Z")
    print(
        f"backtest against {args.prom_url}: {args.range} ending {when}, "
        f"step {args.step}, flap window {args.flap_window}"
    )
    print(format_table(reports))
    return 0


def main(argv: list[str]) -> int:
    """Entry point for `receiver rules ...`; returns the process exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    spec_dir = args.root / SPEC_DIR
    if not spec_dir.is_dir():
        print(
            f"receiver rules: no {SPEC_DIR} under {args.root.resolve()} "
            "(run from the repository root or pass --root)",
            file=sys.stderr,
        )
        return 2
    try:
        rule_set = load_specs(spec_dir, args.root)
    except SpecError as err:
        print(f"receiver rules: invalid spec\n{err}", file=sys.stderr)
        return 2
    commands = {"generate": _generate, "check": _check, "backtest": _backtest}
    return commands[args.command](args, rule_set)
