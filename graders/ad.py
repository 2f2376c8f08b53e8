"""Active Directory checks, observed from the grader's vantage point on the LAN: DNS queries,
LDAPS searches and binds, Kerberos AS exchanges and SMB sessions the grader makes itself.

``collect`` does the I/O (LDAP and SMB with ldap3 / smbprotocol, DNS with dnspython, Kerberos
with kinit run in the vantage namespace); ``judge`` is pure. A controller that does not
answer (Samba not started, wrong address, timeout) makes the probe's evidence ``ok=False``
and the check ``error``; a controller that answers "no" is a ``fail``.

Directory reads bind as the brief's ``Administrator`` (LDAPS simple bind); when that bind is
refused, the check fails and says so.
"""

from __future__ import annotations

import base64
import codecs
import ipaddress
import secrets
import string
import struct
from functools import partial
from typing import Any

from ldap3.utils.conv import escape_filter_chars

from labkit.adapters.probes import dns, kerberos, ldap, smb
from labkit.domain.grading import CheckContext, error_if_unrun
from labkit.models.capabilities import Capability
from labkit.models.evidence import Evidence
from labkit.models.instance import InstancePlan
from labkit.models.results import Verdict

SRV_PORTS = {"_ldap._tcp": 389, "_kerberos._tcp": 88, "_kerberos._udp": 88, "_kpasswd._tcp": 464,
             "_gc._tcp": 3268}
GLOBAL_SECURITY_GROUP = -2147483646  # groupType 0x80000002 as AD stores it (signed)
UAC_DISABLED, UAC_WORKSTATION_TRUST = 0x2, 0x1000
IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: nested membership
Problems = list[tuple[str, str]]


# --------------------------------------------------------------------------- pure helpers


def base_dn(realm: str) -> str:
    """``acme37.lan`` -> ``DC=acme37,DC=lan``."""
    return ",".join(f"DC={part}" for part in realm.lower().strip(".").split("."))


def norm_dn(dn: str) -> str:
    """A DN compared the way AD does: case-insensitive, no blanks around separators."""
    return ",".join("=".join(x.strip() for x in rdn.split("=", 1)) for rdn in dn.split(",")).lower()


def parent_dn(dn: str) -> str:
    return norm_dn(dn.split(",", 1)[1]) if "," in dn else ""


def _first(attrs: dict[str, Any], name: str) -> Any:
    """First value of an attribute in LDAP evidence (values are lists or scalars)."""
    for key, value in attrs.items():
        if key.lower() == name.lower():
            if isinstance(value, list):
                return value[0] if value else None
            return value
    return None


def _values(attrs: dict[str, Any], name: str) -> list[Any]:
    for key, value in attrs.items():
        if key.lower() == name.lower():
            return list(value) if isinstance(value, list) else [value]
    return []


def _entries(ev: Evidence, query: str) -> list[dict[str, Any]]:
    return list((((ev.parsed or {}).get("results") or {}).get(query) or {}).get("entries") or [])


def _bind_refused(ev: Evidence) -> Verdict | None:
    """An LDAP probe whose bind was refused: the brief's Administrator account does not work."""
    p = ev.parsed or {}
    if p.get("bound"):
        return None
    why = p.get("bind_result") or "refused"
    user = ev.meta.get("bind_user", "Administrator")
    return Verdict.failed(
        f"Le contrôleur refuse la connexion LDAPS de {user} avec le mot de passe du sujet ({why}) : "
        "l'annuaire ne peut pas être lu.",
        f"The controller refuses the LDAPS bind of {user} with the brief's password ({why}): "
        "the directory cannot be read.",
    )


def _by_purpose(evidence: list[Evidence], purpose: str) -> list[Evidence]:
    return [e for e in evidence if e.meta.get("purpose") == purpose]


def _one(evidence: list[Evidence], purpose: str) -> Evidence | None:
    found = _by_purpose(evidence, purpose)
    return found[0] if found else None


def _missing(purpose: str) -> Verdict:
    return Verdict.errored(f"Mesure « {purpose} » absente.", f"Measurement '{purpose}' is missing.")


def _directory(evidence: list[Evidence]) -> Evidence | Verdict:
    """The check's directory read, or the verdict saying why the check cannot be judged: a
    probe that could not run, no directory read, or a bind the controller refused."""
    if (err := error_if_unrun(evidence)) is not None:
        return err
    directory = _one(evidence, "directory")
    if directory is None:
        return _missing("directory")
    refused = _bind_refused(directory)
    return directory if refused is None else refused


def parse_gpttmpl(data: bytes) -> dict[str, str]:
    """``[Registry Values]`` of a GptTmpl.inf (UTF-16 with BOM, or UTF-8): ``{path: text}``,
    path lower-cased, value without its type prefix and quotes (``1,"Text"`` -> ``Text``)."""
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        text = data.decode("utf-16")
    else:
        text = data.decode("utf-8-sig", errors="replace")
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
        elif section == "registry values" and "=" in line:
            key, value = line.split("=", 1)
            kind, _, rest = value.partition(",")
            out[key.strip().lower()] = (rest if kind.strip().isdigit() else value).strip().strip('"')
    return out


def parse_registry_pol(data: bytes) -> list[dict[str, Any]]:
    """Entries of a Registry.pol (PReg format: ``[key;value;type;size;data]`` in UTF-16LE).
    String data (REG_SZ, REG_EXPAND_SZ) is decoded; DWORDs become ints."""
    if len(data) < 8 or data[:4] != b"PReg":
        raise ValueError("not a Registry.pol file (no PReg signature)")
    entries = []
    pos = 8
    sep, close = ";".encode("utf-16-le"), "]".encode("utf-16-le")

    def utf16z(start: int) -> tuple[str, int]:
        end = start
        while end + 1 < len(data) and data[end:end + 2] != b"\0\0":
            end += 2
        return data[start:end].decode("utf-16-le"), end + 2

    while pos + 2 <= len(data):
        if data[pos:pos + 2] != "[".encode("utf-16-le"):
            raise ValueError(f"Registry.pol: '[' expected at byte {pos}")
        key, pos = utf16z(pos + 2)
        pos += len(sep)
        value, pos = utf16z(pos)
        pos += len(sep)
        (rtype,) = struct.unpack_from("<I", data, pos)
        pos += 4 + len(sep)
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4 + len(sep)
        raw = data[pos:pos + size]
        pos += size
        if data[pos:pos + 2] != close:
            raise ValueError(f"Registry.pol: ']' expected at byte {pos}")
        pos += 2
        decoded: Any = raw.hex()
        if rtype in (1, 2):
            decoded = raw.decode("utf-16-le").rstrip("\0")
        elif rtype == 4 and size == 4:
            decoded = struct.unpack("<I", raw)[0]
        entries.append({"key": key, "value": value, "type": rtype, "data": decoded})
    return entries


