"""The portal's routes. Each one names who may call it with ``Depends(allow(...))``
(:mod:`.auth`); the authorization matrix test enumerates these routes and fails on any it
does not know."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from labkit.adapters.db import repo
from labkit.adapters.db.models import Candidate, Cohort, GradingRun, Recording
from labkit.errors import EvidenceIntegrityError, LabkitError, UnknownRunError, UserError
from labkit.interfaces.web.app import error_page, redirect, render
from labkit.interfaces.web.auth import (
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    NotFound,
    Principal,
    allow,
    current_user,
    new_prelogin_token,
)
from labkit.interfaces.web.i18n import CATALOG, translator
from labkit.usecases.exam import Exam, ExamError, RateLimited, exam_is_open, exam_is_over

router = APIRouter()

Anyone = Annotated[Principal, Depends(allow("trainer", "assessor", "candidate"))]
Staff = Annotated[Principal, Depends(allow("trainer", "assessor"))]
Trainer = Annotated[Principal, Depends(allow("trainer"))]
CandidateUser = Annotated[Principal, Depends(allow("candidate"))]
MaybeUser = Annotated[Principal | None, Depends(current_user)]

MAX_ROSTER_BYTES = 1 << 20
NOTICES = {"selfcheck_started", "submit_started", "window_saved", "end_now_notice", "teardown_notice",
           "logged_out", "created_notice", "launched_notice", "reset_notice", "ssh_keys_saved"}
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")


def _exam(request: Request) -> Exam:
    return request.app.state.exam  # type: ignore[no-any-return]


def _db(request: Request) -> Any:
    return request.app.state.db


def _notice(request: Request) -> str | None:
    key = request.query_params.get("notice")
    if key not in NOTICES:
        return None
    t = translator(request.state.lang)
    values = {k: request.query_params.get(k, "") for k in ("n", "name")}
    try:
        return t(key, **values)
    except (KeyError, IndexError):
        return None


def _exam_error(request: Request, exc: ExamError) -> str:
    t = translator(request.state.lang)
    if exc.code in CATALOG["fr"]:
        values = dict(exc.args_)
        if exc.code == "login_rate_limited":
            values = {"minutes": max(1, int(values.get("seconds", 300)) // 60)}
        return t(exc.code, **values)
    return str(exc)


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host`` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="lax",
                        secure=request.app.state.secure_cookies, max_age=12 * 3600)


# ----------------------------------------------------------------------------- login
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, who: MaybeUser) -> Response:
    if who is not None:
        return redirect("/")
    token = request.cookies.get(PRELOGIN_COOKIE) or new_prelogin_token()
    response = render(request, "login.html", csrf=token, next=_safe_next(request.query_params.get("next")),
                      notice=_notice(request))
    response.set_cookie(PRELOGIN_COOKIE, token, path="/login", httponly=True, samesite="strict",
                        secure=request.app.state.secure_cookies)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, login: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=1000)] = "",
          next: Annotated[str, Form(max_length=500)] = "/") -> Response:
    exam = _exam(request)
    token = request.cookies.get(PRELOGIN_COOKIE) or new_prelogin_token()
    try:
        user = exam.authenticate(login, password, _client(request))
    except RateLimited as exc:
        response = render(request, "login.html", 429, csrf=token, next=_safe_next(next), login=login,
                          error=_exam_error(request, exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except UserError:
        return render(request, "login.html", 401, csrf=token, next=_safe_next(next), login=login,
                      error=translator(request.state.lang)("login_failed"))
    with _db(request).session() as s:
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            repo.delete_web_session(s, old)
        session_token, _row = repo.create_web_session(s, user.id)
    done = redirect(_safe_next(next))
    _set_session_cookie(request, done, session_token)
    done.delete_cookie(PRELOGIN_COOKIE, path="/login")
    return done


@router.post("/logout")
def logout(request: Request, who: Anyone) -> Response:
    with _db(request).session() as s:
        repo.delete_web_session(s, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("/login?notice=logged_out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(request: Request, who: Anyone) -> Response:
    return redirect("/me" if who.role == "candidate" else "/cohorts")


# ----------------------------------------------------------------------------- cohorts (staff)
@router.get("/cohorts", response_class=HTMLResponse)
def cohorts(request: Request, who: Staff) -> Response:
    with _db(request).session() as s:
        rows = [{"id": c.id, "name": c.name, "lab": c.lab_id, "candidates": len(c.candidates),
                 "created_at": c.created_at, "start": c.exam_start, "end": c.exam_end,
                 "state": _state(c)} for c in repo.list_cohorts(s)]
    return render(request, "cohorts.html", who=who, cohorts=rows)


def _state(c: Cohort) -> str:
    return "over" if exam_is_over(c) else "open" if exam_is_open(c) else "waiting"


@router.get("/cohorts/new", response_class=HTMLResponse)
def cohort_form(request: Request, who: Trainer) -> Response:
    ops = _exam(request).lab
    return render(request, "cohort_new.html", who=who, labs=ops.labs(), providers=ops.providers(), form={})


@router.post("/cohorts", response_class=HTMLResponse)
def cohort_create(request: Request, who: Trainer, lab: Annotated[str, Form(max_length=100)],
                  name: Annotated[str, Form(max_length=100)], roster: Annotated[UploadFile, File()],
                  seed: Annotated[str, Form(max_length=20)] = "",
                  provider: Annotated[str, Form(max_length=32)] = "netns") -> Response:
    exam = _exam(request)
    form = {"lab": lab, "name": name, "seed": seed, "provider": provider}
    try:
        data = roster.file.read(MAX_ROSTER_BYTES + 1)
        if len(data) > MAX_ROSTER_BYTES:
            raise UserError("the roster is larger than 1 MiB; give one candidate name per line.")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UserError("the roster is not UTF-8 text; save it as UTF-8 (CSV or plain text).") from None
        seed_value: int | None = None
        if seed.strip():
            if not seed.strip().isdigit():
                raise UserError(f"seed {seed!r} is not a whole number; leave it empty or give digits only.")
            seed_value = int(seed.strip())
        host = request.app.state.ssh_host or request.url.hostname or "127.0.0.1"
        cohort_id, creds = exam.create_cohort(
            lab, text, name, created_by=who.user_id, seed=seed_value, provider=provider,
            roster_label=f"roster {roster.filename or 'upload'}", portal_url=str(request.base_url),
            ssh_host=host, ssh_port=request.app.state.ssh_port)
    except LabkitError as exc:
        return render(request, "cohort_new.html", 400, who=who, labs=exam.lab.labs(),
                      providers=exam.lab.providers(), form=form,
                      error=_message(request, exc))
    return redirect(f"/cohorts/{cohort_id}?notice=created_notice&n={len(creds)}")


def _message(request: Request, exc: LabkitError) -> str:
    if isinstance(exc, ExamError):
        return _exam_error(request, exc)
    return f"{translator(request.state.lang)('error_prefix')} {exc}"


def _cohort_or_404(s: Any, cohort_id: int) -> Cohort:
    cohort = s.get(Cohort, cohort_id)
    if cohort is None:
        raise NotFound()
    return cohort  # type: ignore[no-any-return]


@router.get("/cohorts/{cohort_id}", response_class=HTMLResponse)
def cohort_page(request: Request, cohort_id: int, who: Staff) -> Response:
    with _db(request).session() as s:
        cohort = _cohort_or_404(s, cohort_id)
        window = {"start": cohort.exam_start, "end": cohort.exam_end, "final": cohort.final_taken_at}
        sheet = _exam(request).sheet_path(cohort.name).exists()
    board = _exam(request).dashboard(cohort_id)
    return render(request, "cohort.html", who=who, board=board, window=window, has_sheet=sheet,
                  notice=_notice(request), error=request.query_params.get("error_key"))


@router.get("/cohorts/{cohort_id}/status.json")
def cohort_status(request: Request, cohort_id: int, who: Staff) -> Response:
    with _db(request).session() as s:
        _cohort_or_404(s, cohort_id)
    return JSONResponse(_exam(request).dashboard(cohort_id))


def _cohort_action(request: Request, cohort_id: int, action: Any, notice: str, **query: Any) -> Response:
    with _db(request).session() as s:
        _cohort_or_404(s, cohort_id)
    try:
        result = action()
    except LabkitError as exc:
        return _cohort_error(request, cohort_id, exc)
    extra = "".join(f"&{k}={v(result) if callable(v) else v}" for k, v in query.items())
    return redirect(f"/cohorts/{cohort_id}?notice={notice}{extra}")


def _cohort_error(request: Request, cohort_id: int, exc: LabkitError) -> Response:
    status = 429 if isinstance(exc, RateLimited) else 409
    board = _exam(request).dashboard(cohort_id)
    with _db(request).session() as s:
        cohort = _cohort_or_404(s, cohort_id)
        window = {"start": cohort.exam_start, "end": cohort.exam_end, "final": cohort.final_taken_at}
        sheet = _exam(request).sheet_path(cohort.name).exists()
    return render(request, "cohort.html", status, who=getattr(request.state, "who", None), board=board,
                  window=window, has_sheet=sheet, error=_message(request, exc))


@router.post("/cohorts/{cohort_id}/launch")
def cohort_launch(request: Request, cohort_id: int, who: Trainer) -> Response:
    request.state.who = who
    return _cohort_action(request, cohort_id, lambda: _exam(request).launch(cohort_id), "launched_notice",
                          n=len)


@router.post("/cohorts/{cohort_id}/teardown")
def cohort_teardown(request: Request, cohort_id: int, who: Trainer) -> Response:
    request.state.who = who
    return _cohort_action(request, cohort_id, lambda: _exam(request).teardown(cohort_id), "teardown_notice")


def _parse_local(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).astimezone()  # naive: the server's local time
    except ValueError:
        raise UserError(f"{value!r} is not a date and time; use the date picker (YYYY-MM-DDTHH:MM).") from None


@router.post("/cohorts/{cohort_id}/window")
def cohort_window(request: Request, cohort_id: int, who: Trainer,
                  exam_start: Annotated[str, Form(max_length=40)] = "",
                  exam_end: Annotated[str, Form(max_length=40)] = "") -> Response:
    request.state.who = who

    def act() -> None:
        _exam(request).set_window(cohort_id, _parse_local(exam_start), _parse_local(exam_end))

    return _cohort_action(request, cohort_id, act, "window_saved")


@router.post("/cohorts/{cohort_id}/end")
def cohort_end(request: Request, cohort_id: int, who: Trainer) -> Response:
    request.state.who = who
    return _cohort_action(request, cohort_id, lambda: _exam(request).end_now(cohort_id), "end_now_notice")


@router.get("/cohorts/{cohort_id}/sheet", response_class=HTMLResponse)
def cohort_sheet(request: Request, cohort_id: int, who: Trainer) -> Response:
    with _db(request).session() as s:
        name = _cohort_or_404(s, cohort_id).name
    try:
        html = _exam(request).sheet(name)
    except UserError as exc:
        return error_page(request, 404, message=str(exc))
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


@router.get("/cohorts/{cohort_id}/results.csv")
def cohort_results_csv(request: Request, cohort_id: int, who: Staff) -> Response:
    with _db(request).session() as s:
        name = _cohort_or_404(s, cohort_id).name
    return PlainTextResponse(_exam(request).results_csv(cohort_id), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}-results.csv"'})


@router.get("/cohorts/{cohort_id}/results.json")
def cohort_results_json(request: Request, cohort_id: int, who: Staff) -> Response:
    with _db(request).session() as s:
        name = _cohort_or_404(s, cohort_id).name
    body = json.dumps({"cohort": name, "results": _exam(request).results(cohort_id)}, ensure_ascii=False, indent=2)
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}-results.json"'})


# ----------------------------------------------------------------------------- gradebook (staff)
IdFieldParam = Annotated[Literal["email", "idnumber", "username"], Query()]
ScaleParam = Annotated[Literal["points", "20", "100"], Query()]


def _gradebook(request: Request, cohort_id: int, id_field: str, scale: str) -> tuple[str, Any]:
    from labkit.usecases.gradebook import MissingIdentifiers

    with _db(request).session() as s:
        name = _cohort_or_404(s, cohort_id).name
    t = translator(request.state.lang)
    try:
        return name, _exam(request).gradebook(cohort_id, id_field=id_field, scale=scale)  # type: ignore[arg-type]
    except MissingIdentifiers as exc:
        names = ", ".join(e.candidate for e in exc.missing)
        return name, error_page(request, 409, message=t("gradebook_missing_ids", field=t("id_" + id_field),
                                                         names=names))
    except (EvidenceIntegrityError, UserError) as exc:
        return name, error_page(request, 409, message=f"{t('error_prefix')} {exc}")


@router.get("/cohorts/{cohort_id}/gradebook.csv")
def cohort_gradebook_csv(request: Request, cohort_id: int, who: Staff, id_field: IdFieldParam = "email",
                         scale: ScaleParam = "100") -> Response:
    """The cohort's grades for Moodle's grade import (docs/moodle-import.md)."""
    from labkit.usecases.gradebook import moodle_csv

    name, gb = _gradebook(request, cohort_id, id_field, scale)
    if isinstance(gb, Response):
        return gb
    return PlainTextResponse(moodle_csv(gb, request.state.lang), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}-moodle.csv"'})


@router.get("/cohorts/{cohort_id}/gradebook.json")
def cohort_gradebook_json(request: Request, cohort_id: int, who: Staff, id_field: IdFieldParam = "email",
                          scale: ScaleParam = "100") -> Response:
    """The same as the Moodle CSV, with each candidate's per-criterion table."""
    from labkit.usecases.gradebook import gradebook_json

    name, gb = _gradebook(request, cohort_id, id_field, scale)
    if isinstance(gb, Response):
        return gb
    body = json.dumps(gradebook_json(gb), ensure_ascii=False, indent=2)
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}-gradebook.json"'})


