"""The pure halves of the Active Directory graders: verdicts from fabricated evidence."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from graders.ad import (
    DnsSrv,
    DomainAdmins,
    Gpo,
    Groups,
    MemberServer,
    PasswordPolicy,
    ShareAccess,
    Users,
    base_dn,
    dns_a_record,
    gplink_entries,
    parse_gpttmpl,
    parse_registry_pol,
)
from labkit.domain.grading import GraderRegistry
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan

T = datetime(2026, 11, 28, tzinfo=UTC)
PLAN = InstancePlan(name="x", lab_id="ad-gpo", lab_dir="/", topology_id="ad-site", seed=0, params={}, nodes=[],
                    segments={}, links={})
REALM = "acme37.lan"
BASE = "DC=acme37,DC=lan"
DC = "10.9.9.10"
ADMIN = {"user": "Administrator", "password": "pw"}
USERS = [
    {"login": "alice.martin", "givenName": "Alice", "sn": "Martin", "department": "Compta", "password": "a"},
    {"login": "bruno.petit", "givenName": "Bruno", "sn": "Petit", "department": "Compta", "password": "b"},
    {"login": "chloe.simon", "givenName": "Chloe", "sn": "Simon", "department": "RH", "password": "c"},
]
COMMON = {"vantage": "v-lan", "dc": DC, "realm": REALM, "admin": ADMIN}
_seq = iter(range(10**6))


def ev(kind: str, parsed: Any, *, ok: bool = True, error: str | None = None, **meta: Any) -> Evidence:
    return Evidence(id=f"e{next(_seq)}", kind=kind, source="v-lan", target=DC,  # type: ignore[arg-type]
                    action="a", started_at=T, ended_at=T, ok=ok, error=error, parsed=parsed, meta=meta)


def ldap_ev(results: dict[str, list[dict[str, Any]]], *, bound: bool = True, purpose: str = "directory",
            **meta: Any) -> Evidence:
    parsed = {"bound": bound, "bind_result": "success" if bound else "invalidCredentials",
              "results": {k: {"result": "success", "entries": v} for k, v in results.items()}}
    return ev("ldap", parsed, purpose=purpose, bind_user="Administrator@acme37.lan", **meta)


def unreachable(kind: str = "ldap", purpose: str = "directory") -> Evidence:
    return ev(kind, None, ok=False, error="cannot open ldaps://10.9.9.10:636: Connection refused", purpose=purpose)


def test_registry_knows_the_ad_graders() -> None:
    assert GraderRegistry.load().names() >= {
        "ad.dns_srv", "ad.users", "ad.groups", "ad.member_server", "ad.share_access", "ad.password_policy",
        "ad.gpo", "ad.domain_admins"}


def test_base_dn_and_gplink_parsing() -> None:
    assert base_dn("ACME37.LAN") == BASE
    links = gplink_entries("[LDAP://cn={AB},cn=policies,cn=system,DC=acme37,DC=lan;0]"
                           "[LDAP://CN={CD},CN=Policies,CN=System,DC=acme37,DC=lan;1]")
    assert links == [("cn={ab},cn=policies,cn=system,dc=acme37,dc=lan", 0),
                     ("cn={cd},cn=policies,cn=system,dc=acme37,dc=lan", 1)]
    assert gplink_entries("") == []


# --------------------------------------------------------------------------- DNS

DNS_ARGS = {"vantage": "v-lan", "server": DC, "realm": REALM, "records": ["_ldap._tcp", "_kerberos._tcp"],
            "expect_address": DC, "dc": DC, "admin": ADMIN}
WRITTEN = "192.0.2.77"


def _dns_write(result: str = "success", bound: bool = True) -> Evidence:
    return ev("ldap", {"bound": bound, "bind_result": "success" if bound else "invalidCredentials",
                       "ops": {"record": {"op": "add", "result": result}} if bound else {}},
              purpose="dns-write", written=WRITTEN)


def _dns_proof(address: str | None = WRITTEN) -> Evidence:
    parsed = {"rcode": "NOERROR" if address else "NXDOMAIN", "answers": [{"address": address}] if address else []}
    return ev("dns", parsed, purpose="dns-proof", written=WRITTEN, qname="lkprobe01020304.acme37.lan")


BACKED = [_dns_write(), _dns_proof()]


def _srv(record: str, port: int, target: str = "dc1.acme37.lan", answers: bool = True) -> Evidence:
    parsed = {"rcode": "NOERROR" if answers else "NXDOMAIN",
              "answers": [{"priority": 0, "weight": 100, "port": port, "target": target}] if answers else []}
    return ev("dns", parsed, purpose="srv", qname=f"{record}.{REALM}")


def _a(name: str, address: str) -> Evidence:
    return ev("dns", {"rcode": "NOERROR", "answers": [{"address": address}]}, purpose="a", qname=name)


def test_dns_srv_pass_fail_error() -> None:
    j = DnsSrv()
    good = [_srv("_ldap._tcp", 389), _srv("_kerberos._tcp", 88), _a("dc1.acme37.lan", DC), *BACKED]
    assert j.judge(good, DNS_ARGS, PLAN).status == "pass"
    missing = [_srv("_ldap._tcp", 389), _srv("_kerberos._tcp", 88, answers=False), _a("dc1.acme37.lan", DC),
               *BACKED]
    v = j.judge(missing, DNS_ARGS, PLAN)
    assert v.status == "fail" and "_kerberos._tcp" in v.message.en and "NXDOMAIN" in v.message.en
    elsewhere = [_srv("_ldap._tcp", 389), _srv("_kerberos._tcp", 88), _a("dc1.acme37.lan", "10.9.9.99"), *BACKED]
    assert j.judge(elsewhere, DNS_ARGS, PLAN).status == "fail"
    wrong_port = [_srv("_ldap._tcp", 3268), _srv("_kerberos._tcp", 88), _a("dc1.acme37.lan", DC), *BACKED]
    assert "3268" in j.judge(wrong_port, DNS_ARGS, PLAN).message.en
    silent = [ev("dns", None, ok=False, error="no DNS answer from 10.9.9.10 within 2.0 s", purpose="srv",
                 qname=f"_ldap._tcp.{REALM}")]
    v = j.judge(silent, DNS_ARGS, PLAN)
    assert v.status == "error" and "no DNS answer" in v.message.en


def test_dns_srv_right_answers_from_a_responder_that_is_not_the_directory_fail() -> None:
    """Cheat dns-hand-zone: the SRV and A answers are right, but a record the grader writes
    into the directory's zone is not served."""
    j = DnsSrv()
    answers = [_srv("_ldap._tcp", 389), _srv("_kerberos._tcp", 88), _a("dc1.acme37.lan", DC)]
    v = j.judge([*answers, _dns_write(), _dns_proof(None)], DNS_ARGS, PLAN)
    assert v.status == "fail" and "it is not the domain's DNS" in v.message.en and "NXDOMAIN" in v.message.en
    v = j.judge([*answers, _dns_write(), _dns_proof("192.0.2.1")], DNS_ARGS, PLAN)
    assert v.status == "fail" and "192.0.2.1" in v.message.en
    v = j.judge([*answers, _dns_write("noSuchObject")], DNS_ARGS, PLAN)
    assert v.status == "fail" and "zone acme37.lan is not in the directory (adding a record: noSuchObject)" \
        in v.message.en
    v = j.judge([*answers, _dns_write(bound=False)], DNS_ARGS, PLAN)
    assert v.status == "fail" and "refuses the administrator's LDAPS bind" in v.message.en
    assert j.judge(answers, DNS_ARGS, PLAN).status == "fail"  # no proof at all is not a pass


