"""Command line: `receiver serve`, `receiver rules ...` and `receiver incidents ...`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from receiver.logs import RedactSecrets, secret_values
from receiver.settings import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.app import create_app
    from receiver.notify.channels import ChannelError
    from receiver.notify.config import check_settings as check_channels

    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["receiver_host"] = args.host
    if args.port is not None:
        overrides["receiver_port"] = args.port
    try:
        settings = load_settings(**overrides)
        check_channels(settings)
    except (SettingsError, ChannelError) as err:
        print(f"receiver: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # The log files (receiver.logs) lower the `receiver` logger to DEBUG for debug.log; the
    # console keeps LOG_LEVEL.
    for handler in logging.getLogger().handlers:
        handler.setLevel(settings.log_level.upper())
        handler.addFilter(RedactSecrets(secret_values(settings)))
    uvicorn.run(
        create_app(settings),
        host=settings.receiver_host,
        port=settings.receiver_port,
        log_level=settings.log_level,
        proxy_headers=False,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given[:1] == ["incidents"]:
        # its own parser: argparse's REMAINDER would refuse options (`--url`) before the action
        from receiver.oncall.client import main as incidents_main

        return incidents_main(args_given[1:])
    parser = argparse.ArgumentParser(prog="receiver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the HTTP service")
    serve.add_argument("--host", default=None, help="bind address (RECEIVER_HOST)")
    serve.add_argument("--port", type=int, default=None, help="bind port (RECEIVER_PORT)")
    serve.set_defaults(func=_serve)
    rules = sub.add_parser("rules", help="generate / check / backtest Prometheus rules")
    rules.add_argument("rest", nargs=argparse.REMAINDER)
    rules.set_defaults(func=_rules)
    incidents = sub.add_parser(
        "incidents", help="list, show, ack, assign, note, silence, close incidents (amtool-like)"
    )
    incidents.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(args_given)
    code: int = args.func(args)
    return code


def _rules(args: argparse.Namespace) -> int:
    from receiver.rulegen.cli import main as rules_main

    return rules_main(list(args.rest))


if __name__ == "__main__":
    sys.exit(main())