# ----------------------------------------------------------------------------- per-criterion table
LONG_TEXT = 400  # characters: a longer criterion text folds into <details>


def _criteria(request: Request, candidate_id: int, name: str) -> dict[str, Any]:
    """The candidate's per-criterion table from their complete gradings (grade and final; the
    latest per lab counts), limited to ``?certification=ID`` when given. A run folder that fails
    verification is listed, not counted."""
    from labkit.usecases.summary import summarize

    t = translator(request.state.lang)
    lang = request.state.lang
    with _db(request).session() as s:
        rows = s.scalars(select(GradingRun).where(GradingRun.candidate_id == candidate_id,
                                                  GradingRun.status == "complete",
                                                  GradingRun.mode.in_(("grade", "final")))
                         .order_by(GradingRun.started_at, GradingRun.id)).all()
        folders = {r.run_id: r.id for r in rows if r.run_id}
    wanted = request.query_params.get("certification", "").strip()
    error = None
    try:
        summary = summarize(request.app.state.ctx, list(folders), name, [wanted] if wanted else None)
    except UserError:
        error = t("crit_unknown_cert", value=repr(wanted[:60]))
        wanted = ""
        summary = summarize(request.app.state.ctx, list(folders), name)
    link = {run.run_id: folders[ref] for ref, run in summary.runs.items()}
    view_rows = []
    for r in summary.rows:
        crit = r.criterion
        view_rows.append({
            "certification": crit.certification, "code": crit.code, "id": crit.id, "text": crit.text,
            "long": len(crit.text) > LONG_TEXT, "status": r.status,
            "checks": [{"id": c.check_id, "title": c.title.get(lang), "status": c.status,
                        "message": c.message.get(lang), "run": c.run_id,
                        "href": f"/runs/{link[c.run_id]}#check-{c.check_id}" if c.run_id in link else None}
                       for c in r.checks]})
    return {"rows": view_rows, "counts": summary.counts, "has_runs": bool(folders),
            "options": [(c, summary.certifications.get(c, c)) for c in summary.cited]
            + ([(wanted, summary.certifications.get(wanted, wanted))] if wanted and wanted not in summary.cited
               else []),
            "selected": wanted, "error": error,
            "unverifiable": [{"run": u.ref, "message": u.message, "href": f"/runs/{folders[u.ref]}"}
                             for u in summary.unverifiable]}