def test_dns_a_record_blob() -> None:
    blob = dns_a_record("192.0.2.77", ttl=60)
    assert blob[:4] == struct.pack("<HH", 4, 1) and blob[4:6] == bytes([5, 240])
    assert blob[12:16] == struct.pack(">I", 60) and blob[-4:] == bytes([192, 0, 2, 77]) and len(blob) == 28


# --------------------------------------------------------------------------- users

USERS_ARGS = {**COMMON, "ou_root": "Societe", "users": USERS}


def _user_entry(u: dict[str, str], ou: str | None = None, **override: str) -> dict[str, Any]:
    attrs = {"sAMAccountName": [u["login"]], "givenName": [u["givenName"]], "sn": [u["sn"]],
             "department": [u["department"]], "userAccountControl": [512]}
    attrs.update({k: [v] for k, v in override.items()})
    return {"dn": f"CN={u['givenName']} {u['sn']},OU={ou or u['department']},OU=Societe,{BASE}", "attributes": attrs}


def _tickets(refused: str | None = None, outcome: str = "wrong-password") -> list[Evidence]:
    return [ev("kerberos", {"authenticated": u["login"] != refused,
                            "outcome": "ticket" if u["login"] != refused else outcome},
               purpose="kerberos", login=u["login"]) for u in USERS]


