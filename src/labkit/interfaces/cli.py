"""The ``labkit`` command line. Thin: parse, call a use case, print.

User errors (:class:`labkit.errors.LabkitError`) print one sentence on stderr and exit
non-zero without a traceback; anything else is a bug and keeps its traceback.

Much of what is printed comes from outside labkit: lab files, rosters, and above all the
candidate's systems (sysName, alert names, banners quoted in check messages). So the consoles
never interpret rich markup or emoji codes (``[/]``, ``[link=...]``, ``:smile:`` print as
they are), styles are applied with :class:`rich.text.Text` only, and control characters
(terminal escape sequences) are shown as ``\\xNN`` instead of reaching the terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from labkit import __version__
from labkit.errors import LabkitError, UserError
from labkit.models.results import GradeSummary

out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: Any) -> str:
    """``value`` as text safe for a terminal: control characters (escape sequences, carriage
    returns) become ``\\xNN``; newlines and tabs stay. Markup is never interpreted anyway."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))

STATUS_STYLE = {"pass": "green", "fail": "red", "error": "yellow"}
STATUS_WORD = {"fr": {"pass": "réussi", "fail": "échoué", "error": "erreur"},
               "en": {"pass": "pass", "fail": "fail", "error": "error"}}


def _ctx() -> Any:
    from labkit.usecases.lifecycle import Context

    return Context.default()


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_score_table(summary: GradeSummary, lang: str = "fr", hints: dict[str, str] | None = None) -> None:
    t = Table(title=plain(f"{summary.lab_id} — {summary.instance} — {summary.score}/{summary.max_score}"))
    t.add_column("check")
    t.add_column("verdict")
    t.add_column("points", justify="right")
    t.add_column("message")
    for c in summary.checks:
        msg = c.message.get(lang)
        if hints and c.status != "pass" and c.id in hints:
            msg += f"\n→ {hints[c.id]}"
        t.add_row(plain(c.id), Text(STATUS_WORD[lang][c.status], style=STATUS_STYLE[c.status]),
                  f"{c.points}/{c.max_points}", plain(msg))
    out.print(t)
    out.print(plain(f"run: {summary.run_id}"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labkit")
def cli() -> None:
    """labkit: hands-on infrastructure labs, graded from evidence."""


# ------------------------------------------------------------------ labs
@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--provider", help="Also check that this provider offers what every check needs (netns, proxmox, gns3).")
def validate(paths: tuple[str, ...], provider: str | None) -> None:
    """Validate lab definitions (a lab id, a lab.yaml or its folder)."""
    from labkit.usecases.lifecycle import check_provider_fits, load_lab_checked

    ctx = _ctx()
    failed = 0
    for p in paths:
        warnings: list[str] = []
        try:
            lab = load_lab_checked(ctx, p)
            fits = "" if provider is None else \
                f"; graded on {provider} ({check_provider_fits(ctx, lab, provider, warn=warnings.append)})"
        except LabkitError as exc:
            failed += 1
            err.print(Text.assemble(("✗", "red"), plain(f" {p}: {exc}")))
        else:
            out.print(plain(f"✓ {lab.lab_file}: {lab.spec.id}, {len(lab.spec.checks)} checks, "
                            f"{len(lab.spec.variants)} variants, {len(lab.spec.cheats)} cheats{fits}"))
            for w in warnings:
                out.print(Text.assemble(("!", "yellow"), plain(f" {w}")))
    if failed:
        sys.exit(1)


@cli.command("labs")
def labs_cmd() -> None:
    """List the labs of this project."""
    from labkit.domain.labs import list_labs

    for row in list_labs(_ctx().settings):
        if row.ok:
            title = row.title.get("en") if row.title else ""
            out.print(plain(f"{row.id}  {title}  ({row.topology}; {row.checks} checks, {row.max_points} points, "
                            f"{row.variants} variants, {row.cheats} cheats)"))
        else:
            n = len(row.problems)
            out.print(Text.assemble(plain(f"{row.id}  "), ("invalid", "red"),
                                    plain(f": {n} problem{'s' if n != 1 else ''}; "
                                          f"labkit validate {row.lab_file} lists them")))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr")
def criteria(as_json: bool, lang: str) -> None:
    """List the referential criteria labs can evidence."""
    from labkit.domain.criteria import format_catalog, load_catalog

    rows = format_catalog(load_catalog(), lang)
    if as_json:
        _print_json(rows)
        return
    t = Table()
    for col in ("id", "certification", "code", "text"):
        t.add_column(col)
    for r in rows:
        t.add_row(*(plain(r.get(k, "")) for k in ("id", "certification", "code", "text")))
    out.print(t)


@cli.command()
@click.argument("name")
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr")
def brief(name: str, lang: str) -> None:
    """Print the candidate brief of an instance, with its own parameters."""
    from labkit.domain.labs import render_brief
    from labkit.usecases.lifecycle import load_lab_checked

    ctx = _ctx()
    state = ctx.store.load(name)
    lab = load_lab_checked(ctx, state.plan.lab_dir)
    click.echo(render_brief(lab, state.plan.params, lang))


@cli.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder to write lab.schema.json and topology.schema.json (default: labs/ and topologies/).")
def schema(out_dir: Path | None) -> None:
    """Export the JSON Schemas of lab and topology files, for editors."""
    from labkit.domain.schema import export_schemas, write_project_schemas

    written = export_schemas(out_dir) if out_dir else write_project_schemas(_ctx().settings.project)
    for path in written:
        out.print(plain(f"wrote {path}"))


# ------------------------------------------------------------- lifecycle
_VANTAGE_HELP = ("Where the grader's probes run: in labkit's process (inprocess) or in the grader agent "
                 "over SSH (agent); default: the provider's (netns: inprocess, proxmox: agent).")


@cli.command()
@click.argument("lab")
@click.option("--instance", "-i", help="Instance name (default: the lab id).")
@click.option("--seed", type=int, help="Seed of the per-instance parameters (default: random).")
@click.option("--candidate", help="Candidate name recorded in grades and reports.")
@click.option("--provider", default="netns", show_default=True)
@click.option("--vantage", type=click.Choice(["inprocess", "agent"]),
              help=_VANTAGE_HELP)
def up(lab: str, instance: str | None, seed: int | None, candidate: str | None, provider: str,
       vantage: str | None) -> None:
    """Bring up an instance of LAB."""
    from labkit.usecases import lifecycle

    state = lifecycle.up(_ctx(), lab, instance=instance, seed=seed, candidate=candidate, provider=provider,
                         vantage=vantage)
    out.print(plain(f"instance {state.name} is up ({len(state.plan.nodes)} nodes, seed {state.plan.seed}); "
                    f"brief: labkit brief {state.name}; shell: labkit console {state.name} NODE"))


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def status(name: str | None, as_json: bool) -> None:
    """Show instances and their nodes."""
    from labkit.usecases import lifecycle

    ctx = _ctx()
    items = [lifecycle.status(ctx, name)] if name else lifecycle.status_all(ctx)
    if as_json:
        _print_json([s.model_dump(mode="json") for s in items] if not name else items[0].model_dump(mode="json"))
        return
    if not items:
        out.print("no instance")
    for s in items:
        t = Table(title=plain(f"{s.name} ({s.lab_id}, {s.provider}, {s.phase})"))
        t.add_column("node")
        t.add_column("present")
        t.add_column("processes", justify="right")
        t.add_column("services")
        for n in s.nodes:
            svc = " ".join(f"{k}:{'up' if v else 'DOWN'}" for k, v in n.services.items())
            t.add_row(plain(n.name), "yes" if n.present else "NO", str(n.processes), plain(svc))
        out.print(t)
    if name and (lines := lifecycle.access_lines(ctx, name)):
        out.print("candidate's access:")
        for line in lines:
            out.print(plain(f"  {line}"))


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=600.0, show_default=True)
def exec_cmd(name: str, node: str, command: tuple[str, ...], timeout: float) -> None:
    """Run a command in NODE: labkit exec NAME NODE -- CMD..."""
    from labkit.usecases import lifecycle

    res = lifecycle.exec_in(_ctx(), name, node, list(command), timeout=timeout)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    sys.exit(res.rc)


@cli.command()
@click.argument("name")
@click.argument("node")
def console(name: str, node: str) -> None:
    """Open an interactive root shell in NODE."""
    from labkit.usecases import lifecycle

    argv = lifecycle.console_argv(_ctx(), name, node)
    os.execvp(argv[0], argv)


@cli.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Remove every instance.")
def down(name: str | None, all_: bool) -> None:
    """Remove an instance and everything it made."""
    from labkit.usecases import lifecycle

    ctx = _ctx()
    if all_ and not name:
        done = lifecycle.down_all(ctx)
    elif name and not all_:
        done = {name: lifecycle.down(ctx, name)}
    else:
        raise UserError("give an instance name or --all (not both); 'labkit status' lists instances.")
    for n, removed in done.items():
        out.print(plain(f"instance {n} removed ({len(removed)} items)"))


# ------------------------------------------------------------- grading
@cli.command()
@click.argument("name")
@click.option("--variant", help="Apply a faulty variant or a cheat instead of the reference solution.")
@click.option("--no-wait", is_flag=True, help="Do not wait for routing to settle.")
def solve(name: str, variant: str | None, no_wait: bool) -> None:
    """Apply the reference solution (or a faulty variant, or a cheat) to an instance."""
    from labkit.usecases.solve import solve as do_solve

    res = do_solve(_ctx(), name, variant=variant, wait=0 if no_wait else 60)
    settled = "" if res.converged_after is None else f", routing settled after {res.converged_after:.1f} s"
    out.print(plain(f"applied {variant or 'reference solution'} to {name} in {res.duration:.1f} s{settled}"))


VANTAGE_OPTION = click.option(
    "--vantage", type=click.Choice(["inprocess", "agent"]), default=None,
    help="Where the grader's probes run: in labkit's process, or in the instance's grader agent over SSH "
         "(the instance must have been brought up with --vantage agent). Default: the instance's own.")


def _grade(name: str, as_json: bool, lang: str, checks: tuple[str, ...], mode: str,
           save_json: Path | None = None, vantage: str | None = None) -> None:
    from labkit.usecases.grade import grade as do_grade
    from labkit.usecases.lifecycle import load_lab_checked

    ctx = _ctx()
    summary = do_grade(ctx, name, mode=mode, only=list(checks) or None, vantage=vantage)
    if save_json:
        save_json.parent.mkdir(parents=True, exist_ok=True)
        save_json.write_text(json.dumps(summary.to_public(lang), indent=2, ensure_ascii=False))
    if as_json:
        _print_json(summary.to_public(lang))
    else:
        hints = None
        if mode == "selfcheck":
            state = ctx.store.load(name)
            lab = load_lab_checked(ctx, state.plan.lab_dir)
            hints = {c.id: c.doc.get(lang) for c in lab.spec.checks if c.doc}
        print_score_table(summary, lang, hints)
    from labkit.usecases.keys import unsigned_warning
    if warning := unsigned_warning(ctx, summary):
        err.print(plain(warning))
    if summary.score != summary.max_score:
        sys.exit(10)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr")
@click.option("--check", "checks", multiple=True, help="Only this check (repeatable).")
@click.option("--save-json", type=click.Path(path_type=Path), help="Also write the JSON result to this file.")
@VANTAGE_OPTION
def grade(name: str, as_json: bool, lang: str, checks: tuple[str, ...], save_json: Path | None,
          vantage: str | None) -> None:
    """Grade an instance and record the run (exit 10 if not full marks)."""
    _grade(name, as_json, lang, checks, "grade", save_json, vantage)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr")
@click.option("--check", "checks", multiple=True)
@VANTAGE_OPTION
def check(name: str, as_json: bool, lang: str, checks: tuple[str, ...], vantage: str | None) -> None:
    """Self-check while working: the same checks, with hints on what is observed."""
    _grade(name, as_json, lang, checks, "selfcheck", vantage=vantage)


@cli.command()
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "pdf"]), default="html", show_default=True)
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def report(run: str, fmt: str, lang: str, output: Path | None) -> None:
    """Render the proof report of a grading RUN (id or folder), from its stored evidence."""
    from labkit.adapters.storage.runs import open_run
    from labkit.domain.report import render_html, render_json

    if fmt == "pdf" and output is None and sys.stdout.isatty():
        raise UserError("a PDF is not for a terminal: write it to a file with -o FILE.pdf (or redirect stdout)")
    stored = open_run(_ctx().settings.runs, run)
    if fmt == "pdf":
        from labkit.adapters.render.pdf import html_to_pdf

        data = html_to_pdf(render_html(stored, lang), base_url=str(stored.path))
    else:
        text = render_html(stored, lang) if fmt == "html" else json.dumps(
            render_json(stored, lang), indent=2, ensure_ascii=False, default=str)
        if output is None:
            click.echo(text)
            return
        data = text.encode("utf-8")
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from labkit.adapters.storage.files import write_atomic

    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, data)  # never a half-written report
    out.print(plain(f"report written to {output}"))


