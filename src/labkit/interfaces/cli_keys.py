"""``labkit keys init|show|rotate|revoke``: the training centre's signing key."""

from __future__ import annotations
