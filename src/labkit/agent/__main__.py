"""``python -I -m labkit.agent --instance NAME``: the grader agent on stdin/stdout."""

from __future__ import annotations

import sys

from labkit.agent.server import main

if __name__ == "__main__":
    sys.exit(main())
