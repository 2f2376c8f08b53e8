"""``labkit verify RUN|BUNDLE``: check a run folder or a portfolio bundle offline."""

from __future__ import annotations
