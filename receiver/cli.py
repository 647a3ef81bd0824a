"""Command line: `receiver serve`, `receiver rules ...` and `receiver incidents ...`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from receiver.settings import Settings, SettingsError

APP_IMPORT = "receiver.app:app"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.notify.channels import ChannelError
    from receiver.run import checked_settings, configure_console

    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["receiver_host"] = args.host
    if args.port is not None:
        overrides["receiver_port"] = args.port
    try:
        settings = checked_settings(**overrides)
    except (SettingsError, ChannelError) as err:
        print(f"receiver: {err}", file=sys.stderr)
        return 2
    configure_console(settings)
    if args.workers == 1 and not args.reload:
        from receiver.app import create_app

        uvicorn.run(
            create_app(settings),
            host=settings.receiver_host,
            port=settings.receiver_port,
            log_level=settings.log_level,
            proxy_headers=False,
        )
        return 0
    return _serve_processes(args, settings)


def _serve_processes(args: argparse.Namespace, settings: Settings) -> int:
    """Several worker processes (each one a replica) or a reloading one: uvicorn imports the
    app by name in each, and each builds it from the environment this process hands down."""
    import uvicorn

    from receiver.store.embedded import EmbeddedStoreError, embedded_process

    # --host/--port reach the workers' settings too (links, the Host allow-list)
    os.environ["RECEIVER_HOST"] = settings.receiver_host
    os.environ["RECEIVER_PORT"] = str(settings.receiver_port)
    with contextlib.ExitStack() as stack:
        if settings.mongo_uri is None:
            # one embedded server for every worker, outliving reloads; MONGO_URI points at it
            try:
                uri = stack.enter_context(
                    embedded_process(settings.data_dir / "store", settings.nx_start_timeout_seconds)
                )
            except EmbeddedStoreError as err:
                print(f"receiver: {err}", file=sys.stderr)
                return 1
            os.environ["MONGO_URI"] = uri
        package = Path(__file__).resolve().parent
        uvicorn.run(
            APP_IMPORT,
            host=settings.receiver_host,
            port=settings.receiver_port,
            log_level=settings.log_level,
            proxy_headers=False,
            workers=None if args.reload else args.workers,
            reload=args.reload,
            reload_dirs=[str(package)] if args.reload else None,
        )
    return 0


def _workers(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


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
    how = serve.add_mutually_exclusive_group()
    how.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes, each a replica on the same store (default 1)",
    )
    how.add_argument(
        "--reload", action="store_true", help="restart when the code changes (development)"
    )
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
