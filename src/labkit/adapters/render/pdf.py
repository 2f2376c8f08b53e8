"""HTML to PDF with WeasyPrint, offline and quiet.

:func:`html_to_pdf` never touches the network: its URL fetcher accepts ``data:`` URLs and
``file:`` URLs under ``base_url`` only, and refuses everything else (the resource is then
left out and the refusal logged). WeasyPrint's own warnings go to labkit's logger at debug
level instead of stderr.

PDF metadata comes from the HTML: ``<title>``, ``<meta name="author">`` (the centre),
``<meta name="dcterms.created">`` (the run's date, never "now"). WeasyPrint adds no date of
its own and the file identifier is a hash of the content, so one HTML always gives the same
bytes (checked by tests/adapters/render/test_pdf.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from labkit.errors import LabkitError

__all__ = ["RenderError", "html_to_pdf", "offline_fetcher"]

log = logging.getLogger("labkit.render.pdf")


class RenderError(LabkitError):
    """WeasyPrint could not lay the document out."""


class _ToLabkitLog(logging.Handler):
    """Forward WeasyPrint's records (CSS it ignores, refused URLs) to labkit's log at debug."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("weasyprint %s: %s", record.levelname.lower(), record.getMessage())


def _quiet_weasyprint() -> None:
    """Once per process: WeasyPrint (and fontTools, which subsets its fonts) log to labkit's
    logger at debug instead of propagating to the root logger, which prints warnings on stderr."""
    for name in ("weasyprint", "fontTools"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ToLabkitLog) for h in logger.handlers):
            logger.addHandler(_ToLabkitLog())
        logger.propagate = False


def _base_dir(base_url: str | None) -> Path | None:
    """The folder ``base_url`` names (a path or a ``file:`` URL), resolved; None without one."""
    if base_url is None:
        return None
    if base_url.startswith("file:"):
        path = Path(unquote(urlsplit(base_url).path))
    elif "://" in base_url:
        raise ValueError(f"base_url must be a local folder, not {base_url!r}")
    else:
        path = Path(base_url)
    path = Path(os.path.realpath(path))
    return path if path.is_dir() or not path.exists() else path.parent


def _make_fetcher(base: Path | None) -> Any:
    from weasyprint.urls import URLFetcher

    class OfflineFetcher(URLFetcher):  # type: ignore[misc]
        """data: URLs, and file: URLs inside ``base``; anything else raises ValueError."""

        def __init__(self) -> None:
            super().__init__(allowed_protocols={"data", "file"}, allow_redirects=False)
            self.base = base

        def fetch(self, url: str, headers: Any = None) -> Any:
            scheme = url.split(":", 1)[0].lower()
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme != "file":
                raise ValueError(f"offline rendering: {scheme or 'relative'} URL refused: {url[:200]}")
            if self.base is None:
                raise ValueError(f"offline rendering: no base folder, file URL refused: {url[:200]}")
            target = Path(os.path.realpath(unquote(urlsplit(url).path)))
            if not target.is_relative_to(self.base):
                raise ValueError(f"offline rendering: {target} is outside {self.base}, refused")
            return super().fetch(target.as_uri(), headers)

    return OfflineFetcher()


def offline_fetcher(base_url: str | None = None) -> Any:
    """The URL fetcher :func:`html_to_pdf` uses, for tests and callers that render themselves."""
    return _make_fetcher(_base_dir(base_url))


def html_to_pdf(html: str, *, base_url: str | None = None) -> bytes:
    """Render ``html`` to PDF bytes; relative URLs resolve under ``base_url`` (a folder), offline."""
    _quiet_weasyprint()
    from weasyprint import HTML

    base = _base_dir(base_url)
    try:
        doc = HTML(
            string=html,
            base_url=base.as_uri() + "/" if base is not None else None,
            url_fetcher=_make_fetcher(base),
        )
        pdf = doc.write_pdf(pdf_identifier=True)
    except Exception as exc:  # WeasyPrint raises assorted errors on documents it cannot lay out
        raise RenderError(f"the PDF could not be rendered ({type(exc).__name__}: {exc}); the HTML "
                          "report still opens in a browser (print it from there), please report the problem") from exc
    assert isinstance(pdf, bytes)
    return pdf
