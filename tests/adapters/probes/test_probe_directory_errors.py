"""LDAP, Kerberos and SMB probes where nothing answers, and outside a lab namespace.

Their success paths run against a real Samba AD in tests/usecases/test_ad_gpo_lab.py; here
every probe must come back as evidence with ``ok=False`` and a reason (closed port, bad
input), and must refuse to run at all outside a lab namespace.
"""

from __future__ import annotations

import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes.kerberos import kinit_password
from labkit.adapters.probes.ldap import ldap_search
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


def test_refuse_outside_a_lab_namespace():
    with pytest.raises(NamespaceSafetyError):
        ldap_search("10.250.31.2", QUERY, bind_user="a", password="p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        kinit_password("10.250.31.2", "x.lan", "a", "p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        smb_share_access("10.250.31.2", "s", username="a", password="p", ev_id="x", source="v")
    with pytest.raises(NamespaceSafetyError):
        smb_read_files("10.250.31.2", "s", ["f"], username="a", password="p", ev_id="x", source="v")