def gplink_entries(gplink: str) -> list[tuple[str, int]]:
    """``[LDAP://cn={G},cn=policies,...;0][...]`` -> ``[(normalized GPO DN, options)]``."""
    out = []
    for part in gplink.split("]"):
        part = part.strip().lstrip("[")
        if not part:
            continue
        path, _, opts = part.rpartition(";")
        if path.lower().startswith("ldap://"):
            path = path[7:]
        try:
            options = int(opts or 0)
        except ValueError:
            options = 0
        out.append((norm_dn(path), options))
    return out


# --------------------------------------------------------------------------- collect helpers


def _admin_user(args: dict[str, Any]) -> str:
    return f"{args['admin']['user']}@{args['realm'].lower()}"


def _ldap_call(ctx: CheckContext, args: dict[str, Any], queries: list[dict[str, Any]], purpose: str,
               **meta: Any) -> Any:
    dc = args["dc"]
    names = ", ".join(q["name"] for q in queries)
    probe = partial(ldap.ldap_search, dc, queries, bind_user=_admin_user(args), password=args["admin"]["password"],
                    source=args["vantage"], check=ctx.check.id, timeout=5.0)
    return ctx.deferred(args["vantage"], "ldap", f"{dc}:636", f"ldaps search {names}", probe,
                        meta={"purpose": purpose, **meta})


def _users_query(args: dict[str, Any]) -> dict[str, Any]:
    logins = "".join(f"(sAMAccountName={escape_filter_chars(u['login'])})" for u in args["users"])
    return {"name": "users", "base": base_dn(args["realm"]), "scope": "sub",
            "filter": f"(&(objectClass=user)(objectCategory=person)(|{logins}))",
            "attributes": ["sAMAccountName", "givenName", "sn", "department", "userAccountControl"]}


def _dept_ou(args: dict[str, Any], department: str) -> str:
    return norm_dn(f"OU={department},OU={args['ou_root']},{base_dn(args['realm'])}")


USER_CLASSES = ["top", "person", "organizationalPerson", "user"]
UAC_NORMAL_ACCOUNT = 0x200


def _probe_login() -> str:
    """A fresh account name for the grader's own test accounts (deleted after the check)."""
    return f"lkprobe{secrets.token_hex(4)}"


def _complex_password(length: int) -> str:
    """``length`` random characters with upper and lower case letters, digits and a symbol."""
    if length < 4:
        raise ValueError("a complex password needs at least 4 characters")
    pool = string.ascii_letters + string.digits
    chars = [secrets.choice(string.ascii_uppercase), secrets.choice(string.ascii_lowercase),
             secrets.choice(string.digits), secrets.choice("-_.!")]
    chars += [secrets.choice(pool) for _ in range(length - 4)]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def _add_user_op(name: str, dn: str, login: str, password: str) -> dict[str, Any]:
    return {"name": name, "op": "add", "dn": dn, "object_class": USER_CLASSES, "password": password,
            "attributes": {"sAMAccountName": login, "userAccountControl": UAC_NORMAL_ACCOUNT}}


def _ldap_write(ctx: CheckContext, args: dict[str, Any], ops: list[dict[str, Any]], purpose: str,
                **meta: Any) -> Any:
    dc = args["dc"]
    probe = partial(ldap.ldap_modify, dc, ops, bind_user=_admin_user(args), password=args["admin"]["password"],
                    source=args["vantage"], check=ctx.check.id, timeout=5.0)
    return ctx.deferred(args["vantage"], "ldap", f"{dc}:636", f"ldaps write ({len(ops)} operations)", probe,
                        meta={"purpose": purpose, **meta})


# --------------------------------------------------------------------------- graders


def dns_a_record(address: str, ttl: int = 60) -> bytes:
    """A ``dnsRecord`` value (MS-DNSP DNS_RPC_RECORD) for an A record: data length, type 1,
    version 5, rank 240 (zone), flags 0, serial 1, TTL (big-endian), reserved, timestamp 0
    (static), then the IPv4 address."""
    data = ipaddress.IPv4Address(address).packed
    return (struct.pack("<HHBBHI", len(data), 1, 5, 240, 0, 1) + struct.pack(">I", ttl)
            + struct.pack("<II", 0, 0) + data)


class DnsSrv:
    """SRV records of the domain, then the A record of every target they name; and the DNS
    server must be the domain's own (directory-backed): a record the grader writes into the
    realm's zone in the directory over LDAPS, under a random name with a random address, must
    be answered at once on dc1:53 (and is deleted afterwards). A hand-written zone or a small
    responder cannot answer it."""

    name = "ad.dns_srv"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        server, realm, vantage = args["server"], args["realm"].lower(), args["vantage"]

        def query(qname: str, rdtype: str, purpose: str, **meta: Any) -> Any:
            probe = partial(dns.dns_query, server, qname, rdtype, source=vantage, check=ctx.check.id, timeout=2.0)
            return ctx.deferred(vantage, "dns", f"{server}:53", f"{qname} {rdtype}", probe,
                                meta={"purpose": purpose, "qname": qname, **meta})

        evidence = ctx.parallel([query(f"{r}.{realm}", "SRV", "srv") for r in args["records"]])
        targets = sorted({a["target"] for e in evidence if e.ok for a in (e.parsed or {}).get("answers", [])
                          if isinstance(a, dict) and a.get("target")})
        evidence += ctx.parallel([query(t, "A", "a") for t in targets])
        if not args.get("admin"):
            return evidence
        label = _probe_login()
        address = f"192.0.2.{secrets.randbelow(254) + 1}"  # TEST-NET-1: never a real host
        node_dn = f"DC={label},DC={realm},CN=MicrosoftDNS,DC=DomainDnsZones,{base_dn(realm)}"
        write = {"name": "record", "op": "add", "dn": node_dn, "object_class": ["top", "dnsNode"],
                 "binary_attributes": {"dnsRecord": base64.b64encode(dns_a_record(address)).decode()}}
        evidence += ctx.parallel([_ldap_write(ctx, args, [write], "dns-write", written=address)])
        if ((evidence[-1].parsed or {}).get("ops", {}).get("record") or {}).get("result") == "success":
            evidence += ctx.parallel([query(f"{label}.{realm}", "A", "dns-proof", written=address)])
            cleanup = {"name": "record", "op": "delete", "dn": node_dn}
            evidence += ctx.parallel([_ldap_write(ctx, args, [cleanup], "dns-cleanup")])
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        realm = args["realm"].lower()
        expect = args["expect_address"]
        addresses = {e.meta.get("qname"): {a.get("address") for a in (e.parsed or {}).get("answers", [])}
                     for e in _by_purpose(evidence, "a")}
        problems: Problems = []
        for record in args["records"]:
            qname = f"{record}.{realm}"
            ev = next((e for e in _by_purpose(evidence, "srv") if e.meta.get("qname") == qname), None)
            if ev is None:
                return _missing(qname)
            answers = (ev.parsed or {}).get("answers") or []
            if not answers:
                rcode = (ev.parsed or {}).get("rcode")
                problems.append((f"{qname} : aucun enregistrement SRV ({rcode})", f"{qname}: no SRV record ({rcode})"))
                continue
            port = SRV_PORTS.get(record)
            if port is not None and all(a.get("port") != port for a in answers):
                got = ", ".join(str(a.get("port")) for a in answers)
                problems.append((f"{qname} annonce le port {got}, {port} attendu",
                                 f"{qname} announces port {got}, {port} expected"))
            if not any(expect in addresses.get(a.get("target"), set()) for a in answers):
                targets = ", ".join(str(a.get("target")) for a in answers)
                problems.append((f"{qname} : la cible {targets} ne se résout pas en {expect}",
                                 f"{qname}: target {targets} does not resolve to {expect}"))
        if args.get("admin"):
            problems += _dns_backing_problems(evidence, realm)
        return Verdict.from_problems(
            problems,
            f"Les enregistrements SRV {', '.join(args['records'])} désignent {expect}, et le DNS de dc1 sert "
            "la zone de l'annuaire (un enregistrement écrit par la sonde en LDAPS y est aussitôt servi).",
            f"The SRV records {', '.join(args['records'])} point to {expect}, and dc1's DNS serves the "
            "directory's zone (a record the probe wrote over LDAPS is served at once).")


