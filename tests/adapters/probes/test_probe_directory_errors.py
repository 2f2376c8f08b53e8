"""LDAP, Kerberos and SMB probes where nothing answers, with bad input, and outside a lab
namespace; and how smbclient's output is read.

Their success paths run against a real Samba AD in tests/usecases/test_ad_gpo_lab.py; here
every probe must come back as evidence with ``ok=False`` and a reason (closed port, bad
input), and must refuse to run at all outside a lab namespace.
"""

from __future__ import annotations

import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes.kerberos import kinit_attempts, kinit_password, parse_smbclient, smb_kerberos
from labkit.adapters.probes.ldap import ldap_modify, ldap_search
from labkit.adapters.probes.smb import smb_read_files, smb_share_access
from labkit.errors import NamespaceSafetyError

pytestmark = root_only

QUERY = [{"name": "q", "base": "DC=x,DC=lan", "scope": "base"}]


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("dir", 31)


def test_ldap_closed_port(lab):
    ev = run_in_netns(lab.v, lambda: ldap_search(lab.n_ip, QUERY, bind_user="a@x.lan", password="p", ev_id="l1",
                                                 source="v", check="c", timeout=2))
    assert not ev.ok and ev.kind == "ldap" and "cannot open ldaps://" in (ev.error or "")
    assert ev.target == f"{lab.n_ip}:636" and "p" not in ev.action.split()


def test_ldap_bad_query_is_not_sent(lab):
    ev = run_in_netns(lab.v, lambda: ldap_search(lab.n_ip, [{"name": "q", "base": "", "scope": "all"}],
                                                 bind_user="a", password="p", ev_id="l2", source="v"))
    assert not ev.ok and "scope" in (ev.error or "")


def test_kerberos_closed_port(lab):
    ev = run_in_netns(lab.v, lambda: kinit_password(lab.n_ip, "x.lan", "alice", "secret", ev_id="k1", source="v",
                                                    timeout=2))
    assert not ev.ok and ev.kind == "kerberos" and "unreachable" in (ev.error or "")
    assert ev.meta["principal"] == "alice@X.LAN" and "secret" not in ev.raw + ev.action
    assert ev.action.startswith(f"nsenter --net=/run/netns/{lab.v} kinit")


def test_kerberos_rejects_odd_principals(lab):
    ev = run_in_netns(lab.v, lambda: kinit_password(lab.n_ip, "x.lan", "a/admin", "p", ev_id="k2", source="v"))
    assert not ev.ok and "plain user principal" in (ev.error or "")


def test_smb_closed_port(lab):
    ev = run_in_netns(lab.v, lambda: smb_share_access(lab.n_ip, "share", username="X\\a", password="p", ev_id="s1",
                                                      source="v", timeout=2))
    assert not ev.ok and ev.kind == "smb" and "cannot connect" in (ev.error or "")
    ev = run_in_netns(lab.v, lambda: smb_read_files(lab.n_ip, "sysvol", ["a\\b"], username="X\\a", password="p",
                                                    ev_id="s2", source="v", timeout=2))
    assert not ev.ok and "cannot connect" in (ev.error or "")


def test_ldap_modify_closed_port_and_bad_operations(lab):
    ops = [{"name": "u", "op": "add", "dn": "CN=u,DC=x,DC=lan", "object_class": ["user"], "password": "Secret-1"}]
    ev = run_in_netns(lab.v, lambda: ldap_modify(lab.n_ip, ops, bind_user="a@x.lan", password="p", ev_id="m1",
                                                 source="v", check="c", timeout=2))
    assert not ev.ok and ev.kind == "ldap" and "cannot open ldaps://" in (ev.error or "")
    assert "Secret-1" not in ev.action + ev.raw
    bad = [{"name": "u", "op": "modify_everything", "dn": "CN=u,DC=x,DC=lan"}]
    ev = run_in_netns(lab.v, lambda: ldap_modify(lab.n_ip, bad, bind_user="a", password="p", ev_id="m2", source="v"))
    assert not ev.ok and "an op among" in (ev.error or "")
    ev = run_in_netns(lab.v, lambda: ldap_modify(lab.n_ip, [], bind_user="a", password="p", ev_id="m3", source="v"))
    assert not ev.ok and "between 1 and" in (ev.error or "")


