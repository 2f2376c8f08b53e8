"""Issue 10's "Done when", tried as a new user would, with the command line only: make the
centre key, grade routing-multisite (reference solution), bundle the candidate, unzip it into
another folder, verify the zip and the folder, open the index and a report offline in
Debian's Chromium, render index.pdf's pages, change one byte and see `verify` name the file.
The private key appears nowhere in the bundle, the folder or what the commands printed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import LabEnv, down_leaves_nothing
from tests.usecases.secrets_check import private_key_forms

pytestmark = [pytest.mark.root, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
NAME = "bnd-e2e"
CANDIDATE = "Nadia Benali"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if d.get("id"):
            self.ids.add(str(d["id"]))
        for k in ("href", "src"):
            if d.get(k):
                self.refs.append(str(d[k]))


def _links(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _check_links(page: Path, root: Path) -> int:
    """Every link of ``page`` is relative and names a file of the bundle (and its anchor exists)."""
    n = 0
    for ref in _links(page).refs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc and not ref.startswith("/"), f"{page.name}: {ref}"
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        assert target.is_file() and target.is_relative_to(root.resolve()), f"{page.name}: {ref} -> {target}"
        if parts.fragment and target.suffix == ".html":
            assert parts.fragment in _links(target).ids, f"{page.name}: {ref}: no such anchor"
        n += 1
    return n


def _flip_entry_byte(zip_path: Path, entry: str) -> None:
    """Change one byte of ``entry``'s data inside the zip (not its header)."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(entry)
    data = bytearray(zip_path.read_bytes())
    off = info.header_offset
    name_len = int.from_bytes(data[off + 26:off + 28], "little")
    extra_len = int.from_bytes(data[off + 28:off + 30], "little")
    start = off + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0x01
    zip_path.write_bytes(bytes(data))


@pytest.mark.skipif(not CHROMIUM.exists() or shutil.which("pdftoppm") is None,
                    reason="needs Debian's chromium and poppler-utils")
