"""The exam portal (FastAPI, server-rendered pages): :func:`create_app`."""

from labkit.interfaces.web.app import create_app

__all__ = ["create_app"]
