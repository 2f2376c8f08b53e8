"""``labkit bundle``: a candidate's signed portfolio bundle (zip)."""

from __future__ import annotations
