"""The exam portal's FastAPI application: :func:`create_app`.

Server-rendered pages (Jinja2, autoescaped), French first and English with ``?lang=en``
(remembered in a cookie); one CSS file and two small scripts (no inline script, so the
Content-Security-Policy forbids any). Who may call what is decided in :mod:`.auth` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from labkit.interfaces.web.auth import CsrfFailed, Forbidden, LoginRequired, NotFound, csrf_guard
from labkit.interfaces.web.i18n import LANG_COOKIE, LANGS, pick_lang, translator
from labkit.usecases.exam import Exam, as_utc
from labkit.usecases.lifecycle import Context

HERE = Path(__file__).resolve().parent
MAX_BODY = 2 << 20  # bytes of any request (a roster upload is at most 1 MiB)
LOG = logging.getLogger("labkit.web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def _fmt_dt(value: datetime | str | None, lang: str = "fr") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    local = (as_utc(value) or value).astimezone()
    return local.strftime("%d/%m/%Y %H:%M" if lang == "fr" else "%Y-%m-%d %H:%M")


def _input_dt(value: datetime | None) -> str:
    """A datetime as a ``datetime-local`` input value (server local time)."""
    if value is None:
        return ""
    return (as_utc(value) or value).astimezone().strftime("%Y-%m-%dT%H:%M")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    templates.env.filters["input_dt"] = _input_dt
    return templates


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page in the request's language; ``who`` (the principal) may be given."""
    lang: str = getattr(request.state, "lang", "fr")
    t = translator(lang)
    switched = request.url.include_query_params(lang="en" if lang == "fr" else "fr")
    base = {
        "lang": lang, "t": t, "who": context.pop("who", None),
        "other_lang_url": switched.path + "?" + switched.query,
        "dt": lambda v: _fmt_dt(v, lang),
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


def error_page(request: Request, status_code: int, key: str | None = None, message: str | None = None,
               **values: Any) -> HTMLResponse:
    t = translator(getattr(request.state, "lang", "fr"))
    text = message if message is not None else t(key or "not_found", **values)
    return render(request, "error.html", status_code, message=text, who=getattr(request.state, "who", None))


def create_app(ctx: Context, db: Any, *, secure_cookies: bool = False, exam: Exam | None = None,
               ssh_port: int = 2222, ssh_host: str | None = None, final_check_every: float = 5.0) -> FastAPI:
    """The portal over ``db`` (a :class:`labkit.adapters.db.database.Database`, upgraded).

    ``exam`` carries the use cases (default: the real :class:`Exam` over the real labs);
    ``secure_cookies`` marks cookies Secure (portal served over HTTPS or behind a TLS proxy);
    every ``final_check_every`` seconds the portal takes the final grade of the cohorts whose
    exam window has just ended (0 disables the timer).
    """
    service = exam or Exam(ctx, db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.reap_interrupted)
        await run_in_threadpool(service.recover_launches)
        task = asyncio.create_task(_final_timer(service, final_check_every)) if final_check_every > 0 else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if exam is None:
                service.close(wait=False)

    app = FastAPI(title="labkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
                  dependencies=[Depends(csrf_guard)], max_body_size=MAX_BODY)
    app.state.ctx = ctx
    app.state.db = db
    app.state.exam = service
    app.state.secure_cookies = secure_cookies
    app.state.ssh_port = ssh_port
    app.state.ssh_host = ssh_host
    app.state.templates = make_templates()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def lang_and_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        asked = request.query_params.get("lang")
        request.state.lang = pick_lang(asked, request.cookies.get(LANG_COOKIE))
        response = await call_next(request)
        if asked in LANGS and request.cookies.get(LANG_COOKIE) != asked:
            response.set_cookie(LANG_COOKIE, asked, max_age=365 * 86400, path="/", samesite="lax",
                                secure=secure_cookies, httponly=True)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path if request.method == "GET" else "/"
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return error_page(request, 403, "forbidden")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error_page(request, 404, "not_found")

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        return error_page(request, 403, "csrf_failed")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, 404, "not_found")
        return error_page(request, exc.status_code, message=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
            return error_page(request, 404, "not_found")
        fields = ", ".join(str(err.get("loc", ("", "?"))[-1]) for err in exc.errors())
        return error_page(request, 400, message=f"{translator(request.state.lang)('error_prefix')} {fields}")

    from labkit.interfaces.web.pages import router

    app.include_router(router)
    from labkit.interfaces.web.terminal import router as terminal_router

    from labkit.interfaces.web.watch import router as watch_router

    app.include_router(terminal_router)
    app.include_router(watch_router)
    return app


async def _final_timer(service: Exam, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await run_in_threadpool(service.take_due_finals)
        except Exception:  # noqa: BLE001 - the timer must survive a database hiccup
            LOG.exception("taking the final grades failed; retrying in %s s", every)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