def test_kerberos_attempts_closed_port_and_bounds(lab):
    ev = run_in_netns(lab.v, lambda: kinit_attempts(lab.n_ip, "x.lan", "alice", [("wrong-1", "nope"), ("right", "s3")],
                                                    ev_id="k3", source="v", timeout=2))
    assert not ev.ok and "unreachable at attempt wrong-1" in (ev.error or "")
    assert "nope" not in ev.raw + ev.action and "s3" not in ev.raw
    ev = run_in_netns(lab.v, lambda: kinit_attempts(lab.n_ip, "x.lan", "alice", [("w", "p")] * 41, ev_id="k4",
                                                    source="v"))
    assert not ev.ok and "between 1 and 40 attempts" in (ev.error or "")


def test_smb_kerberos_closed_kdc_and_bad_names(lab):
    ev = run_in_netns(lab.v, lambda: smb_kerberos(lab.n_ip, "x.lan", "alice", "secret", lab.n_ip, "fs1", "share",
                                                  ev_id="sk1", source="v", write_test=True, timeout=2))
    assert not ev.ok and ev.kind == "smb" and "unreachable" in (ev.error or "")
    assert "secret" not in ev.raw + ev.action
    ev = run_in_netns(lab.v, lambda: smb_kerberos(lab.n_ip, "x.lan", "alice", "p", lab.n_ip, "fs1;rm", "share",
                                                  ev_id="sk2", source="v"))
    assert not ev.ok and "plain server and share names" in (ev.error or "")
    ev = run_in_netns(lab.v, lambda: smb_kerberos(lab.n_ip, "x.lan", "alice", "p", "fs1", "fs1", "share",
                                                  ev_id="sk3", source="v"))
    assert not ev.ok and "not an IP address" in (ev.error or "")


def test_parse_smbclient_steps():
    m = "labkit-probe-0a0b0c0d.txt"
    ok = (f"putting file up.txt as \\{m} (5.9 kb/s) (average 5.9 kb/s)\n"
          f"getting file \\{m} of size 6 as down.txt (6.0 KiloBytes/sec)\n"
          f"NT_STATUS_NO_SUCH_FILE listing \\{m}\n")
    assert parse_smbclient(ok, m, True) == {"logon": "ok", "tree": "ok", "write": "ok", "delete": "ok"}
    denied = f"NT_STATUS_ACCESS_DENIED opening remote file \\{m}\n"
    assert parse_smbclient(denied, m, True)["write"] == "STATUS_ACCESS_DENIED"
    assert parse_smbclient("tree connect failed: NT_STATUS_ACCESS_DENIED\n", m, True)["tree"] == "STATUS_ACCESS_DENIED"
    kerberos_refused = ("gensec_spnego_client_negTokenInit_step: Could not find a suitable mechtype\n"
                        "session setup failed: NT_STATUS_INVALID_PARAMETER\n")
    assert parse_smbclient(kerberos_refused, m, True) == {"logon": "STATUS_INVALID_PARAMETER", "tree": None,
                                                          "write": None, "delete": None}
    kept = ok.replace(f"NT_STATUS_NO_SUCH_FILE listing \\{m}\n",
                      f"NT_STATUS_ACCESS_DENIED deleting remote file \\{m}\n")
    assert parse_smbclient(kept, m, True)["delete"] == "STATUS_ACCESS_DENIED"
    assert parse_smbclient("", m, False) == {"logon": "ok", "tree": "ok", "write": None, "delete": None}


def test_refuse_outside_a_lab_namespace():
    with pytest.raises(NamespaceSafetyError):
        ldap_search("10.250.31.2", QUERY, bind_user="a", password="p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        kinit_password("10.250.31.2", "x.lan", "a", "p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        smb_share_access("10.250.31.2", "s", username="a", password="p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        smb_read_files("10.250.31.2", "s", ["f"], username="a", password="p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        ldap_modify("10.250.31.2", [{"name": "d", "op": "delete", "dn": "CN=x"}], bind_user="a", password="p",
                    ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        kinit_attempts("10.250.31.2", "x.lan", "a", [("w", "p")], ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        smb_kerberos("10.250.31.2", "x.lan", "a", "p", "10.250.31.3", "fs1", "s", ev_id="x", source="v")