def _dns_backing_problems(evidence: list[Evidence], realm: str) -> Problems:
    write = _one(evidence, "dns-write")
    if write is None:
        return [("enregistrement témoin non écrit", "probe record not written")]
    p = write.parsed or {}
    if not p.get("bound"):
        return [(f"le contrôleur refuse la connexion LDAPS de l'administrateur ({p.get('bind_result')}) : la zone "
                 "de l'annuaire ne peut pas être vérifiée",
                 f"the controller refuses the administrator's LDAPS bind ({p.get('bind_result')}): the directory's "
                 "zone cannot be checked")]
    result = ((p.get("ops") or {}).get("record") or {}).get("result")
    if result != "success":
        return [(f"la zone {realm} n'est pas dans l'annuaire (ajout d'un enregistrement : {result})",
                 f"zone {realm} is not in the directory (adding a record: {result})")]
    proof = _one(evidence, "dns-proof")
    if proof is None:
        return [("enregistrement témoin non interrogé", "probe record not queried")]
    written = proof.meta.get("written")
    got = sorted(str(a.get("address")) for a in (proof.parsed or {}).get("answers", []))
    if written not in got:
        rcode = (proof.parsed or {}).get("rcode")
        return [(f"le DNS de dc1 ne sert pas un enregistrement que la sonde vient d'écrire dans la zone de "
                 f"l'annuaire ({rcode}, {', '.join(got) or 'aucune réponse'}) : ce n'est pas le DNS du domaine",
                 f"dc1's DNS does not serve a record the probe has just written to the directory's zone "
                 f"({rcode}, {', '.join(got) or 'no answer'}): it is not the domain's DNS")]
    return []


class Users:
    """Every CSV account: in its department's OU, with its attributes, and a Kerberos ticket
    granted for the CSV's password."""

    name = "ad.users"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        calls = [_ldap_call(ctx, args, [_users_query(args)], "directory")]
        for user in args["users"]:
            probe = partial(kerberos.kinit_password, args["dc"], args["realm"], user["login"], user["password"],
                            source=args["vantage"], check=ctx.check.id, timeout=5.0)
            calls.append(ctx.deferred(args["vantage"], "kerberos", f"{args['dc']}:88", f"kinit {user['login']}",
                                      probe, meta={"purpose": "kerberos", "login": user["login"]}))
        return ctx.parallel(calls)

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        directory = _directory(evidence)
        if isinstance(directory, Verdict):
            return directory
        found = {str(_first(e["attributes"], "sAMAccountName")).lower(): e for e in _entries(directory, "users")}
        tickets = {str(e.meta.get("login")).lower(): e for e in _by_purpose(evidence, "kerberos")}
        problems: Problems = []
        for user in args["users"]:
            login = user["login"]
            entry = found.get(login.lower())
            if entry is None:
                problems.append((f"{login} : compte absent", f"{login}: no such account"))
                continue
            if parent_dn(entry["dn"]) != _dept_ou(args, user["department"]):
                where, dept = entry["dn"].split(",", 1)[1], user["department"]
                problems.append((f"{login} est dans {where}, pas dans l'unité {dept}",
                                 f"{login} is in {where}, not in unit {dept}"))
            for attr in ("givenName", "sn", "department"):
                got = _first(entry["attributes"], attr)
                if str(got or "").strip() != user[attr]:
                    problems.append((f"{login} : {attr} vaut « {got} », « {user[attr]} » attendu",
                                     f"{login}: {attr} is '{got}', '{user[attr]}' expected"))
            ticket = tickets.get(login.lower())
            if ticket is None:
                problems.append((f"{login} : authentification non mesurée", f"{login}: authentication not measured"))
            elif not (ticket.parsed or {}).get("authenticated"):
                why = (ticket.parsed or {}).get("outcome", "refused")
                problems.append((f"{login} : Kerberos refuse le mot de passe du CSV ({why})",
                                 f"{login}: Kerberos refuses the CSV's password ({why})"))
        n = len(args["users"])
        return Verdict.from_problems(
            problems,
            f"Les {n} comptes du CSV sont dans la bonne unité, avec les bons attributs, "
            "et obtiennent un ticket Kerberos.",
            f"All {n} CSV accounts are in the right unit, with the right attributes, "
            "and get a Kerberos ticket.")


