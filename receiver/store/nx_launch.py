"""Run the embedded MongoDB-wire server (nx-27017) with its per-command INFO logging off.

nx-27017 logs every command at INFO, which costs throughput and grows its log without bound.
Configuring the root logger first makes its own `basicConfig` a no-op.
"""

from __future__ import annotations

import logging
import sys


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s - %(name)s - %(levelname)s - [%(process)d] - %(message)s",
    )
    from nx_27017.nx_27017 import main as nx_main

    sys.argv = ["nx-27017", *sys.argv[1:]]
    nx_main()


if __name__ == "__main__":
    main()
