"""`python -m receiver.demo`."""

from __future__ import annotations

import sys

from receiver.demo.run import main

sys.exit(main())