class Groups:
    """One global security group GG_<department> per department holding every account of the
    department and no account of another department."""

    name = "ad.groups"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        prefix = args.get("group_prefix", "GG_")
        depts = sorted({u["department"] for u in args["users"]})
        names = "".join(f"(sAMAccountName={escape_filter_chars(prefix + d)})" for d in depts)
        groups = {"name": "groups", "base": base_dn(args["realm"]), "scope": "sub",
                  "filter": f"(&(objectClass=group)(|{names}))",
                  "attributes": ["sAMAccountName", "groupType", "member"]}
        return ctx.parallel([_ldap_call(ctx, args, [groups, _users_query(args)], "directory")])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        directory = _directory(evidence)
        if isinstance(directory, Verdict):
            return directory
        prefix = args.get("group_prefix", "GG_")
        login_of = {norm_dn(e["dn"]): str(_first(e["attributes"], "sAMAccountName")).lower()
                    for e in _entries(directory, "users")}
        groups = {str(_first(e["attributes"], "sAMAccountName")).lower(): e for e in _entries(directory, "groups")}
        dept_of = {u["login"].lower(): u["department"] for u in args["users"]}
        problems: Problems = []
        for dept in sorted(set(dept_of.values())):
            name = prefix + dept
            group = groups.get(name.lower())
            if group is None:
                problems.append((f"groupe {name} absent", f"group {name} is missing"))
                continue
            gtype = _first(group["attributes"], "groupType")
            if gtype is not None and int(gtype) != GLOBAL_SECURITY_GROUP:
                problems.append((f"{name} n'est pas un groupe global de sécurité (groupType {gtype})",
                                 f"{name} is not a global security group (groupType {gtype})"))
            members = {login_of.get(norm_dn(m), norm_dn(m)) for m in _values(group["attributes"], "member")}
            expected = {login for login, d in dept_of.items() if d == dept}
            for login in sorted(expected - members):
                problems.append((f"{login} n'est pas membre de {name}", f"{login} is not a member of {name}"))
            for login in sorted(m for m in members if m in dept_of and dept_of[m] != dept):
                problems.append((f"{login} (service {dept_of[login]}) est membre de {name}",
                                 f"{login} (department {dept_of[login]}) is a member of {name}"))
        return Verdict.from_problems(
            problems,
            "Chaque groupe de service contient exactement les comptes du service.",
            "Every department group holds exactly the department's accounts.")


class MemberServer:
    """The file server's computer account exists (enabled workstation trust), and the server
    accepts a Kerberos SMB session: the grader gets a TGT for a domain account from the DC,
    then a service ticket for ``cifs/<server>.<realm>``, and the server must decrypt it (and
    sign with its key) to set the session up. A server with local accounts, or a computer
    object without the machine's keys on the server, cannot."""

    name = "ad.member_server"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        server = args["server"]
        account = f"{server['name'].upper()}$"
        computer = {"name": "computer", "base": base_dn(args["realm"]), "scope": "sub",
                    "filter": f"(&(objectClass=computer)(sAMAccountName={escape_filter_chars(account)}))",
                    "attributes": ["sAMAccountName", "dNSHostName", "userAccountControl"]}
        login = args["user"]["login"]
        probe = partial(kerberos.smb_kerberos, args["dc"], args["realm"], login, args["user"]["password"],
                        server["address"], server["name"], "IPC$", source=args["vantage"], check=ctx.check.id,
                        write_test=False, timeout=5.0)
        return ctx.parallel([
            _ldap_call(ctx, args, [computer], "directory"),
            ctx.deferred(args["vantage"], "smb", f"\\\\{server['address']}\\IPC$", f"smb kerberos {login}", probe,
                         meta={"purpose": "smb-logon"}),
        ])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        directory, logon = _one(evidence, "directory"), _one(evidence, "smb-logon")
        if directory is None or logon is None:
            return _missing("directory" if directory is None else "smb-logon")
        if (refused := _bind_refused(directory)) is not None:
            return refused
        name = args["server"]["name"].upper()
        host = args["server"]["name"]
        who = args["user"]["login"]
        problems: Problems = []
        computers = _entries(directory, "computer")
        if not computers:
            problems.append((f"aucun compte ordinateur {name}$ dans le domaine",
                             f"no computer account {name}$ in the domain"))
        else:
            uac = int(_first(computers[0]["attributes"], "userAccountControl") or 0)
            if uac & UAC_DISABLED:
                problems.append((f"le compte ordinateur {name}$ est désactivé",
                                 f"computer account {name}$ is disabled"))
            elif not uac & UAC_WORKSTATION_TRUST:
                problems.append((f"{name}$ n'est pas un compte de serveur membre (userAccountControl {uac})",
                                 f"{name}$ is not a member server account (userAccountControl {uac})"))
        p = logon.parsed or {}
        if p.get("kinit") != "ticket":
            problems.append((f"le contrôleur refuse un ticket à {who} ({p.get('kinit')}) : session Kerberos "
                             f"sur {host} impossible",
                             f"the controller refuses {who} a ticket ({p.get('kinit')}): no Kerberos session "
                             f"on {host} possible"))
        elif p.get("logon") != "ok" or p.get("tree") != "ok":
            state = p.get("logon") if p.get("logon") != "ok" else p.get("tree")
            problems.append((f"{host} refuse la session SMB Kerberos de {who} ({state}) : il ne détient pas les "
                             "clés de son compte du domaine",
                             f"{host} refuses the Kerberos SMB session of {who} ({state}): it does not hold the "
                             "keys of its domain account"))
        service = f"cifs/{host.lower()}.{args['realm'].lower()}@{args['realm'].upper()}"
        tickets = (p.get("service_tickets") or []) if p.get("logon") == "ok" else [service]
        if service.lower() not in {t.lower() for t in tickets}:
            problems.append((f"aucun ticket de service {service} délivré par le contrôleur",
                             f"no service ticket {service} issued by the controller"))
        return Verdict.from_problems(
            problems,
            f"{name}$ est un compte ordinateur actif, le contrôleur délivre un ticket pour {service} et "
            f"{host} l'accepte (session SMB Kerberos signée de {who}).",
            f"{name}$ is an enabled computer account, the controller issues a ticket for {service} and "
            f"{host} accepts it (signed Kerberos SMB session of {who}).")