def test_users_pass() -> None:
    evidence = [ldap_ev({"users": [_user_entry(u) for u in USERS]}), *_tickets()]
    v = Users().judge(evidence, USERS_ARGS, PLAN)
    assert v.status == "pass" and "3" in v.message.en


@pytest.mark.parametrize("entries,tickets,needle", [
    ([_user_entry(USERS[0]), _user_entry(USERS[1], ou="RH"), _user_entry(USERS[2])], _tickets(),
     "bruno.petit is in OU=RH"),
    ([_user_entry(USERS[0]), _user_entry(USERS[2])], _tickets(), "bruno.petit: no such account"),
    ([_user_entry(USERS[0], department="Finance"), _user_entry(USERS[1]), _user_entry(USERS[2])], _tickets(),
     "department is 'Finance'"),
    ([_user_entry(u) for u in USERS], _tickets("chloe.simon"), "chloe.simon: Kerberos refuses"),
    ([_user_entry(u) for u in USERS], _tickets("chloe.simon", "revoked"), "(revoked)"),
])
def test_users_fail(entries: list[dict[str, Any]], tickets: list[Evidence], needle: str) -> None:
    v = Users().judge([ldap_ev({"users": entries}), *tickets], USERS_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en, v.message.en


def test_users_admin_bind_refused_is_fail_and_unreachable_is_error() -> None:
    v = Users().judge([ldap_ev({}, bound=False), *_tickets()], USERS_ARGS, PLAN)
    assert v.status == "fail" and "invalidCredentials" in v.message.en
    kdc_down = ev("kerberos", None, ok=False, error="KDC 10.9.9.10 unreachable", purpose="kerberos",
                  login="alice.martin")
    assert Users().judge([ldap_ev({"users": []}), kdc_down], USERS_ARGS, PLAN).status == "error"
    assert Users().judge([unreachable(), *_tickets()], USERS_ARGS, PLAN).status == "error"
    assert Users().judge(_tickets(), USERS_ARGS, PLAN).status == "error"  # no directory evidence at all


# --------------------------------------------------------------------------- groups

GROUP_ARGS = {**USERS_ARGS, "group_prefix": "GG_"}


def _group(name: str, members: list[str], gtype: int = -2147483646) -> dict[str, Any]:
    dns_ = [_user_entry(next(u for u in USERS if u["login"] == m))["dn"] for m in members]
    return {"dn": f"CN={name},OU=Societe,{BASE}",
            "attributes": {"sAMAccountName": [name], "groupType": [gtype], "member": dns_}}


def _groups_ev(groups: list[dict[str, Any]]) -> list[Evidence]:
    return [ldap_ev({"groups": groups, "users": [_user_entry(u) for u in USERS]})]


def test_groups_pass_fail_error() -> None:
    j = Groups()
    good = [_group("GG_Compta", ["alice.martin", "bruno.petit"]), _group("GG_RH", ["chloe.simon"])]
    assert j.judge(_groups_ev(good), GROUP_ARGS, PLAN).status == "pass"
    missing_member = [_group("GG_Compta", ["alice.martin"]), _group("GG_RH", ["chloe.simon"])]
    v = j.judge(_groups_ev(missing_member), GROUP_ARGS, PLAN)
    assert v.status == "fail" and "bruno.petit is not a member of GG_Compta" in v.message.en
    intruder = [_group("GG_Compta", ["alice.martin", "bruno.petit", "chloe.simon"]), _group("GG_RH", ["chloe.simon"])]
    assert "chloe.simon (department RH)" in j.judge(_groups_ev(intruder), GROUP_ARGS, PLAN).message.en
    no_group = [_group("GG_Compta", ["alice.martin", "bruno.petit"])]
    assert "GG_RH is missing" in j.judge(_groups_ev(no_group), GROUP_ARGS, PLAN).message.en
    distribution = [_group("GG_Compta", ["alice.martin", "bruno.petit"], gtype=2), _group("GG_RH", ["chloe.simon"])]
    assert "not a global security group" in j.judge(_groups_ev(distribution), GROUP_ARGS, PLAN).message.en
    assert j.judge([unreachable()], GROUP_ARGS, PLAN).status == "error"


# --------------------------------------------------------------------------- member server

MEMBER_ARGS = {**COMMON, "domain": "ACME37", "server": {"name": "fs1", "address": "10.9.9.20"},
               "user": {"login": "chloe.simon", "password": "c"}}


def _computer(uac: int) -> dict[str, Any]:
    return {"dn": f"CN=FS1,CN=Computers,{BASE}",
            "attributes": {"sAMAccountName": ["FS1$"], "userAccountControl": [uac]}}


SERVICE = "cifs/fs1.acme37.lan@ACME37.LAN"


def _logon(state: str, kinit: str = "ticket", tickets: list[str] | None = None) -> Evidence:
    parsed = {"kinit": kinit, "logon": state if kinit == "ticket" else None,
              "tree": "ok" if state == "ok" and kinit == "ticket" else None,
              "service_tickets": [SERVICE] if tickets is None else tickets}
    return ev("smb", parsed, purpose="smb-logon")


def test_member_server_pass_fail_error() -> None:
    j = MemberServer()
    computer = ldap_ev({"computer": [_computer(4096)]})
    v = j.judge([computer, _logon("ok")], MEMBER_ARGS, PLAN)
    assert v.status == "pass" and SERVICE in v.message.en
    v = j.judge([ldap_ev({"computer": []}), _logon("ok")], MEMBER_ARGS, PLAN)
    assert v.status == "fail" and "no computer account FS1$" in v.message.en
    assert "disabled" in j.judge([ldap_ev({"computer": [_computer(4098)]}), _logon("ok")], MEMBER_ARGS,
                                 PLAN).message.en
    down = ev("smb", None, ok=False, error="cannot connect to 10.9.9.20:445", purpose="smb-logon")
    assert j.judge([computer, down], MEMBER_ARGS, PLAN).status == "error"


def test_member_server_a_computer_object_without_the_keys_on_the_server_fails() -> None:
    """Cheat fs1-standalone: FS1$ exists in the directory, fs1 answers NTLM with local copies of
    the accounts, but cannot accept the Kerberos service ticket the DC issues for it."""
    j = MemberServer()
    computer = ldap_ev({"computer": [_computer(4096)]})
    v = j.judge([computer, _logon("STATUS_INVALID_PARAMETER")], MEMBER_ARGS, PLAN)
    assert v.status == "fail" and "does not hold the keys" in v.message.en
    v = j.judge([computer, _logon("ok", tickets=[])], MEMBER_ARGS, PLAN)
    assert v.status == "fail" and f"no service ticket {SERVICE}" in v.message.en
    v = j.judge([computer, _logon("ok", kinit="wrong-password")], MEMBER_ARGS, PLAN)
    assert v.status == "fail" and "refuses chloe.simon a ticket (wrong-password)" in v.message.en


# --------------------------------------------------------------------------- shares

SHARE_ARGS = {**COMMON, "server": "10.9.9.20", "server_name": "fs1", "domain": "ACME37",
              "shares": [{"share": "compta", "group": "GG_Compta",
                          "allowed": {"login": "alice.martin", "password": "a"},
                          "refused": {"login": "chloe.simon", "password": "c"}}]}
OK_STEPS = {"kinit": "ticket", "logon": "ok", "tree": "ok", "write": "ok", "read": "ok", "delete": "ok",
            "read_matches": True}
DENIED_TREE = {"tree": "STATUS_ACCESS_DENIED", "write": None, "read": None, "delete": None, "read_matches": False}
GROUPS = ldap_ev({"groups": [{"dn": f"CN=GG_Compta,OU=Compta,OU=Societe,{BASE}",
                              "attributes": {"sAMAccountName": ["GG_Compta"]}}]}, purpose="groups")


def _share(role: str, **steps: Any) -> Evidence:
    login = {"allowed": "alice.martin", "refused": "chloe.simon"}.get(role, "lkprobe0a1b2c3d")
    return ev("smb", {**OK_STEPS, **steps}, purpose=role, share="compta", login=login)


def _made(add: str = "success", join: str = "success") -> Evidence:
    ops = {"add lkprobe0a1b2c3d": {"op": "add", "result": add},
           "join lkprobe0a1b2c3d": {"op": "add_member", "result": join}}
    return ev("ldap", {"bound": True, "bind_result": "success", "ops": ops}, purpose="temp-users")


def _shares(*evidence: Evidence, member: Evidence | None = None) -> list[Evidence]:
    return [GROUPS, _made(), *evidence, member or _share("group-member")]


def test_share_access_pass_and_refusal_forms() -> None:
    j = ShareAccess()
    v = j.judge(_shares(_share("allowed"), _share("refused", **DENIED_TREE)), SHARE_ARGS, PLAN)
    assert v.status == "pass" and "account the probe has just added" in v.message.en
    denied_file = _share("refused", write="STATUS_ACCESS_DENIED", read=None, delete=None)
    assert j.judge(_shares(_share("allowed"), denied_file), SHARE_ARGS, PLAN).status == "pass"


def test_share_access_fail_and_error() -> None:
    j = ShareAccess()
    denied = _share("refused", **DENIED_TREE)
    v = j.judge(_shares(_share("allowed"), _share("refused")), SHARE_ARGS, PLAN)
    assert v.status == "fail" and "chloe.simon (of another department) writes there" in v.message.en
    v = j.judge(_shares(_share("allowed", write="STATUS_ACCESS_DENIED", read=None, delete=None), denied),
                SHARE_ARGS, PLAN)
    assert v.status == "fail" and "write=STATUS_ACCESS_DENIED" in v.message.en
    v = j.judge(_shares(_share("allowed", read_matches=False), denied), SHARE_ARGS, PLAN)
    assert v.status == "fail" and "read-back differs" in v.message.en
    v = j.judge(_shares(_share("allowed"), _share("refused", logon="STATUS_LOGON_FAILURE", tree=None)),
                SHARE_ARGS, PLAN)
    assert v.status == "fail" and "Kerberos SMB session of chloe.simon refused" in v.message.en
    v = j.judge(_shares(_share("allowed", kinit="wrong-password"), denied), SHARE_ARGS, PLAN)
    assert v.status == "fail" and "refuses alice.martin a Kerberos ticket" in v.message.en
    down = ev("smb", None, ok=False, error="cannot connect", purpose="allowed", share="compta")
    assert j.judge(_shares(down, denied), SHARE_ARGS, PLAN).status == "error"


def test_share_access_granted_to_a_list_of_accounts_fails() -> None:
    """Cheat share-user-list: the CSV's accounts get exactly the right access, but an account
    the grader adds to the department's group is refused."""
    j = ShareAccess()
    ok = [_share("allowed"), _share("refused", **DENIED_TREE)]
    v = j.judge(_shares(*ok, member=_share("group-member", **DENIED_TREE)), SHARE_ARGS, PLAN)
    assert v.status == "fail" and "access is not granted by the group" in v.message.en
    # the group is missing: nothing proves access by group
    v = j.judge([ldap_ev({"groups": []}, purpose="groups"), *ok], SHARE_ARGS, PLAN)
    assert v.status == "fail" and "group GG_Compta not found" in v.message.en
    # the controller refused the probe's account: not a pass either
    v = j.judge([GROUPS, _made(join="insufficientAccessRights"), *ok], SHARE_ARGS, PLAN)
    assert v.status == "fail" and "insufficientAccessRights" in v.message.en


def test_share_access_standalone_server_fails() -> None:
    """Cheat fs1-standalone: every Kerberos session is refused by a server without the keys."""
    j = ShareAccess()
    no = {"logon": "STATUS_INVALID_PARAMETER", "tree": None, "write": None, "read": None, "delete": None}
    v = j.judge(_shares(_share("allowed", **no), _share("refused", **no), member=_share("group-member", **no)),
                SHARE_ARGS, PLAN)
    assert v.status == "fail" and "STATUS_INVALID_PARAMETER" in v.message.en


# --------------------------------------------------------------------------- password policy

POLICY_ARGS = {**COMMON, "min_length": "12", "history": "24", "lockout_threshold": "5", "complexity": True}


def _domain(min_len: int = 12, history: int = 24, lockout: int = 5, props: int = 1,
            psos: list[dict[str, Any]] | None = None) -> Evidence:
    return ldap_ev({"domain": [{"dn": BASE, "attributes": {
        "minPwdLength": [min_len], "pwdHistoryLength": [history], "lockoutThreshold": [lockout],
        "pwdProperties": [props]}}], "pso": psos or []})


def _trial(short: str = "constraintViolation", simple: str = "constraintViolation",
           right: str = "success") -> Evidence:
    ops = {"short": {"result": short}, "simple": {"result": simple}, "right": {"result": right, "message": "m"}}
    return ev("ldap", {"bound": True, "bind_result": "success", "ops": ops}, purpose="trial")


def _lockout(first: str = "ticket", second: str = "revoked") -> Evidence:
    attempts = [{"label": f"wrong-{i}", "outcome": "wrong-password"} for i in range(1, 5)]
    attempts += [{"label": "right-1", "outcome": first}]
    attempts += [{"label": f"wrong-{i}", "outcome": "wrong-password"} for i in range(5, 10)]
    attempts += [{"label": "right-2", "outcome": second}]
    return ev("kerberos", {"attempts": attempts}, purpose="lockout")


APPLIES_TO = [f"CN=GG_Compta,OU=Compta,OU=Societe,{BASE}"]
WEAK_PSO = {"dn": f"CN=confort,CN=Password Settings Container,CN=System,{BASE}", "attributes": {
    "msDS-PSOAppliesTo": APPLIES_TO, "msDS-MinimumPasswordLength": ["4"],
    "msDS-PasswordHistoryLength": ["0"], "msDS-PasswordComplexityEnabled": ["FALSE"],
    "msDS-LockoutThreshold": ["0"]}}
STRONG_PSO = {"dn": f"CN=admins,CN=Password Settings Container,CN=System,{BASE}", "attributes": {
    "msDS-PSOAppliesTo": APPLIES_TO, "msDS-MinimumPasswordLength": ["16"], "msDS-PasswordHistoryLength": ["24"],
    "msDS-PasswordComplexityEnabled": ["TRUE"], "msDS-LockoutThreshold": ["3"]}}


@pytest.mark.parametrize("evidence,status,needle", [
    ([_domain(), _trial(), _lockout()], "pass", "Proven by effect"),
    ([_domain(psos=[STRONG_PSO]), _trial(), _lockout()], "pass", "as required"),
    ([_domain(min_len=7), _trial(), _lockout()], "fail", "minimum length: 7, 12 required"),
    ([_domain(history=0), _trial(), _lockout()], "fail", "history: 0, 24 required"),
    ([_domain(lockout=0), _trial(), _lockout()], "fail", "lockout threshold: 0, 5 required"),
    ([_domain(props=0), _trial(), _lockout()], "fail", "complexity off"),
    # the directory reads right, the controller does otherwise (a forged or stale answer)
    ([_domain(), _trial(short="success"), _lockout()], "fail", "accepts a password of 11 characters"),
    ([_domain(), _trial(simple="success"), _lockout()], "fail", "14 lower-case letters (no complexity)"),
    ([_domain(), _trial(right="constraintViolation")], "fail", "refuses a compliant password of 12"),
    ([_domain(), _trial(), _lockout(second="ticket")], "fail", "not locked after 5 failures"),
    ([_domain(), _trial(), _lockout(first="revoked")], "fail", "gets no ticket after 4 failures"),
    ([_domain(), _trial()], "fail", "lockout not measured"),
    # cheat pso-weak-accounts: the domain object is right, a weak PSO applies to the groups
    ([_domain(psos=[WEAK_PSO]), _trial(), _lockout()], "fail", "fine-grained policy confort (minimum 4"),
    ([ldap_ev({"domain": []}), _trial()], "fail", "cannot be found"),
    ([_domain()], "error", "Measurement 'trial' is missing"),
    ([unreachable()], "error", "Connection refused"),
])
def test_password_policy(evidence: list[Evidence], status: str, needle: str) -> None:
    v = PasswordPolicy().judge(evidence, POLICY_ARGS, PLAN)
    assert v.status == status and needle in v.message.en, v.message.en


# --------------------------------------------------------------------------- GPO

GUID = "{31B2F340-016D-11D2-945F-00C04FB984F9}"
SETTING = {"key": r"Software\Microsoft\Windows\CurrentVersion\Policies\System", "value": "LegalNoticeCaption",
           "data": "Acces-reserve-abcdefgh"}
GPO_ARGS = {**COMMON, "gpo": "GPO-Banniere", "ou_path": ["Societe"], "setting": SETTING}
PATHS = {"gpttmpl": "inf", "registry_pol": "pol"}


def _inf(value: str, utf16: bool = True) -> bytes:
    text = ("[Unicode]\r\nUnicode=yes\r\n[Registry Values]\r\n"
            rf'MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\LegalNoticeCaption=1,"{value}"'
            "\r\n")
    return b"\xff\xfe" + text.encode("utf-16-le") if utf16 else text.encode()


def _pol(key: str, value: str, data: str) -> bytes:
    def z(s: str) -> bytes:
        return (s + "\0").encode("utf-16-le")

    sep = ";".encode("utf-16-le")
    payload = z(data)
    entry = ("[".encode("utf-16-le") + z(key) + sep + z(value) + sep + struct.pack("<I", 1) + sep
             + struct.pack("<I", len(payload)) + sep + payload + "]".encode("utf-16-le"))
    return b"PReg" + struct.pack("<I", 1) + entry


def _gpo_evidence(*, linked: bool = True, link_opts: int = 0, inf: bytes | None = None, pol: bytes | None = None,
                  gpos: int = 1) -> list[Evidence]:
    gpo_dn = f"CN={GUID},CN=Policies,CN=System,{BASE}"
    gplink = f"[LDAP://{gpo_dn.lower()};{link_opts}]" if linked else ""
    directory = ldap_ev({
        "gpo": [{"dn": gpo_dn, "attributes": {"cn": [GUID], "displayName": ["GPO-Banniere"], "flags": [0]}}] * gpos,
        "ou": [{"dn": f"OU=Societe,{BASE}", "attributes": {"gPLink": [gplink] if gplink else []}}],
    })
    files = {}
    for path, data in (("inf", inf), ("pol", pol)):
        files[path] = ({"status": "ok", "size": len(data), "data_b64": base64.b64encode(data).decode()}
                       if data is not None else {"status": "STATUS_OBJECT_NAME_NOT_FOUND", "size": 0, "data_b64": None})
    sysvol = ev("smb", {"logon": "ok", "tree": "ok", "files": files}, purpose="sysvol", guid=GUID, paths=PATHS)
    return [directory, sysvol]


def test_setting_file_parsers() -> None:
    assert parse_gpttmpl(_inf("X y"))[
        r"machine\software\microsoft\windows\currentversion\policies\system\legalnoticecaption"] == "X y"
    assert list(parse_gpttmpl(_inf("Z", utf16=False)).values()) == ["Z"]
    entries = parse_registry_pol(_pol(SETTING["key"], "LegalNoticeCaption", "Hello"))
    assert entries == [{"key": SETTING["key"], "value": "LegalNoticeCaption", "type": 1, "data": "Hello"}]
    with pytest.raises(ValueError):
        parse_registry_pol(b"nope")


def test_gpo_pass_with_gpttmpl_or_registry_pol() -> None:
    j = Gpo()
    assert j.judge(_gpo_evidence(inf=_inf(SETTING["data"])), GPO_ARGS, PLAN).status == "pass"
    pol = _pol(SETTING["key"], SETTING["value"], SETTING["data"])
    assert j.judge(_gpo_evidence(pol=pol), GPO_ARGS, PLAN).status == "pass"


@pytest.mark.parametrize("evidence,needle", [
    (_gpo_evidence(linked=False, inf=_inf(SETTING["data"])), "is not linked to unit Societe"),
    (_gpo_evidence(link_opts=1, inf=_inf(SETTING["data"])), "is disabled"),
    (_gpo_evidence(inf=_inf("other")), "is 'other' in SYSVOL"),
    (_gpo_evidence(), "neither the GPO's GptTmpl.inf nor its Registry.pol sets"),
    (_gpo_evidence(gpos=0), "No GPO named"),
    (_gpo_evidence(gpos=2, inf=_inf(SETTING["data"])), "2 GPOs"),
])
def test_gpo_fail(evidence: list[Evidence], needle: str) -> None:
    v = Gpo().judge(evidence, GPO_ARGS, PLAN)
    assert v.status == "fail" and needle in v.message.en, v.message.en


def test_gpo_error_when_sysvol_unreachable() -> None:
    directory = _gpo_evidence(inf=_inf(SETTING["data"]))[0]
    down = ev("smb", None, ok=False, error="cannot connect to 10.9.9.10:445", purpose="sysvol")
    assert Gpo().judge([directory, down], GPO_ARGS, PLAN).status == "error"
    assert Gpo().judge([unreachable()], GPO_ARGS, PLAN).status == "error"


# --------------------------------------------------------------------------- Domain Admins

DA_ARGS = {**COMMON, "allowed": ["Administrator"]}


def _da(members: list[str], result: str = "success") -> Evidence:
    e = ldap_ev({"group": [{"dn": f"CN=Domain Admins,CN=Users,{BASE}", "attributes": {}}],
                 "members": [{"dn": f"CN={m},{BASE}", "attributes": {"sAMAccountName": [m]}} for m in members]})
    e.parsed["results"]["members"]["result"] = result
    return e


def test_domain_admins() -> None:
    j = DomainAdmins()
    assert j.judge([_da(["Administrator"])], DA_ARGS, PLAN).status == "pass"
    v = j.judge([_da(["Administrator", "alice.martin"])], DA_ARGS, PLAN)
    assert v.status == "fail" and "alice.martin" in v.message.en and "alice.martin" in v.message.fr
    assert j.judge([_da(["Administrator"], result="unwillingToPerform")], DA_ARGS, PLAN).status == "error"
    assert j.judge([ldap_ev({"group": [], "members": []})], DA_ARGS, PLAN).status == "fail"
    assert j.judge([unreachable()], DA_ARGS, PLAN).status == "error"


DA_USERS_ARGS = {**DA_ARGS, "users": USERS}


def _power(login: str, outcome: str | None, bound: bool = True) -> Evidence:
    ops = {"self-add": {"op": "add_member", "result": outcome}} if bound else {}
    return ev("ldap", {"bound": bound, "bind_result": "success" if bound else "invalidCredentials", "ops": ops},
              purpose="power", login=login, dn=f"CN={login},{BASE}")


def test_domain_admins_power_by_effect() -> None:
    """A directory read that shows only Administrator is not enough: a CSV account that can add
    itself to Domain Admins has its power (a forged read, or a right granted some other way)."""
    j = DomainAdmins()
    refused = [_power(u["login"], "insufficientAccessRights") for u in USERS]
    v = j.judge([_da(["Administrator"]), *refused], DA_USERS_ARGS, PLAN)
    assert v.status == "pass" and "none of the 3 CSV accounts tried" in v.message.en
    for outcome in ("attributeOrValueExists", "success", "entryAlreadyExists"):
        v = j.judge([_da(["Administrator"]), _power("alice.martin", outcome), *refused[1:]], DA_USERS_ARGS, PLAN)
        assert v.status == "fail" and f"alice.martin ({outcome})" in v.message.en, v.message.en
    # accounts that cannot bind are not tried; none tried at all is not a pass
    v = j.judge([_da(["Administrator"]), _power("alice.martin", None, bound=False), *refused[1:]], DA_USERS_ARGS,
                PLAN)
    assert v.status == "pass" and "none of the 2 CSV accounts tried" in v.message.en
    v = j.judge([_da(["Administrator"]), *[_power(u["login"], None, bound=False) for u in USERS]], DA_USERS_ARGS,
                PLAN)
    assert v.status == "fail" and "power is not measured" in v.message.en