@cli.group()
def cohort() -> None:
    """One instance per candidate of a roster: up, retry, status, grade, down."""


def _print_cohort(c: Any) -> None:
    t = Table(title=plain(f"cohort {c.name} — {c.lab} — seed {c.seed}"))
    for col in ("candidate", "instance", "seed", "status", "score", "detail"):
        t.add_column(col)
    for s in c.seats:
        t.add_row(*(plain(v) for v in (s.candidate, s.instance, s.seed, s.status, s.score or "", s.detail)))
    out.print(t)


def _cohort_progress(label: str) -> Any:
    """A live progress display on stderr (done/failed/total, elapsed) for a cohort operation,
    and the ``on_event`` callback that feeds it; a seat that fails gets a line of its own."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def display() -> Any:
        progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                            TextColumn("{task.fields[counts]}", markup=False), TimeElapsedColumn(),
                            console=err, transient=False)
        task = None

        def on_event(ev: Any) -> None:  # from the use case's worker threads; rich locks
            nonlocal task
            if task is None:  # the display starts with the first event: none on bad input
                progress.start()
                task = progress.add_task(label, total=ev.total, counts="")
            counts = f"{ev.done - ev.failed} ok, {ev.failed} failed, {ev.done}/{ev.total}"
            progress.update(task, completed=ev.done, counts=counts)
            if not ev.ok:
                progress.console.print(Text(plain(f"{ev.candidate} ({ev.instance}): {ev.phase}: {ev.error}"),
                                            style="red"))

        try:
            yield on_event
        finally:
            if task is not None:
                progress.stop()

    return display()


_PARALLEL_HELP = "How many seats at once (default {}); the others wait their turn."


@cohort.command("up")
@click.argument("lab")
@click.argument("roster", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Cohort name; instances are NAME-01, NAME-02...")
@click.option("--seed", type=int, help="Cohort seed (default: random); the same seed rebuilds the same cohort.")
@click.option("--parallel", type=int, default=4, show_default=True, help=_PARALLEL_HELP.format(4))
@click.option("--provider", default="netns", show_default=True, help="Where every seat runs (netns, proxmox, gns3).")
@click.option("--vantage", type=click.Choice(["inprocess", "agent"]), help=_VANTAGE_HELP)
def cohort_up_cmd(lab: str, roster: Path, name: str, seed: int | None, parallel: int, provider: str,
                  vantage: str | None) -> None:
    """Bring up one instance of LAB per candidate in ROSTER (failed seats: 'labkit cohort retry')."""
    from labkit.usecases.cohort import cohort_up

    with _cohort_progress(f"cohort {name}: launching") as on_event:
        c = cohort_up(_ctx(), lab, roster, name=name, seed=seed, parallel=parallel, on_event=on_event,
                      provider=provider, vantage=vantage)
    _print_cohort(c)
    if any(s.status != "up" for s in c.seats):
        err.print(plain(f"some seats failed; launch them again with 'labkit cohort retry {c.name}'."))
        sys.exit(4)


@cohort.command("retry")
@click.argument("name")
@click.argument("candidates", nargs=-1)
@click.option("--parallel", type=int, default=4, show_default=True, help=_PARALLEL_HELP.format(4))
def cohort_retry_cmd(name: str, candidates: tuple[str, ...], parallel: int) -> None:
    """Launch again, with the same seeds, the failed seats of cohort NAME (or only CANDIDATES,
    by name or instance)."""
    from labkit.usecases.cohort import cohort_retry

    with _cohort_progress(f"cohort {name}: retrying") as on_event:
        c = cohort_retry(_ctx(), name, list(candidates), parallel=parallel, on_event=on_event)
    _print_cohort(c)
    if any(s.status not in ("up", "graded") for s in c.seats):
        sys.exit(4)


@cohort.command("status")
@click.argument("name")
def cohort_status_cmd(name: str) -> None:
    """Show who has which instance."""
    from labkit.usecases.cohort import load

    _print_cohort(load(_ctx(), name))


@cohort.command("grade")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("--parallel", type=int, default=30, show_default=True,
              help="How many gradings at once (default 30: a grading mostly waits; never two of one instance).")
def cohort_grade_cmd(name: str, as_json: bool, parallel: int) -> None:
    """Grade every instance of the cohort (a failure on one is recorded, the rest go on)."""
    from labkit.usecases.cohort import cohort_grade

    with _cohort_progress(f"cohort {name}: grading") as on_event:
        c = cohort_grade(_ctx(), name, parallel=parallel, on_event=on_event)
    if as_json:
        _print_json(c.to_json())
    else:
        _print_cohort(c)


@cohort.command("down")
@click.argument("name")
def cohort_down_cmd(name: str) -> None:
    """Remove every instance of the cohort."""
    from labkit.usecases.cohort import cohort_down

    with _cohort_progress(f"cohort {name}: removing") as on_event:
        c = cohort_down(_ctx(), name, on_event=on_event)
    _print_cohort(c)
    if any(s.status != "removed" for s in c.seats):
        sys.exit(4)


@cohort.command("sheet")
@click.argument("name")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write here (mode 0600) instead of stdout.")
def cohort_sheet_cmd(name: str, output: Path | None) -> None:
    """The login sheet (HTML, one A4 page per candidate) of a cohort created in the portal."""
    from labkit.usecases.exam import Exam

    ctx = _ctx()
    text = Exam.sheet_of(ctx, name)
    if output is None:
        click.echo(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # it holds passwords
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    out.print(plain(f"login sheet written to {output} (readable by you only: it holds passwords)"))


# ------------------------------------------------------------- exam portal
@cli.command()
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address of the portal and the bastion.")
@click.option("--port", type=int, default=8000, show_default=True, help="Portal (HTTP) port.")
@click.option("--ssh-port", type=int, default=2222, show_default=True, help="SSH bastion port (0: no bastion).")
@click.option("--secure-cookies", is_flag=True, help="Mark cookies Secure (portal served over HTTPS by a proxy).")
def serve(listen: str, port: int, ssh_port: int, secure_cookies: bool) -> None:
    """Run the exam portal and the SSH bastion (accounts: 'labkit user add')."""
    from labkit.interfaces.web.server import serve as run_server

    out.print(plain(f"portal: http://{listen}:{port}/" + (f"  SSH bastion: port {ssh_port}" if ssh_port else "")))
    run_server(_ctx(), listen=listen, port=port, ssh_port=ssh_port or None, secure_cookies=secure_cookies)


@cli.group()
def user() -> None:
    """Portal accounts of trainers and assessors (candidates get theirs with their cohort)."""


@user.command("add")
@click.argument("login")
@click.option("--role", type=click.Choice(["trainer", "assessor"]), required=True)
@click.option("--name", "display_name", help="Name shown in the portal (default: the login).")
def user_add_cmd(login: str, role: str, display_name: str | None) -> None:
    """Create an account and print its generated password, once."""
    from labkit.interfaces.web.server import open_database
    from labkit.usecases.exam import Exam

    ctx = _ctx()
    db = open_database(ctx)
    exam = Exam(ctx, db)
    try:
        account, password = exam.add_user(login, role, display_name)
    finally:
        exam.close()
        db.dispose()
    out.print(plain(f"{role} {account.login} created; password (shown once, write it down): {password}"))


@cli.command()
def runs() -> None:
    """List grading runs, newest first."""
    from labkit.adapters.storage.runs import list_runs

    for r in list_runs(_ctx().settings.runs):
        keys = ("id", "lab", "instance", "candidate", "score", "max", "date")
        out.print(plain("  ".join(str(r.get(k, "")) for k in keys)))


# Commands kept in their own modules; importing them registers them on ``cli``.
from labkit.interfaces import cli_agent, cli_bundle, cli_doctor, cli_gradebook, cli_keys, cli_summary, cli_templates, cli_verify  # noqa: E402,F401,E501


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="labkit", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("labkit: interrupted.")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except LabkitError as exc:
        err.print(plain(f"labkit: error: {exc}"))
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