# ----------------------------------------------------------------------------- candidates (staff)
@router.get("/candidates/{candidate_id}", response_class=HTMLResponse)
def candidate_page(request: Request, candidate_id: int, who: Staff) -> Response:
    with _db(request).session() as s:
        cand = s.get(Candidate, candidate_id)
        if cand is None:
            raise NotFound()
        view = {"id": cand.id, "name": cand.name, "login": cand.user.login, "instance": cand.instance,
                "status": cand.status, "detail": cand.detail, "cohort_id": cand.cohort_id,
                "cohort": cand.cohort.name}
        runs = [_run_row(r) for r in repo.latest_runs(s, cand, limit=500)]
        recs = [_rec_row(r) for r in repo.recordings_of(s, cand)]
    return render(request, "candidate.html", who=who, cand=view, runs=runs, recordings=recs,
                  criteria=_criteria(request, candidate_id, view["name"]))


@router.get("/candidates/{candidate_id}/bundle.zip")
def candidate_bundle(request: Request, candidate_id: int, who: Staff) -> Response:
    """The candidate's signed portfolio bundle (labkit bundle --candidate), built now."""
    from labkit.adapters.security.keyring import Keyring
    from labkit.usecases.bundle import bundle_candidate, slug
    from labkit.usecases.summary import seat_ref

    with _db(request).session() as s:
        cand = s.get(Candidate, candidate_id)
        if cand is None:
            raise NotFound()
        name, instance = cand.name, cand.instance
    ctx = request.app.state.ctx
    t = translator(request.state.lang)
    if Keyring(ctx.settings.home / "keys").signer() is None:
        return error_page(request, 409, message=t("bundle_no_key"))
    ref = seat_ref(ctx, name, instance)
    if ref is None:
        return error_page(request, 409, message=t("bundle_no_grade", name=name))
    stem = slug(name) or instance
    with tempfile.TemporaryDirectory(prefix="labkit-web-bundle-") as tmp:
        try:
            result = bundle_candidate(ctx, ref, Path(tmp) / f"{stem}.zip", lang=request.state.lang)
        except LabkitError as exc:
            return error_page(request, 409, message=f"{t('error_prefix')} {exc}")
        data = result.path.read_bytes()
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{stem}.zip"'})


