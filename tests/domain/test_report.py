"""Proof reports rendered from a stored run folder only."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labkit.adapters.security.signing import CentreSigner
from labkit.adapters.storage.runs import RunWriter, StoredRun, open_run
from labkit.domain.report import STRINGS, render_html, render_json
from labkit.models.common import I18n
from labkit.models.criteria import Criterion
from labkit.models.evidence import Evidence
from labkit.models.results import CheckResult, GradeSummary, RunInfo
from labkit.settings import load_settings

GOLDEN = Path(__file__).parents[1] / "golden" / "report" / "run.json"
RUN_ID = "dupont-20261128T034455Z-0a1b"
T0 = datetime(2026, 11, 28, 3, 44, 55, tzinfo=UTC)
SCRIPT = "<script>alert('pwned')</script>"

CRITERIA = [
    Criterion(
        id="igs-b1-interconnexions",
        certification="igs",
        block="Bloc 1 : Concevoir et mettre en œuvre l'architecture réseau",
        code="B1",
        text="Les interconnexions entre les sites sont opérationnelles et l'accord de niveau de service "
        "est respecté.",
    ),
    Criterion(
        id="tssr-2.3-liens",
        certification="tssr",
        block="Activité 2.3 : Administration des réseaux multi-sites.",
        code="A2.3",
        text="Configurer le routage des différents réseaux pour assurer une communication optimale entre "
        "les différents sites de l'entreprise.",
    ),
    Criterion(
        id="tssr-3.1-redondance",
        certification="tssr",
        block="Activité 3.1 : Sauvegarde et redondance.",
        code="A3.1",
        text="La redondance des équipements du parc est contrôlée régulièrement pour vérifier la haute "
        "disponibilité des équipements lors de simulation de pannes en suivant des procédures "
        "préalablement établies.",
    ),
]

TOPOLOGY = {
    "nodes": [
        {"name": "r-hq", "role": "router"},
        {"name": "r-br1", "role": "router"},
        {"name": "r-br2", "role": "router"},
        {"name": "pc-hq", "role": "workstation"},
        {"name": "pc-br1", "role": "workstation"},
        {"name": "pc-br2", "role": "workstation"},
    ],
    "segments": [
        {"name": "lan-hq", "members": ["r-hq:eth0", "pc-hq:eth0"]},
        {"name": "lan-br1", "members": ["r-br1:eth0", "pc-br1:eth0"]},
        {"name": "lan-br2", "members": ["r-br2:eth0", "pc-br2:eth0"]},
    ],
    "links": [
        {"name": "wan-a", "endpoints": ["r-hq:eth1", "r-br1:eth1"]},
        {"name": "wan-b", "endpoints": ["r-hq:eth2", "r-br2:eth1"]},
        {"name": "wan-c", "endpoints": ["r-br1:eth2", "r-br2:eth2"]},
    ],
    "vantage": [
        {"name": "v-hq", "segment": "lan-hq", "address": "10.1.2.250/24"},
        {"name": "v-br1", "segment": "lan-br1", "address": "10.1.3.250/24"},
        {"name": "v-br2", "segment": "lan-br2", "address": "10.1.4.250/24"},
    ],
}

ADDRESSING = [
    {
        "node": "r-hq",
        "iface": "eth0",
        "state": "up",
        "addresses": [
            {"address": "10.1.2.1/24", "family": 4, "scope": "global"},
            {"address": "fe80::1/64", "family": 6, "scope": "link"},
        ],
    },
    {
        "node": "r-hq",
        "iface": "eth1",
        "state": "up",
        "addresses": [{"address": "172.16.0.1/30", "family": 4, "scope": "global"}],
    },
    {"node": "r-hq", "iface": "eth2", "state": "up", "addresses": ["172.16.0.5/30"]},
    {"node": "r-br1", "iface": "eth0", "state": "up", "addresses": ["10.1.3.1/24"]},
    {"node": "r-br1", "iface": "eth1", "state": "up", "addresses": ["172.16.0.2/30"]},
    {"node": "r-br1", "iface": "eth2", "state": "up", "addresses": ["172.16.0.9/30"]},
    {"node": "r-br2", "iface": "eth0", "state": "up", "addresses": ["10.1.4.1/24"]},
    {"node": "r-br2", "iface": "eth1", "state": "up", "addresses": ["172.16.0.6/30"]},
    {"node": "r-br2", "iface": "eth2", "state": "down", "addresses": []},
    {"node": "pc-hq", "iface": "eth0", "state": "up", "addresses": ["10.1.2.10/24"]},
    {"node": "pc-br1", "iface": "eth0", "state": "up", "addresses": ["10.1.3.10/24"]},
    {"node": "pc-br2", "iface": "eth0", "state": "up", "addresses": ["10.1.4.10/24"]},
]

ROUTES = {
    "r-hq": [
        {"dst": "10.1.2.0/24", "gateway": None, "dev": "eth0", "protocol": "kernel", "metric": 0},
        {"dst": "10.1.3.0/24", "gateway": "172.16.0.2", "dev": "eth1", "protocol": "ospf", "metric": 20},
        {"dst": "10.1.4.0/24", "gateway": "172.16.0.6", "dev": "eth2", "protocol": "ospf", "metric": 20},
    ],
    "r-br1": [
        {"dst": "10.1.3.0/24", "gateway": None, "dev": "eth0", "protocol": "kernel", "metric": 0},
        {"dst": "10.1.2.0/24", "gateway": "172.16.0.1", "dev": "eth1", "protocol": "ospf", "metric": 20},
    ],
}

PING = "\n".join(
    ["PING 10.1.3.10 (10.1.3.10) 56(84) bytes of data."]
    + [f"64 bytes from 10.1.3.10: icmp_seq={i} ttl=62 time=0.{i}1 ms" for i in range(1, 21)]
    + ["", "--- 10.1.3.10 ping statistics ---", "20 packets transmitted, 20 received, 0% packet loss"]
)


def _t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _ev(ev_id: str, check: str | None, kind: str, start: float, **kw: Any) -> Evidence:
    fields: dict[str, Any] = {
        "id": ev_id,
        "check": check,
        "kind": kind,
        "source": "v-hq",
        "target": "10.1.3.10",
        "action": "",
        "started_at": _t(start),
        "ended_at": _t(start + 0.42),
        "ok": True,
    }
    fields.update(kw)
    return Evidence.model_validate(fields)


EVIDENCE = [
    _ev("lan.v-hq.pc-br1", "lan-reachability", "icmp", 1, action="ping -c 20 -W 1 10.1.3.10", raw=PING),
    _ev(
        "lan.v-br1.pc-hq",
        "lan-reachability",
        "icmp",
        2,
        source="v-br1",
        target="10.1.2.10",
        action="ping -c 3 -W 1 10.1.2.10",
        raw="3 packets transmitted, 3 received, 0% packet loss",
    ),
    _ev(
        "ospf.r-br2",
        "ospf-adjacency",
        "ssh",
        3,
        source="v-br2",
        target="r-br2",
        action="vtysh -c 'show ip ospf neighbor json'",
        raw=f'motd: {SCRIPT}\n{{"neighbors": {{}}}}',
        parsed={"neighbors": {}},
    ),
    _ev(
        "ospf.r-br1",
        "ospf-adjacency",
        "ssh",
        4,
        source="v-br1",
        target="r-br1",
        action="vtysh -c 'show ip ospf neighbor json'",
        ok=False,
        error="SSH connection refused on 10.1.3.1:22",
    ),
    *(
        _ev(
            f"resilience.{node}-{want}",
            "wan-resilience",
            "fault",
            at,
            source="grader",
            target=f"netns:lk-dupont.n.{node}/eth1",
            action=f"ip link set dev eth1 {want}",
            raw=f"eth1: {'up' if want == 'down' else 'down'} -> {want} at {_t(at + 0.01).isoformat()}",
            parsed={
                "iface": "eth1",
                "requested": want,
                "changed": True,
                "changed_at": _t(at + 0.01).isoformat(),
            },
        )
        for node, want, at in (
            ("r-hq", "down", 10),
            ("r-br1", "down", 10.1),
            ("r-hq", "up", 24),
            ("r-br1", "up", 24.1),
        )
    ),
    _ev(
        "resilience.recovery",
        "wan-resilience",
        "icmp",
        11,
        action="ping every 200 ms until all probes answer",
        parsed={"recovered_after": 4.2},
        meta={"probes": ["v-hq", "v-br1", "v-br2"]},
    ),
    _ev("resilience.extra", "wan-resilience", "icmp", 25, action="ping -c 1 10.1.3.10", raw="1 received"),
    _ev(
        "artifact.addressing",
        None,
        "artifact",
        0,
        source="host",
        target="all nodes",
        action="netlink: RTM_GETADDR on every node",
        parsed={"interfaces": 12},
    ),
]


def _check(
    cid: str,
    fr: str,
    en: str,
    status: str,
    points: int,
    max_points: int,
    crit: list[str],
    evidence: list[str],
    msg: tuple[str, str],
) -> CheckResult:
    return CheckResult(
        id=cid,
        title=I18n(fr=fr, en=en),
        grader=f"routing.{cid.replace('-', '_')}",
        status=status,  # type: ignore[arg-type]
        points=points,
        max_points=max_points,
        message=I18n(fr=msg[0], en=msg[1]),
        criteria=crit,
        evidence=evidence,
        doc=I18n(fr=f"Observation de {cid}.", en=f"How {cid} is observed."),
    )


CHECKS = [
    _check(
        "lan-reachability",
        "Joignabilité entre les LAN",
        "Reachability between the LANs",
        "pass",
        25,
        25,
        ["igs-b1-interconnexions", "tssr-2.3-liens"],
        ["lan.v-hq.pc-br1", "lan.v-br1.pc-hq"],
        ("Les trois LAN se joignent.", "The three LANs reach each other."),
    ),
    _check(
        "ospf-adjacency",
        "Adjacences OSPF",
        "OSPF adjacencies",
        "fail",
        0,
        15,
        ["tssr-2.3-liens"],
        ["ospf.r-br2", "ospf.r-br1", "ospf.gone"],
        ("r-br2 n'a aucun voisin OSPF.", "r-br2 has no OSPF neighbour."),
    ),
    _check(
        "wan-resilience",
        "Continuité après coupure WAN",
        "Continuity after a WAN cut",
        "error",
        0,
        20,
        ["igs-b1-interconnexions", "tssr-3.1-redondance"],
        ["resilience.r-hq-down", "resilience.r-br1-down", "resilience.recovery", "resilience.r-hq-up"],
        ("La mesure n'a pas pu aboutir.", "The measurement could not complete."),
    ),
]


def make_info(run_id: str = RUN_ID, **kw: Any) -> RunInfo:
    info = RunInfo(
        run_id=run_id,
        mode="grade",
        lab_id="routing-multisite",
        lab_title=I18n(
            fr="Routage dynamique multi-sites (OSPF) et supervision SNMPv3",
            en="Multi-site dynamic routing (OSPF) and SNMPv3 supervision",
        ),
        lab_version=1,
        instance="dupont",
        candidate="Camille Dupont",
        provider="netns",
        seed=1234,
        params={"lan_hq": "10.1.2.0/24", "lan_br1": "10.1.3.0/24", "snmp_user": "supervision-kqzu"},
        started_at=T0,
        ended_at=_t(42.5),
        labkit_version="0.1.0",
        checks=[{"id": c.id, "grader": c.grader} for c in CHECKS],
    )
    return info.model_copy(update=kw)


# a fixed key, so that the fingerprint (and the signature: Ed25519 is deterministic) never change
SIGNER = CentreSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "GRETA Lorraine Nord")


def build_run(
    runs_dir: Path, artifacts: bool = True, run_id: str = RUN_ID, signer: CentreSigner | None = None
) -> Path:
    info = make_info(run_id)
    summary = GradeSummary(
        run_id=run_id,
        lab_id=info.lab_id,
        instance=info.instance,
        candidate=info.candidate,
        score=25,
        max_score=60,
        started_at=info.started_at,
        ended_at=info.ended_at,
        checks=CHECKS,
    )
    w = RunWriter(runs_dir, run_id)
    for ev in EVIDENCE:
        w.add_evidence(ev)
    if artifacts:
        w.add_artifact("topology", TOPOLOGY)
        w.add_artifact("addressing", ADDRESSING)
        for node, routes in ROUTES.items():
            w.add_artifact(f"routes-{node}", routes)
        w.add_artifact("routes-r-br2", {"error": "ProviderError: r-br2 did not answer"})
    w.seal(info, summary, CRITERIA, now=_t(43), signer=signer)
    return w.path


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    return load_settings().runs


@pytest.fixture
def run(runs_dir: Path) -> StoredRun:
    build_run(runs_dir)
    return open_run(runs_dir, RUN_ID)


def test_strings_have_the_same_keys_in_both_languages() -> None:
    assert STRINGS["fr"].keys() == STRINGS["en"].keys()


def test_html_fr(run: StoredRun) -> None:
    html = render_html(run, "fr")
    assert '<html lang="fr">' in html
    assert "25 / 60" in html
    for word in ("Réussi", "Échoué", "Erreur", "Critères du référentiel", "Camille Dupont", RUN_ID):
        assert word in html
    for cr in CRITERIA:
        assert cr.text.replace("'", "&#39;") in html
    assert "Routage dynamique multi-sites (OSPF) et supervision SNMPv3" in html
    assert "r-br2 n&#39;a aucun voisin OSPF." in html
    assert "28/11/2026 03:44:55 UTC" in html
    assert "Panne provoquée par l&#39;évaluateur" in html and "Rétablissement par l&#39;évaluateur" in html
    assert "ip link set dev eth1 down — netns:lk-dupont.n.r-hq/eth1" in html
    assert run.manifest_sha256 in html
    assert "labkit report " + RUN_ID in html


def test_html_en(run: StoredRun) -> None:
    html = render_html(run, "en")
    assert '<html lang="en">' in html
    for word in (
        "Passed",
        "Failed",
        "Error",
        "Referential criteria",
        "25 / 60",
        "Fault caused by the grader",
        "Restored by the grader",
    ):
        assert word in html
    assert "Multi-site dynamic routing (OSPF) and SNMPv3 supervision" in html
    assert "r-br2 has no OSPF neighbour." in html
    # criteria are quoted in French whatever the report language
    assert CRITERIA[2].text in html
    assert "verbatim, in French" in html


def test_html_is_self_contained(run: StoredRun) -> None:
    html = render_html(run, "fr")
    lowered = html.lower()
    assert "<svg" in html and "@page" in html and "a4" in lowered
    assert "<script" not in lowered
    assert "src=" not in lowered and "href=" not in lowered and "@import" not in lowered
    assert "url(" not in lowered


def test_raw_answers_are_escaped(run: StoredRun) -> None:
    html = render_html(run, "fr")
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html


def test_raw_answers_are_truncated(run: StoredRun) -> None:
    report = render_json(run, "fr")
    ev = report["checks"][0]["evidence"][0]
    assert ev["id"] == "lan.v-hq.pc-br1"
    assert ev["excerpt"]["shown_lines"] == 15 and ev["excerpt"]["total_lines"] == 24
    assert ev["excerpt"]["truncated"]
    assert "icmp_seq=15" not in ev["excerpt"]["text"] and "icmp_seq=14" in ev["excerpt"]["text"]
    html = render_html(run, "fr")
    assert "15 premières lignes sur 24" in html


def test_faults_say_what_was_broken_and_when(run: StoredRun) -> None:
    check = render_json(run, "en")["checks"][2]
    fault = check["evidence"][0]["fault"]
    assert fault == {
        "phase": "break",
        "label": "Fault caused by the grader",
        "what": "ip link set dev eth1 down — netns:lk-dupont.n.r-hq/eth1",
        "at": "2026-11-28 03:45:05.010 UTC",
    }
    assert check["evidence"][3]["fault"]["phase"] == "restore"
    # the restore of r-br1 is not cited by the verdict but is shown, and pairs with its break
    assert check["faults"] == [
        (
            "Fault caused on purpose: ip link set dev eth1 down — netns:lk-dupont.n.r-hq/eth1, "
            "at 2026-11-28 03:45:05.010 UTC, restored at 2026-11-28 03:45:19.010 UTC."
        ),
        (
            "Fault caused on purpose: ip link set dev eth1 down — netns:lk-dupont.n.r-br1/eth1, "
            "at 2026-11-28 03:45:05.110 UTC, restored at 2026-11-28 03:45:19.110 UTC."
        ),
    ]
    assert "Panne provoquée volontairement" in render_html(run, "fr")


def test_unrestored_and_failed_faults_are_reported(runs_dir: Path) -> None:
    w = RunWriter(runs_dir, "faults")
    w.add_evidence(
        _ev("f1", "wan-resilience", "fault", 1, target="r-hq:eth1", action="ip link set dev eth1 down")
    )
    w.add_evidence(
        _ev(
            "f2",
            "wan-resilience",
            "fault",
            2,
            target="r-br1:eth1",
            action="ip link set eth1 down",
            ok=False,
            error="no interface 'eth1'",
        )
    )
    w.add_evidence(_ev("f3", "wan-resilience", "fault", 3, target="r-br2:eth1", action="ip link set eth1 up"))
    summary = GradeSummary(
        run_id="faults",
        lab_id="x",
        instance="x",
        candidate=None,
        score=0,
        max_score=20,
        started_at=T0,
        ended_at=T0,
        checks=[CHECKS[2].model_copy(update={"evidence": ["f1", "f2", "f3"]})],
    )
    w.seal(make_info("faults"), summary, CRITERIA)
    faults = render_json(open_run(runs_dir, "faults"), "fr")["checks"][0]["faults"]
    assert faults == [
        (
            "Panne provoquée volontairement : ip link set dev eth1 down — r-hq:eth1, à 28/11/2026 03:44:56.000 UTC, "
            "aucun rétablissement enregistré."
        ),
        "Tentative de panne non aboutie : ip link set eth1 down — r-br1:eth1 (no interface 'eth1').",
    ]


def test_missing_and_uncited_evidence(run: StoredRun) -> None:
    report = render_json(run, "fr")
    ospf = report["checks"][1]["evidence"]
    assert ospf[2] == {"id": "ospf.gone", "missing": True, "cited": True}
    wan = report["checks"][2]["evidence"]
    assert [e["id"] for e in wan] == [
        "resilience.r-hq-down",
        "resilience.r-br1-down",
        "resilience.recovery",
        "resilience.r-hq-up",
        "resilience.r-br1-up",
        "resilience.extra",
    ]
    assert [e["cited"] for e in wan] == [True, True, True, True, False, False]
    assert [e["id"] for e in report["shared_evidence"]] == ["artifact.addressing"]
    html = render_html(run, "fr")
    assert "preuve absente du dossier" in html and "SSH connection refused" in html


def test_criteria_section_links_checks(run: StoredRun) -> None:
    crit = {c["id"]: c for c in render_json(run, "fr")["criteria"]}
    assert [c["id"] for c in crit["igs-b1-interconnexions"]["checks"]] == [
        "lan-reachability",
        "wan-resilience",
    ]
    assert crit["igs-b1-interconnexions"]["totals"] == "1 contrôle(s) réussi(s) sur 2"
    assert crit["tssr-3.1-redondance"]["checks"][0]["status_label"] == "Erreur"


def test_portfolio_artifacts(run: StoredRun) -> None:
    arts = render_json(run, "fr")["artifacts"]
    assert [t["node"] for t in arts["routes"]] == ["r-hq", "r-br1", "r-br2"]
    assert arts["routes"][0]["routes"][0]["gateway"] == "—"
    assert arts["routes"][2] == {
        "node": "r-br2",
        "routes": None,
        "error": "ProviderError: r-br2 did not answer",
    }
    assert arts["addressing"][0]["addresses"] == ["10.1.2.1/24", "fe80::1/64"]
    assert arts["addressing"][8]["addresses"] == []
    html = render_html(run, "fr")
    assert "Table de routage de r-hq" in html and "172.16.0.6" in html
    assert "non collecté (ProviderError: r-br2 did not answer)" in html


def test_svg_in_report_parses(run: StoredRun) -> None:
    html = render_html(run, "fr")
    svg = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "wan-a" in svg and "lan-br2" in svg and "172.16.0.0/30" in svg
    assert "v-br2" in svg and ".250" in svg
    assert "fe80" not in svg


@pytest.mark.parametrize("lang,word", [("fr", "non collecté"), ("en", "not collected")])
def test_missing_artifacts_do_not_crash(runs_dir: Path, lang: str, word: str) -> None:
    build_run(runs_dir, artifacts=False)
    html = render_html(open_run(runs_dir, RUN_ID), lang)
    assert html.count(word) >= 3
    assert "<svg" not in html


def test_malformed_artifacts_do_not_crash(runs_dir: Path) -> None:
    w = RunWriter(runs_dir, "odd")
    w.add_artifact("topology", {"nodes": "oops"})
    w.add_artifact("addressing", {"not": "a list"})
    w.add_artifact("routes-r-hq", [])
    w.add_artifact("routes-r-br1", ["junk", {"dst": "0.0.0.0/0"}])
    w.add_artifact("extra", {"a": 1})
    info = make_info("odd", mode="selfcheck", candidate=None)
    summary = GradeSummary(
        run_id="odd",
        lab_id="x",
        instance="x",
        candidate=None,
        score=0,
        max_score=0,
        started_at=T0,
        ended_at=T0,
        checks=[CHECKS[0].model_copy(update={"criteria": ["unknown-criterion"], "evidence": []})],
    )
    w.seal(info, summary, [])
    run = open_run(runs_dir, "odd")
    report = render_json(run, "fr")
    assert report["score"]["percent"] is None
    assert report["artifacts"]["topology"] is None and report["artifacts"]["addressing"] is None
    assert report["artifacts"]["routes"] == [
        {
            "node": "r-br1",
            "routes": [{"dst": "0.0.0.0/0", "gateway": "—", "dev": "—", "protocol": "—", "metric": "—"}],
            "error": None,
        },
        {"node": "r-hq", "routes": None, "error": None},
    ]
    assert report["criteria"][0]["id"] == "unknown-criterion" and report["criteria"][0]["text"] is None
    html = render_html(run, "fr")
    assert "texte du critère non enregistré" in html and "auto-vérification" in html
    assert "aucune preuve citée" in html and "artifacts/extra.json" in html


def test_render_from_a_copied_folder(runs_dir: Path, tmp_path: Path) -> None:
    path = build_run(runs_dir)
    here = render_json(open_run(runs_dir, RUN_ID), "fr")
    copy = tmp_path / "portfolio" / "camille" / "preuve-1"
    shutil.copytree(path, copy)
    for dirpath, _dirs, _files in os.walk(runs_dir):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(runs_dir)
    moved = open_run(tmp_path / "elsewhere", str(copy))
    assert render_json(moved, "fr") == here
    assert "25 / 60" in render_html(moved, "fr")


def test_unknown_language(run: StoredRun) -> None:
    with pytest.raises(ValueError):
        render_json(run, "de")


def test_golden_render_json(run: StoredRun) -> None:
    got = {"fr": render_json(run, "fr"), "en": render_json(run, "en")}
    json.dumps(got)  # JSON-able
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert GOLDEN.exists(), "golden file missing; run with UPDATE_GOLDEN=1 to create it"
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture
def signed_run(runs_dir: Path) -> StoredRun:
    build_run(runs_dir, signer=SIGNER)
    return open_run(runs_dir, RUN_ID)


def test_signature_facts_of_a_signed_run(signed_run: StoredRun) -> None:
    fp = SIGNER.fingerprint
    assert fp.startswith("SHA256:") and signed_run.key_fingerprint == fp
    sig = render_json(signed_run, "fr")["signature"]
    assert sig["signed"] is True and sig["centre"] == "GRETA Lorraine Nord" and sig["key_fingerprint"] == fp
    assert sig["key_label"] == fp
    assert sig["note"] == f"Dossier signé par le centre « GRETA Lorraine Nord » avec la clé {fp}."
    for lang, words in (
        ("fr", ("Centre", "Clé de signature", "labkit verify " + RUN_ID)),
        ("en", ("Centre", "Signing key", "labkit verify " + RUN_ID)),
    ):
        html = render_html(signed_run, lang)
        for word in words:
            assert word in html, (lang, word)
        assert "GRETA Lorraine Nord" in html
        # in the header (where the page margins read it from) and in the integrity section
        assert html.count(fp) >= 2
        assert '<meta name="author" content="GRETA Lorraine Nord">' in html
        assert STRINGS[lang]["unsigned"] not in html.split("</style>", 1)[1]


@pytest.mark.parametrize("lang,word", [("fr", "non signé"), ("en", "unsigned")])
def test_unsigned_run_says_so(run: StoredRun, lang: str, word: str) -> None:
    assert run.signature is None and run.key_fingerprint is None
    sig = render_json(run, lang)["signature"]
    assert sig["signed"] is False and sig["key_fingerprint"] is None and sig["key_label"] == word
    html = render_html(run, lang)
    assert f'<code class="s-fingerprint">{word}</code>' in html
    assert "labkit verify" not in html
    assert STRINGS[lang]["no_centre"] in html


def test_a_run_whose_signature_file_was_removed_is_unsigned(runs_dir: Path) -> None:
    path = build_run(runs_dir, signer=SIGNER)
    os.chmod(path, 0o755)
    (path / "seal.json.sig").unlink()
    run = open_run(runs_dir, RUN_ID)
    sig = render_json(run, "en")["signature"]
    assert sig["signed"] is False and sig["key_label"] == "unsigned"
    assert SIGNER.fingerprint in sig["note"] and "seal.json.sig is missing" in sig["note"]


def test_pdf_metadata_date_is_the_runs(signed_run: StoredRun) -> None:
    html = render_html(signed_run, "fr")
    # the run ended at T0 + 42.5 s: the PDF's creation date is that, never the time of rendering
    assert '<meta name="dcterms.created" content="2026-11-28T03:45:37Z">' in html


def test_a_restore_named_by_its_phase_pairs_with_its_fault(runs_dir: Path) -> None:
    """A grader that undoes a fault with a command saying neither up nor restore (here a daemon
    start) records meta.phase = restore: the report must not call that a second fault."""
    w = RunWriter(runs_dir, "daemon")
    stop, start = "start-stop-daemon --stop --pidfile /run/snmpd.pid", "/etc/init.d/snmpd start"
    w.add_evidence(_ev("f1", "wan-resilience", "fault", 1, target="srv2", action=stop, meta={"phase": "fault"}))
    w.add_evidence(_ev("f2", "wan-resilience", "fault", 9, target="srv2", action=start, meta={"phase": "restore"}))
    summary = GradeSummary(run_id="daemon", lab_id="x", instance="x", candidate=None, score=0, max_score=20,
                           started_at=T0, ended_at=T0,
                           checks=[CHECKS[2].model_copy(update={"evidence": ["f1", "f2"]})])
    w.seal(make_info("daemon"), summary, CRITERIA)
    check = render_json(open_run(runs_dir, "daemon"), "en")["checks"][0]
    assert [e["fault"]["phase"] for e in check["evidence"]] == ["break", "restore"]
    assert check["faults"] == [
        f"Fault caused on purpose: {stop} — srv2, at 2026-11-28 03:44:56.000 UTC, "
        "restored at 2026-11-28 03:45:04.000 UTC."
    ]


def test_artifact_tables_read_well(runs_dir: Path) -> None:
    """Times on the run's day shrink to the time of day, nested records read as key: value,
    and a table of many fields and few records is laid out one column per record."""
    w = RunWriter(runs_dir, "tables")
    w.add_artifact("availability", [
        {"device": "r1", "from": _t(5).isoformat(), "down_periods": [{"from": _t(6).isoformat(), "seconds": 6.0}]},
        {"device": "r2", "from": "2026-11-27T23:00:00+00:00", "down_periods": []},
    ])
    w.add_artifact("timeline", [{f"field_{i}": f"v{i}-{a}" for i in range(9)} for a in "ab"])
    summary = GradeSummary(run_id="tables", lab_id="x", instance="x", candidate=None, score=0, max_score=0,
                           started_at=T0, ended_at=T0, checks=[])
    w.seal(make_info("tables"), summary, [])
    run = open_run(runs_dir, "tables")
    others = {o["name"]: o["table"] for o in render_json(run, "fr")["artifacts"]["others"]}
    assert others["availability"]["rows"] == [
        ["r1", "03:45:00.000", "from: 03:45:01.000, seconds: 6.0"],
        ["r2", "2026-11-27 23:00:00.000", "—"],
    ]
    html = render_html(run, "fr")
    assert html.count('class="data wide transposed"') == 1  # the 9-field timeline only
    assert "<tr><th>field_0</th><td>v0-a</td><td>v0-b</td></tr>" in html
    assert "availability_<wbr>" not in html and "down_<wbr>periods" in html
