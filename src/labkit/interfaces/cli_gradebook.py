"""``labkit gradebook``: a cohort's results for Moodle (CSV) and as JSON."""

from __future__ import annotations