def _run_row(r: GradingRun) -> dict[str, Any]:
    return {"id": r.id, "mode": r.mode, "status": r.status, "score": r.score, "max_score": r.max_score,
            "started_at": r.started_at, "finished_at": r.finished_at, "error": r.error, "run_id": r.run_id}


def _rec_row(r: Recording) -> dict[str, Any]:
    return {"id": r.id, "node": r.node, "channel": r.channel, "started_at": r.started_at, "ended_at": r.ended_at,
            "size": r.size_bytes}


@router.post("/candidates/{candidate_id}/reset")
def candidate_reset(request: Request, candidate_id: int, who: Trainer) -> Response:
    request.state.who = who
    with _db(request).session() as s:
        cand = s.get(Candidate, candidate_id)
        if cand is None:
            raise NotFound()
        cohort_id, name = cand.cohort_id, cand.name
    return _cohort_action(request, cohort_id, lambda: _exam(request).reset(candidate_id), "reset_notice",
                          name=_q(name))


def _q(text: str) -> str:
    return quote(text, safe="")


# ----------------------------------------------------------------------------- runs and reports
@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, who: Staff) -> Response:
    with _db(request).session() as s:
        q = (select(GradingRun, Candidate, Cohort).join(Candidate, GradingRun.candidate_id == Candidate.id)
             .join(Cohort, Candidate.cohort_id == Cohort.id)
             .order_by(GradingRun.started_at.desc(), GradingRun.id.desc()).limit(1000))
        rows = [{**_run_row(r), "candidate": c.name, "candidate_id": c.id, "cohort": co.name}
                for r, c, co in s.execute(q)]
    return render(request, "runs.html", who=who, runs=rows)