class ShareAccess:
    """For every share, over Kerberos SMB sessions the grader opens itself: the department's
    account creates, writes, reads back and deletes a file; an account of another department is
    refused (tree connect or file creation); and an account the grader has just created and put
    in the department's group (and only there) reads and writes too, which proves the access is
    granted by the group, not by a list of users. The grader deletes its accounts afterwards."""

    name = "ad.share_access"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        base = base_dn(args["realm"])
        names = "".join(f"(sAMAccountName={escape_filter_chars(spec['group'])})" for spec in args["shares"])
        groups = {"name": "groups", "base": base, "scope": "sub", "filter": f"(&(objectClass=group)(|{names}))",
                  "attributes": ["sAMAccountName"]}
        evidence = ctx.parallel([_ldap_call(ctx, args, [groups], "groups")])
        dn_of = {str(_first(e["attributes"], "sAMAccountName")).lower(): e["dn"]
                 for e in (_entries(evidence[0], "groups") if evidence[0].ok else [])}
        temps: list[dict[str, str]] = []
        ops: list[dict[str, Any]] = []
        for spec in args["shares"]:
            group_dn = dn_of.get(spec["group"].lower())
            if group_dn is None:
                continue
            login = _probe_login()
            temp = {"share": spec["share"], "login": login, "password": _complex_password(24),
                    "dn": f"CN={login},CN=Users,{base}", "group": spec["group"]}
            temps.append(temp)
            ops += [_add_user_op(f"add {login}", temp["dn"], login, temp["password"]),
                    {"name": f"join {login}", "op": "add_member", "dn": group_dn, "member": temp["dn"]}]
        if ops:
            evidence += ctx.parallel([_ldap_write(ctx, args, ops, "temp-users")])
        made = ((evidence[-1].parsed or {}).get("ops") or {}) if ops else {}

        def smb_call(spec_share: str, login: str, password: str, purpose: str) -> Any:
            probe = partial(kerberos.smb_kerberos, args["dc"], args["realm"], login, password, args["server"],
                            args["server_name"], spec_share, source=args["vantage"], check=ctx.check.id,
                            write_test=True, timeout=5.0)
            return ctx.deferred(args["vantage"], "smb", f"\\\\{args['server']}\\{spec_share}",
                                f"smb kerberos {login} write test", probe,
                                meta={"purpose": purpose, "share": spec_share, "login": login})

        calls = [smb_call(spec["share"], spec[role]["login"], spec[role]["password"], role)
                 for spec in args["shares"] for role in ("allowed", "refused")]
        calls += [smb_call(t["share"], t["login"], t["password"], "group-member") for t in temps
                  if all((made.get(f"{step} {t['login']}") or {}).get("result") == "success"
                         for step in ("add", "join"))]
        evidence += ctx.parallel(calls)
        if temps:
            cleanup = [{"name": f"delete {t['login']}", "op": "delete", "dn": t["dn"]} for t in temps]
            evidence += ctx.parallel([_ldap_write(ctx, args, cleanup, "cleanup")])
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        if (err := error_if_unrun(evidence)) is not None:
            return err
        groups_read = _one(evidence, "groups")
        if groups_read is None:
            return _missing("groups")
        if (refused := _bind_refused(groups_read)) is not None:
            return refused
        found = {str(_first(e["attributes"], "sAMAccountName")).lower() for e in _entries(groups_read, "groups")}
        made = ((_one(evidence, "temp-users") or groups_read).parsed or {}).get("ops") or {}
        problems: Problems = []
        for spec in args["shares"]:
            share = spec["share"]
            for role in ("allowed", "refused"):
                ev = next((e for e in _by_purpose(evidence, role) if e.meta.get("share") == share), None)
                if ev is None:
                    return _missing(f"{share}/{role}")
                problems += _share_problems(ev, share, role)
            group = spec["group"]
            member = next((e for e in _by_purpose(evidence, "group-member") if e.meta.get("share") == share), None)
            if group.lower() not in found:
                problems.append((f"{share} : groupe {group} introuvable, l'accès par groupe ne peut pas être prouvé",
                                 f"{share}: group {group} not found, access by group cannot be proven"))
            elif member is None:
                why = "; ".join(f"{k}: {v.get('result')}" for k, v in made.items() if v.get("result") != "success")
                problems.append((f"{share} : le contrôleur refuse le compte témoin de la sonde dans {group} ({why})",
                                 f"{share}: the controller refuses the probe's own account in {group} ({why})"))
            else:
                p = member.parsed or {}
                steps = {k: p.get(k) for k in ("kinit", "logon", "tree", "write", "read", "delete")}
                if any(v not in ("ok", "ticket") for v in steps.values()) or not p.get("read_matches"):
                    failed = ", ".join(f"{k}={v}" for k, v in steps.items() if v not in ("ok", "ticket"))
                    problems.append((f"{share} : un compte que la sonde vient d'ajouter à {group} n'y lit ni n'écrit "
                                     f"({failed or 'relecture différente'}) : l'accès n'est pas donné par le groupe",
                                     f"{share}: an account the probe has just added to {group} cannot read and write "
                                     f"there ({failed or 'read-back differs'}): access is not granted by the group"))
        n = len(args["shares"])
        return Verdict.from_problems(
            problems,
            f"Les {n} partages s'ouvrent en écriture au groupe du service (y compris à un compte que la sonde "
            "vient d'y ajouter) et refusent les autres services.",
            f"All {n} shares open for writing to their department's group (including an account the probe has "
            "just added to it) and refuse the other departments.")


def _share_problems(ev: Evidence, share: str, role: str) -> Problems:
    p = ev.parsed or {}
    login = ev.meta.get("login")
    if p.get("kinit") != "ticket":
        return [(f"{share} : le contrôleur refuse un ticket Kerberos à {login} ({p.get('kinit')})",
                 f"{share}: the controller refuses {login} a Kerberos ticket ({p.get('kinit')})")]
    if p.get("logon") != "ok":
        return [(f"{share} : session SMB Kerberos de {login} refusée ({p.get('logon')})",
                 f"{share}: Kerberos SMB session of {login} refused ({p.get('logon')})")]
    steps = {k: p.get(k) for k in ("tree", "write", "read", "delete")}
    if role == "allowed" and (any(v != "ok" for v in steps.values()) or not p.get("read_matches")):
        failed = ", ".join(f"{k}={v}" for k, v in steps.items() if v != "ok")
        return [(f"{share} : {login} (du service) ne peut pas lire et écrire ({failed or 'relecture différente'})",
                 f"{share}: {login} (of the department) cannot read and write ({failed or 'read-back differs'})")]
    if role == "refused" and steps["tree"] == "ok" and steps["write"] == "ok":
        return [(f"{share} : {login} (d'un autre service) y écrit",
                 f"{share}: {login} (of another department) writes there")]
    return []


PSO_ATTRS = ["msDS-PSOAppliesTo", "msDS-MinimumPasswordLength", "msDS-PasswordHistoryLength",
             "msDS-PasswordComplexityEnabled", "msDS-LockoutThreshold"]