def test_grade_bundle_unzip_verify_open_offline(lab_env: LabEnv, tmp_path: Path) -> None:
    outputs: list[str] = []

    def labkit(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        if env is None:
            proc = lab_env.labkit(*args, check=check)
        else:
            proc = subprocess.run([*_python(), "-m", "labkit", *args], env=env, capture_output=True, text=True,
                                  timeout=300, cwd=Path(__file__).parents[2])
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    labkit("keys", "init", "--centre", "Centre de formation E2E")
    labkit("up", "routing-multisite", "--instance", NAME, "--seed", "4242", "--candidate", CANDIDATE)
    try:
        labkit("solve", NAME)
        graded = labkit("grade", NAME, "--json")
        assert '"score": 100' in graded.stdout, graded.stdout
    finally:
        down_leaves_nothing(lab_env, NAME)

    out = tmp_path / "out" / "nadia.zip"
    made = labkit("bundle", "--candidate", CANDIDATE, "-o", str(out))
    assert "nadia.zip" in made.stdout and out.is_file()

    # a jury: unzips elsewhere, holds the centre's public key only, no labkit state
    jury = tmp_path / "jury"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(jury)
    folder = jury / "nadia"
    keyfile = tmp_path / "pub"
    labkit("keys", "export", str(keyfile))
    jury_env = {**lab_env.env, "LABKIT_HOME": str(tmp_path / "jury-home")}
    for target in (out, folder):
        ok = labkit("verify", str(target), "--key", str(keyfile / "centre.pub"), env=jury_env, check=False)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert labkit("verify", str(target), check=False).returncode == 0  # the centre's own keyring

    # offline in Chromium: index, English index, one report; nothing but files requested
    index = folder / "index.html"
    assert _check_links(index, folder) > 20
    assert _check_links(folder / "index.en.html", folder) > 20
    run_id = next((folder / "runs").iterdir()).name
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page()

            def route(r: object) -> None:
                url = r.request.url  # type: ignore[attr-defined]
                if url.startswith("file://"):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    requested.append(url)
                    r.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.goto(index.as_uri())
            assert page.title().endswith(CANDIDATE)
            assert page.locator("table.summary tbody tr").count() > 5
            assert page.locator(".badge.s-acquired").count() >= 1
            # a card (quoted text, checks) per assessed criterion, one line per criterion nobody assessed
            cards = page.locator("div.criterion").count()
            assert cards >= 3 and page.locator("div.criterion blockquote").count() == cards
            assert page.locator("div.criterion div.chk div.ev a").count() > 20  # evidence links
            assert page.locator("ul.unassessed li").count() > 10
            assert cards + page.locator("ul.unassessed li").count() == page.locator(
                "table.summary tbody tr:not(.cert)").count()
            page.click(f'a[href="reports/{run_id}.fr.html#check-lan-reachability"]')
            page.wait_for_load_state()
            assert page.url.endswith(f"reports/{run_id}.fr.html#check-lan-reachability")
            assert CANDIDATE in page.content() and page.locator("svg").count() >= 1
            page.goto((folder / "index.en.html").as_uri())
            assert "Summary by referential criterion" in page.content()
            page.goto((folder / "reports" / f"{run_id}.en.html").as_uri())
            assert "Proof report" in page.content()
        finally:
            browser.close()
    assert requested == []

    # the PDF index: pages a jury can read
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(folder / "index.pdf"), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages and all(pg.stat().st_size > 5000 for pg in pages)
    assert len(pages) <= 14  # was 28 when every criterion nobody assessed had its own card

    # one certification only (what a jury for that title reads)
    tssr = tmp_path / "out" / "nadia-tssr.zip"
    labkit("bundle", "--candidate", CANDIDATE, "--certification", "tssr", "-o", str(tssr))
    with zipfile.ZipFile(tssr) as zf:
        summary = json.loads(zf.read("nadia-tssr/summary.json"))
    assert summary["certifications"] == ["tssr"] and summary["counts"]["acquired"] >= 1
    assert {c["certification"] for c in summary["criteria"]} == {"tssr"}
    assert (folder / f"reports/{run_id}.fr.pdf").read_bytes().startswith(b"%PDF-")

    # one byte changed: verify exits 1 and names the file (folder and zip)
    evidence = sorted((folder / "runs" / run_id / "evidence").iterdir())[0]
    rel = evidence.relative_to(folder).as_posix()
    data = bytearray(evidence.read_bytes())
    data[len(data) // 2] ^= 0x01
    evidence.chmod(0o644)
    evidence.write_bytes(bytes(data))
    bad = labkit("verify", str(folder), "--key", str(keyfile / "centre.pub"), env=jury_env, check=False)
    assert bad.returncode == 1 and rel in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    tampered = tmp_path / "nadia.zip"
    shutil.copy(out, tampered)
    _flip_entry_byte(tampered, f"nadia/{rel}")
    bad = labkit("verify", str(tampered), "--key", str(keyfile / "centre.pub"), env=jury_env, check=False)
    assert bad.returncode == 1 and rel in bad.stdout + bad.stderr, bad.stdout + bad.stderr

    # the private key is nowhere: zip bytes, zip entries, unzipped files, command outputs
    keys = lab_env.settings.home / "keys"
    pems = [f.read_bytes() for f in keys.rglob("*") if f.is_file() and b"PRIVATE KEY" in f.read_bytes()]
    assert len(pems) == 1
    forms = private_key_forms(pems[0])
    blobs = [out.read_bytes()] + [f.read_bytes() for f in jury.rglob("*") if f.is_file()]
    with zipfile.ZipFile(out) as zf:
        blobs += [zf.read(n) for n in zf.namelist()]
    blobs += [o.encode() for o in outputs]
    leaks = [i for i, b in enumerate(blobs) for f in forms if f in b]
    assert leaks == []
    assert not re.search(r"https?://", (folder / "index.html").read_text())


def _python() -> list[str]:
    import sys

    return [sys.executable]