def _sealed_run(request: Request, run_id: int) -> Any:
    """The verified run folder of a complete grading (404 otherwise), or the 409 page saying
    it was modified after sealing."""
    from labkit.adapters.storage.runs import open_run

    with _db(request).session() as s:
        row = s.get(GradingRun, run_id)
        if row is None or row.status != "complete" or not row.run_id:
            raise NotFound()
        folder = row.run_id
    try:
        return open_run(request.app.state.ctx.settings.runs, folder)
    except UnknownRunError:
        raise NotFound() from None
    except EvidenceIntegrityError as exc:
        return error_page(request, 409, message=translator(request.state.lang)("integrity_error", message=str(exc)))


@router.get("/runs/{run_id}")
def run_report(request: Request, run_id: int, who: Anyone) -> Response:
    """The proof report of a complete grading, rendered from its sealed run folder."""
    from labkit.domain.report import render_html, render_json

    stored = _sealed_run(request, run_id)
    if isinstance(stored, Response):
        return stored
    if request.query_params.get("format") == "json":
        return JSONResponse(json.loads(json.dumps(render_json(stored, request.state.lang), default=str)))
    return HTMLResponse(render_html(stored, request.state.lang))


@router.get("/runs/{run_id}/report.pdf")
def run_report_pdf(request: Request, run_id: int, who: Anyone) -> Response:
    """The proof report as PDF (A4, the centre's key on every page), from the sealed run folder."""
    from labkit.adapters.render.pdf import html_to_pdf
    from labkit.domain.report import render_html

    stored = _sealed_run(request, run_id)
    if isinstance(stored, Response):
        return stored
    pdf = html_to_pdf(render_html(stored, request.state.lang), base_url=str(stored.path))
    filename = f"{stored.run_id}.{request.state.lang}.pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# ----------------------------------------------------------------------------- recordings