class PasswordPolicy:
    """The domain's password policy, proven by effect on accounts the grader creates itself
    over LDAPS and then deletes: a password one character shorter than the minimum is refused,
    a long password without complexity is refused, a compliant password of exactly the minimum
    length is accepted; that account then gets a Kerberos ticket after threshold-1 wrong
    passwords, and is locked (KDC: credentials revoked) after threshold more. The history length
    (admin resets skip it) and the domain object's values are read over LDAPS, with any
    fine-grained policy (PSO) that would weaken them for some accounts."""

    name = "ad.password_policy"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        base = base_dn(args["realm"])
        query = {"name": "domain", "base": base, "scope": "base", "filter": "(objectClass=*)",
                 "attributes": ["minPwdLength", "pwdHistoryLength", "lockoutThreshold", "pwdProperties"]}
        psos = {"name": "pso", "base": f"CN=Password Settings Container,CN=System,{base}", "scope": "one",
                "filter": "(objectClass=msDS-PasswordSettings)", "attributes": PSO_ATTRS}
        evidence = ctx.parallel([_ldap_call(ctx, args, [query, psos], "directory")])
        min_len, threshold = int(args["min_length"]), int(args["lockout_threshold"])
        trials = {"right": _complex_password(max(min_len, 4))}
        if min_len > 4:
            trials["short"] = _complex_password(min_len - 1)
        if bool(args.get("complexity", True)):
            trials["simple"] = "".join(secrets.choice(string.ascii_lowercase) for _ in range(min_len + 2))
        logins = {kind: _probe_login() for kind in trials}
        dns = {kind: f"CN={login},CN=Users,{base}" for kind, login in logins.items()}
        ops = [_add_user_op(kind, dns[kind], logins[kind], pw) for kind, pw in sorted(trials.items())]
        evidence += ctx.parallel([_ldap_write(ctx, args, ops, "trial", logins=logins)])
        made = (evidence[-1].parsed or {}).get("ops") or {}
        if (made.get("right") or {}).get("result") == "success" and 0 < threshold <= 19:
            wrong = _complex_password(16)
            attempts = ([(f"wrong-{i}", wrong) for i in range(1, threshold)] + [("right-1", trials["right"])]
                        + [(f"wrong-{i}", wrong) for i in range(threshold, 2 * threshold)]
                        + [("right-2", trials["right"])])
            probe = partial(kerberos.kinit_attempts, args["dc"], args["realm"], logins["right"], attempts,
                            source=args["vantage"], check=ctx.check.id, timeout=5.0)
            evidence += ctx.parallel([ctx.deferred(args["vantage"], "kerberos", f"{args['dc']}:88",
                                                   f"kinit {logins['right']} x{len(attempts)}", probe,
                                                   meta={"purpose": "lockout", "threshold": threshold})])
        cleanup = [{"name": f"delete {kind}", "op": "delete", "dn": dn} for kind, dn in sorted(dns.items())]
        return evidence + ctx.parallel([_ldap_write(ctx, args, cleanup, "cleanup")])

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        directory = _directory(evidence)
        if isinstance(directory, Verdict):
            return directory
        entries = _entries(directory, "domain")
        if not entries:
            return Verdict.failed(f"L'objet domaine {base_dn(args['realm'])} est introuvable.",
                                  f"The domain object {base_dn(args['realm'])} cannot be found.")
        trial = _one(evidence, "trial")
        if trial is None:
            return _missing("trial")
        min_len, threshold = int(args["min_length"]), int(args["lockout_threshold"])
        attrs = entries[0]["attributes"]
        problems: Problems = []
        wanted = {"minPwdLength": ("longueur minimale", "minimum length", args["min_length"]),
                  "pwdHistoryLength": ("historique", "history", args["history"]),
                  "lockoutThreshold": ("seuil de verrouillage", "lockout threshold", args["lockout_threshold"])}
        for attr, (fr, en, want) in wanted.items():
            got = _first(attrs, attr)
            if got is None or int(got) != int(want):
                problems.append((f"{fr} : {got}, {want} exigé", f"{en}: {got}, {want} required"))
        complex_on = bool(int(_first(attrs, "pwdProperties") or 0) & 1)
        if bool(args.get("complexity", True)) != complex_on:
            state_fr, state_en = ("activée", "on") if complex_on else ("désactivée", "off")
            problems.append((f"complexité {state_fr}", f"complexity {state_en}"))
        problems += _pso_problems(directory, args)
        made = (trial.parsed or {}).get("ops") or {}
        if (made.get("short") or {}).get("result") == "success":
            problems.append((f"le contrôleur accepte un mot de passe de {min_len - 1} caractères",
                             f"the controller accepts a password of {min_len - 1} characters"))
        if (made.get("simple") or {}).get("result") == "success":
            problems.append((f"le contrôleur accepte un mot de passe de {min_len + 2} minuscules (sans complexité)",
                             f"the controller accepts a password of {min_len + 2} lower-case letters (no complexity)"))
        right = made.get("right") or {}
        if right.get("result") != "success":
            why = f"{right.get('result')} {right.get('message', '')}".strip()
            problems.append((f"le contrôleur refuse un mot de passe conforme de {min_len} caractères ({why})",
                             f"the controller refuses a compliant password of {min_len} characters ({why})"))
        else:
            problems += _lockout_problems(_one(evidence, "lockout"), threshold)
        return Verdict.from_problems(
            problems,
            f"Vérifié par effet sur un compte de la sonde : moins de {min_len} caractères ou sans complexité "
            f"refusé, {min_len} caractères accepté, verrouillage au {threshold}e échec ; historique "
            f"{args['history']} (lu en LDAPS) : conforme.",
            f"Proven by effect on a probe account: shorter than {min_len} or without complexity refused, "
            f"{min_len} characters accepted, locked at failure {threshold}; history {args['history']} "
            "(read over LDAPS): as required.")


def _pso_problems(directory: Evidence, args: dict[str, Any]) -> Problems:
    """Fine-grained password policies that apply to someone and are weaker than required."""
    problems: Problems = []
    for pso in _entries(directory, "pso"):
        attrs = pso["attributes"]
        targets = _values(attrs, "msDS-PSOAppliesTo")
        if not targets:
            continue
        weak = []
        if int(_first(attrs, "msDS-MinimumPasswordLength") or 0) < int(args["min_length"]):
            weak.append(f"minimum {_first(attrs, 'msDS-MinimumPasswordLength')}")
        if int(_first(attrs, "msDS-PasswordHistoryLength") or 0) < int(args["history"]):
            weak.append(f"history {_first(attrs, 'msDS-PasswordHistoryLength')}")
        complexity = str(_first(attrs, "msDS-PasswordComplexityEnabled")).upper() == "TRUE"
        if bool(args.get("complexity", True)) and not complexity:
            weak.append("complexity off")
        lockout = int(_first(attrs, "msDS-LockoutThreshold") or 0)
        if lockout == 0 or lockout > int(args["lockout_threshold"]):
            weak.append(f"lockout {lockout}")
        if weak:
            name = pso["dn"].split(",", 1)[0].split("=", 1)[-1]
            problems.append((f"la stratégie fine {name} ({', '.join(weak)}) affaiblit la politique pour "
                             f"{len(targets)} objet(s)",
                             f"fine-grained policy {name} ({', '.join(weak)}) weakens the policy for "
                             f"{len(targets)} object(s)"))
    return problems