def _recording(request: Request, recording_id: int) -> tuple[dict[str, Any], Any]:
    with _db(request).session() as s:
        rec = s.get(Recording, recording_id)
        if rec is None:
            raise NotFound()
        view = {**_rec_row(rec), "candidate": rec.candidate.name, "candidate_id": rec.candidate_id}
        try:
            path = _exam(request).recording_file(rec)
        except UserError:
            raise NotFound() from None
    if not path.is_file():
        raise NotFound()
    return view, path


ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1bO.|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b.?")


def typed_lines(keys: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """Keystrokes as the command lines they made, each with the time of its first key: Enter
    ends a line, Backspace removes a character, Ctrl-C shows as ^C, arrows and other escape
    sequences are left out (what a line became after editing is what the console shows)."""
    lines: list[tuple[float, str]] = []
    buf, start = "", None
    for at, data in keys:
        for ch in ESCAPES.sub("", data):
            if start is None:
                start = at
            if ch in "\r\n":
                lines.append((start, buf or "⏎"))  # a bare Enter (often after an arrow key)
                buf, start = "", None
            elif ch in "\x7f\b":
                buf = buf[:-1]
            elif ch == "\x03":
                lines.append((start, buf + "^C"))
                buf, start = "", None
            elif ch == "\t":
                buf += "⇥"
            elif ch.isprintable():
                buf += ch
    if buf:
        lines.append((start or 0.0, buf))
    return lines


@router.get("/recordings/{recording_id}", response_class=HTMLResponse)
def recording_page(request: Request, recording_id: int, who: Anyone) -> Response:
    from labkit.adapters.recording.asciicast import read_events

    view, path = _recording(request, recording_id)
    output: list[str] = []
    keys: list[tuple[float, str]] = []
    size = 0
    try:
        for ev in read_events(path):
            size += len(ev.data)
            if size > 8 << 20:  # the page shows the first 8 MiB; the download has it all
                break
            if ev.code == "o":
                output.append(ev.data)
            elif ev.code == "i":
                keys.append((ev.time, ev.data))
    except UserError as exc:
        return error_page(request, 409, message=str(exc))
    text = ANSI.sub("", "".join(output).replace("\r\n", "\n")).replace("\r", "")
    return render(request, "recording.html", who=who, rec=view, output=text, typed=typed_lines(keys))


@router.get("/recordings/{recording_id}/raw")
def recording_raw(request: Request, recording_id: int, who: Anyone) -> Response:
    view, path = _recording(request, recording_id)
    return Response(path.read_bytes(), media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="recording-{view["id"]}.cast"'})


# ----------------------------------------------------------------------------- candidate
def _me(request: Request, who: Principal) -> dict[str, Any] | None:
    exam = _exam(request)
    lang = request.state.lang
    if who.candidate_id is None:
        return None
    with _db(request).session() as s:
        cand = s.get(Candidate, who.candidate_id)
        if cand is None:
            return None
        cohort = cand.cohort
        runs = [_run_row(r) for r in repo.latest_runs(s, cand, limit=200)]
        view = {"id": cand.id, "name": cand.name, "instance": cand.instance, "status": cand.status,
                "cohort": cohort.name, "lab": cohort.lab_id, "open": exam_is_open(cohort),
                "over": exam_is_over(cohort), "start": cohort.exam_start, "end": cohort.exam_end}
        recs = [_rec_row(r) for r in repo.recordings_of(s, cand)]
        stored_keys = cand.user.ssh_public_key
    brief = nodes = None
    if view["status"] == "up":
        try:
            brief = exam.lab.brief(view["instance"], lang)
            nodes = exam.lab.nodes(view["instance"])
        except LabkitError:
            brief = None
    running = next((r for r in runs if r["status"] == "running"), None)
    selfcheck = next((r for r in runs if r["mode"] == "selfcheck" and r["status"] == "complete"), None)
    hints = _hints(request, selfcheck["run_id"]) if selfcheck else None
    host = request.app.state.ssh_host or request.url.hostname or "127.0.0.1"
    return {"cand": view, "runs": [r for r in runs if r["mode"] != "selfcheck"], "running": running,
            "criteria": _criteria(request, view["id"], view["name"]),
            "selfcheck": selfcheck, "hints": hints, "brief": brief, "nodes": nodes or [], "recordings": recs,
            "ssh_host": host, "ssh_port": request.app.state.ssh_port, "login": who.login,
            "ssh_keys": Exam.ssh_key_prints(stored_keys)}


def _hints(request: Request, run_folder: str) -> list[dict[str, Any]] | None:
    """Per check of a self-check: verdict, what was observed, and the check's hint (its doc)."""
    from labkit.adapters.storage.runs import open_run

    lang = request.state.lang
    try:
        stored = open_run(request.app.state.ctx.settings.runs, run_folder)
    except LabkitError:
        return None
    return [{"title": c.title.get(lang), "status": c.status, "message": c.message.get(lang),
             "hint": c.doc.get(lang) if c.doc else ""} for c in stored.summary.checks]


@router.get("/me", response_class=HTMLResponse)
def me_page(request: Request, who: CandidateUser) -> Response:
    return render(request, "me.html", who=who, me=_me(request, who), notice=_notice(request))


@router.get("/me/status.json")
def me_status(request: Request, who: CandidateUser) -> Response:
    if who.candidate_id is None:
        return JSONResponse({"running": None, "status": None})
    with _db(request).session() as s:
        cand = s.get(Candidate, who.candidate_id)
        runs = repo.latest_runs(s, who.candidate_id, limit=1)
        return JSONResponse({"status": cand.status if cand else None,
                             "running": runs[0].mode if runs and runs[0].status == "running" else None,
                             "last": runs[0].id if runs else None})


def _candidate_action(request: Request, who: Principal, mode: str) -> Response:
    if who.candidate_id is None:
        return render(request, "me.html", 409, who=who, me=None)
    exam = _exam(request)
    try:
        if mode == "selfcheck":
            exam.selfcheck(who.candidate_id, who.user_id)
        else:
            exam.submit(who.candidate_id, who.user_id)
    except LabkitError as exc:
        status = 429 if isinstance(exc, RateLimited) else 409
        response = render(request, "me.html", status, who=who, me=_me(request, who), error=_message(request, exc))
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return redirect(f"/me?notice={'selfcheck_started' if mode == 'selfcheck' else 'submit_started'}")


@router.post("/me/selfcheck")
def me_selfcheck(request: Request, who: CandidateUser) -> Response:
    return _candidate_action(request, who, "selfcheck")


@router.post("/me/submit")
def me_submit(request: Request, who: CandidateUser) -> Response:
    return _candidate_action(request, who, "grade")


@router.post("/me/sshkey")
def me_sshkey(request: Request, who: CandidateUser,
              ssh_public_key: Annotated[str, Form(max_length=20000)] = "") -> Response:
    """The candidate's own SSH public keys, for the bastion (their account only: no id in the path)."""
    try:
        prints = _exam(request).set_ssh_keys(who.user_id, ssh_public_key)
    except LabkitError as exc:
        return render(request, "me.html", 400, who=who, me=_me(request, who), error=_message(request, exc),
                      ssh_text=ssh_public_key)
    return redirect(f"/me?notice=ssh_keys_saved&n={len(prints)}")