def _lockout_problems(lockout: Evidence | None, threshold: int) -> Problems:
    if lockout is None:
        return [("verrouillage non mesuré", "lockout not measured")]
    outcome = {a.get("label"): a.get("outcome") for a in (lockout.parsed or {}).get("attempts") or []}
    problems: Problems = []
    first, second = outcome.get("right-1"), outcome.get("right-2")
    if first != "ticket":
        problems.append((f"le compte de la sonde n'obtient pas de ticket après {threshold - 1} échecs ({first})",
                         f"the probe's account gets no ticket after {threshold - 1} failures ({first})"))
    if second == "ticket":
        problems.append((f"le compte de la sonde n'est pas verrouillé après {threshold} échecs",
                         f"the probe's account is not locked after {threshold} failures"))
    elif second != "revoked":
        problems.append((f"après {threshold} échecs, le contrôleur répond {second}, verrouillage attendu",
                         f"after {threshold} failures the controller answers {second}, lockout expected"))
    return problems


def _sysvol_paths(realm: str, guid: str) -> dict[str, str]:
    root = f"{realm.lower()}\\Policies\\{guid}\\MACHINE"
    return {"gpttmpl": f"{root}\\Microsoft\\Windows NT\\SecEdit\\GptTmpl.inf", "registry_pol": f"{root}\\Registry.pol"}


class Gpo:
    """The GPO exists, is linked (enabled link) to the OU, and its SYSVOL content carries the
    required registry setting, in GptTmpl.inf ([Registry Values]) or in Registry.pol."""

    name = "ad.gpo"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        base = base_dn(args["realm"])
        ou_dn = ",".join(f"OU={ou}" for ou in reversed(args["ou_path"])) + "," + base
        queries = [
            {"name": "gpo", "base": f"CN=Policies,CN=System,{base}", "scope": "one",
             "filter": f"(&(objectClass=groupPolicyContainer)(displayName={escape_filter_chars(args['gpo'])}))",
             "attributes": ["cn", "displayName", "flags", "versionNumber", "gPCFileSysPath"]},
            {"name": "ou", "base": ou_dn, "scope": "base", "filter": "(objectClass=organizationalUnit)",
             "attributes": ["gPLink", "gPOptions"]},
        ]
        evidence = ctx.parallel([_ldap_call(ctx, args, queries, "directory", ou=ou_dn)])
        gpos = _entries(evidence[0], "gpo") if evidence[0].ok else []
        if len(gpos) == 1:
            guid = str(_first(gpos[0]["attributes"], "cn"))
            paths = _sysvol_paths(args["realm"], guid)
            user = f"{args['admin']['user']}@{args['realm'].lower()}"
            probe = partial(smb.smb_read_files, args["dc"], "sysvol", list(paths.values()), username=user,
                            password=args["admin"]["password"], source=args["vantage"], check=ctx.check.id,
                            timeout=5.0)
            evidence += ctx.parallel([ctx.deferred(args["vantage"], "smb", f"\\\\{args['dc']}\\sysvol",
                                                   f"smb read GPO {guid} files", probe,
                                                   meta={"purpose": "sysvol", "guid": guid, "paths": paths})])
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        directory = _directory(evidence)
        if isinstance(directory, Verdict):
            return directory
        name = args["gpo"]
        gpos = _entries(directory, "gpo")
        if not gpos:
            return Verdict.failed(f"Aucune GPO nommée « {name} ».", f"No GPO named '{name}'.")
        if len(gpos) > 1:
            return Verdict.failed(f"{len(gpos)} GPO portent le nom « {name} ».",
                                  f"{len(gpos)} GPOs are named '{name}'.")
        gpo_dn = norm_dn(gpos[0]["dn"])
        guid = str(_first(gpos[0]["attributes"], "cn"))
        problems: Problems = []
        ous = _entries(directory, "ou")
        ou_label = "/".join(args["ou_path"])
        if not ous:
            problems.append((f"unité {ou_label} introuvable", f"unit {ou_label} not found"))
        else:
            links = gplink_entries(str(_first(ous[0]["attributes"], "gPLink") or ""))
            link = next((opts for dn, opts in links if dn == gpo_dn), None)
            if link is None:
                problems.append((f"la GPO {name} n'est pas liée à l'unité {ou_label} (gPLink)",
                                 f"GPO {name} is not linked to unit {ou_label} (gPLink)"))
            elif link & 1:
                problems.append((f"le lien de la GPO {name} sur {ou_label} est désactivé",
                                 f"the link of GPO {name} on {ou_label} is disabled"))
        flags = int(_first(gpos[0]["attributes"], "flags") or 0)
        if flags & 2:
            problems.append((f"la partie Ordinateur de la GPO {name} est désactivée",
                             f"the Computer part of GPO {name} is disabled"))
        problems += self._setting_problems(evidence, args, guid)
        setting = args["setting"]
        return Verdict.from_problems(
            problems,
            f"La GPO {name} est liée à {ou_label} et définit {setting['value']} = « {setting['data']} ».",
            f"GPO {name} is linked to {ou_label} and sets {setting['value']} = '{setting['data']}'.")

    @staticmethod
    def _setting_problems(evidence: list[Evidence], args: dict[str, Any], guid: str) -> Problems:
        setting = args["setting"]
        sysvol = _one(evidence, "sysvol")
        if sysvol is None:
            return [(f"SYSVOL de la GPO {guid} non lu", f"SYSVOL of GPO {guid} not read")]
        p = sysvol.parsed or {}
        if p.get("logon") != "ok" or p.get("tree") != "ok":
            return [(f"partage SYSVOL illisible (session {p.get('logon')}, partage {p.get('tree')})",
                     f"SYSVOL share unreadable (session {p.get('logon')}, share {p.get('tree')})")]
        paths = sysvol.meta.get("paths") or {}
        files = p.get("files") or {}
        want_key = f"machine\\{setting['key']}\\{setting['value']}".lower()
        found: list[str] = []

        def content(kind: str) -> bytes | None:
            f = files.get(paths.get(kind, ""), {})
            return base64.b64decode(f["data_b64"]) if f.get("status") == "ok" and f.get("data_b64") else None

        if (inf := content("gpttmpl")) is not None:
            value = parse_gpttmpl(inf).get(want_key)
            if value is not None:
                found.append(value)
        if (pol := content("registry_pol")) is not None:
            try:
                entries = parse_registry_pol(pol)
            except (ValueError, struct.error, UnicodeDecodeError):
                entries = []
            found += [str(e["data"]) for e in entries
                      if e["key"].lower() == setting["key"].lower() and e["value"].lower() == setting["value"].lower()]
        if setting["data"] in found:
            return []
        if found:
            return [(f"{setting['value']} vaut « {found[0]} » dans SYSVOL, « {setting['data']} » attendu",
                     f"{setting['value']} is '{found[0]}' in SYSVOL, '{setting['data']}' expected")]
        return [(f"ni GptTmpl.inf ni Registry.pol de la GPO ne définissent {setting['value']}",
                 f"neither the GPO's GptTmpl.inf nor its Registry.pol sets {setting['value']}")]


DA_GRANTED = ("success", "attributeOrValueExists", "entryAlreadyExists")


class DomainAdmins:
    """Members of Domain Admins, direct and nested, are only the allowed accounts (read over
    LDAPS); and by effect, each CSV account, bound with its own password, tries to add itself
    to Domain Admins: only an account with the group's power gets past the access check (a
    member already in it gets "already there", a non-member with the right is added, and the
    grader takes it out again as Administrator)."""

    name = "ad.domain_admins"
    needs: frozenset[Capability] = frozenset({"vantage"})

    def collect(self, ctx: CheckContext, args: dict[str, Any]) -> list[Evidence]:
        base = base_dn(args["realm"])
        da = f"CN=Domain Admins,CN=Users,{base}"
        queries = [
            {"name": "group", "base": da, "scope": "base", "filter": "(objectClass=group)",
             "attributes": ["sAMAccountName", "member"]},
            {"name": "members", "base": base, "scope": "sub",
             "filter": f"(memberOf:{IN_CHAIN}:={escape_filter_chars(da)})",
             "attributes": ["sAMAccountName", "objectClass"]},
        ]
        if args.get("users"):
            queries.append(_users_query(args))
        evidence = ctx.parallel([_ldap_call(ctx, args, queries, "directory")])
        dn_of = {str(_first(e["attributes"], "sAMAccountName")).lower(): e["dn"]
                 for e in (_entries(evidence[0], "users") if evidence[0].ok else [])}
        calls = []
        for user in args.get("users") or []:
            dn = dn_of.get(user["login"].lower())
            if dn is None:
                continue
            op = {"name": "self-add", "op": "add_member", "dn": da, "member": dn}
            probe = partial(ldap.ldap_modify, args["dc"], [op], bind_user=f"{user['login']}@{args['realm'].lower()}",
                            password=user["password"], source=args["vantage"], check=ctx.check.id, timeout=5.0)
            calls.append(ctx.deferred(args["vantage"], "ldap", f"{args['dc']}:636",
                                      f"ldaps {user['login']} adds itself to Domain Admins", probe,
                                      meta={"purpose": "power", "login": user["login"], "dn": dn}))
        evidence += ctx.parallel(calls)
        added = [e.meta["dn"] for e in evidence if e.meta.get("purpose") == "power"
                 and (((e.parsed or {}).get("ops") or {}).get("self-add") or {}).get("result") == "success"]
        if added:
            undo = [{"name": f"undo {i}", "op": "remove_member", "dn": da, "member": dn} for i, dn in enumerate(added)]
            evidence += ctx.parallel([_ldap_write(ctx, args, undo, "cleanup")])
        return evidence

    def judge(self, evidence: list[Evidence], args: dict[str, Any], plan: InstancePlan) -> Verdict:
        directory = _directory(evidence)
        if isinstance(directory, Verdict):
            return directory
        if not _entries(directory, "group"):
            return Verdict.failed("Le groupe Domain Admins est introuvable.",
                                  "The Domain Admins group cannot be found.")
        result = (((directory.parsed or {}).get("results") or {}).get("members") or {}).get("result")
        if result != "success":
            return Verdict.errored(f"La recherche des membres imbriqués a échoué ({result}).",
                                   f"The search for nested members failed ({result}).")
        members = sorted({str(_first(e["attributes"], "sAMAccountName")) for e in _entries(directory, "members")})
        allowed = {a.lower() for a in args.get("allowed", ["Administrator"])}
        extra = [m for m in members if m.lower() not in allowed]
        powerful = []
        tried = 0
        for ev in _by_purpose(evidence, "power"):
            p = ev.parsed or {}
            if not p.get("bound"):
                continue
            tried += 1
            outcome = ((p.get("ops") or {}).get("self-add") or {}).get("result")
            if outcome in DA_GRANTED and str(ev.meta.get("login")).lower() not in allowed:
                powerful.append(f"{ev.meta.get('login')} ({outcome})")
        problems: Problems = []
        if extra:
            problems.append(("membres inattendus de Domain Admins : " + ", ".join(extra),
                             "unexpected members of Domain Admins: " + ", ".join(extra)))
        if powerful:
            problems.append(("comptes qui ont le pouvoir de Domain Admins (ils peuvent s'y ajouter) : "
                             + ", ".join(powerful),
                             "accounts with Domain Admins' power (they can add themselves to it): "
                             + ", ".join(powerful)))
        if args.get("users") and not tried:
            problems.append(("aucun compte du CSV n'a pu se connecter en LDAPS : le pouvoir des comptes n'est pas "
                             "mesuré", "no CSV account could bind over LDAPS: the accounts' power is not measured"))
        who = ", ".join(members) or "personne"
        return Verdict.from_problems(
            problems,
            f"Domain Admins ne contient que : {who} ; aucun des {tried} comptes du CSV essayés ne peut s'y ajouter.",
            f"Domain Admins holds only: {', '.join(members) or 'nobody'}; none of the {tried} CSV accounts tried "
            "can add itself to it.")


GRADERS = [DnsSrv(), Users(), Groups(), MemberServer(), ShareAccess(), PasswordPolicy(), Gpo(), DomainAdmins()]

__all__ = ["GRADERS", "DnsSrv", "DomainAdmins", "Gpo", "Groups", "MemberServer", "PasswordPolicy", "ShareAccess",
           "Users", "base_dn", "dns_a_record", "gplink_entries", "parse_gpttmpl", "parse_registry_pol"]
