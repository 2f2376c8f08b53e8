"""SNMP probes against a real net-snmp agent started inside the node namespace."""

from __future__ import annotations

import os
import threading

import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes import snmp_get_community, snmp_get_v3

pytestmark = [*root_only, pytest.mark.skipif(not os.path.exists("/usr/sbin/snmpd"), reason="needs snmpd")]

SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"
USER = "lktuser"
AUTH_KEY = "auth-secret-123"
PRIV_KEY = "priv-secret-456"
COMMUNITY = "lkt-ro-community"


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab("snmp", 13)
    persist = lab.tmp / "persist"
    persist.mkdir()
    conf = lab.tmp / "snmpd.conf"
    conf.write_text(
        f'createUser {USER} SHA "{AUTH_KEY}" AES "{PRIV_KEY}"\n'
        f"rouser {USER} authpriv\n"
        f"rocommunity {COMMUNITY} 10.250.{lab.subnet}.0/24\n"
        "sysName lkt-probe-agent\n"
        "sysLocation probe-lab\n"
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SNMP_PERSISTENT_DIR": str(persist), "MIBS": ""}
    proc = lab.spawn(lab.n, ["/usr/sbin/snmpd", "-f", "-Lf", str(lab.tmp / "snmpd.log"), "-C",
                             "-c", str(conf), "-p", str(lab.tmp / "snmpd.pid"), f"udp:{lab.n_ip}:161"],
                     env=env, log=lab.tmp / "snmpd.out")
    lab.wait_listening(lab.n, "udp", lab.n_ip, 161, proc)
    lab.snmpd = proc
    return lab


def v3(lab, **kw):
    args = {"user": USER, "auth_protocol": "SHA", "auth_key": AUTH_KEY, "priv_protocol": "AES",
            "priv_key": PRIV_KEY, "ev_id": "s", "source": "v", "timeout": 0.5, "retries": 0}
    args.update(kw)
    return run_in_netns(lab.v, lambda: snmp_get_v3(lab.n_ip, [SYS_NAME, SYS_LOCATION], **args))


def test_daemon_runs_in_its_namespace(lab):
    # ip netns exec execs the daemon in place: the PID we hold is snmpd's own
    assert os.stat(f"/proc/{lab.snmpd.pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab.n}").st_ino
    assert int((lab.tmp / "snmpd.pid").read_text().split()[0]) == lab.snmpd.pid


def test_v3_authpriv_answered(lab):
    ev = v3(lab, check="snmp-ok")
    assert ev.ok and ev.kind == "snmp" and ev.check == "snmp-ok"
    assert ev.parsed["answered"] is True, ev.parsed
    assert ev.parsed["values"][SYS_NAME] == "lkt-probe-agent"
    assert ev.parsed["values"][SYS_LOCATION] == "probe-lab"
    assert ev.parsed["error_indication"] is None and ev.parsed["error_status"] is None
    assert ev.meta["security_level"] == "authPriv"
    assert AUTH_KEY not in ev.model_dump_json() and PRIV_KEY not in ev.model_dump_json()


def test_concurrent_queries_from_many_threads(lab):
    results: dict[int, object] = {}

    def one(i: int) -> None:
        results[i] = v3(lab, ev_id=f"s{i}") if i % 2 else run_in_netns(
            lab.v, lambda: snmp_get_community(lab.n_ip, [SYS_NAME], community=COMMUNITY, ev_id=f"s{i}",
                                              source="v"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    for ev in results.values():
        assert ev.ok and ev.parsed["answered"], ev.parsed
        assert ev.parsed["values"][SYS_NAME] == "lkt-probe-agent"
        assert ev.duration < 2.0


def test_v3_wrong_auth_key_not_answered(lab):
    ev = v3(lab, auth_key="wrong-secret-999")
    assert ev.ok, ev.error
    assert ev.parsed["answered"] is False
    assert ev.parsed["error_indication_type"] == "WrongDigest", ev.parsed


def test_v3_wrong_priv_key_not_answered(lab):
    ev = v3(lab, priv_key="wrong-secret-999")
    assert ev.ok, ev.error
    # net-snmp cannot decrypt the PDU and stays silent: a timeout
    assert ev.parsed["answered"] is False and ev.parsed["error_indication"], ev.parsed


def test_v3_unknown_user(lab):
    ev = v3(lab, user="nobody")
    assert ev.ok and ev.parsed["answered"] is False
    assert ev.parsed["error_indication_type"] == "UnknownUserName", ev.parsed


def test_v3_lower_security_level_refused(lab):
    # rouser ... authpriv: an authNoPriv request gets a response PDU with authorizationError
    ev = v3(lab, priv_protocol=None, priv_key=None)
    assert ev.ok and ev.meta["security_level"] == "authNoPriv"
    assert ev.parsed["answered"] is True
    assert ev.parsed["error_status"] == "authorizationError"
    assert ev.parsed["values"] == {}


def test_v3_bad_protocol_name(lab):
    ev = v3(lab, auth_protocol="SHA999")
    assert not ev.ok and "unknown SNMP auth protocol" in ev.error


def test_v2c_configured_community_answered(lab):
    ev = run_in_netns(lab.v, lambda: snmp_get_community(lab.n_ip, [SYS_NAME], community=COMMUNITY,
                                                        version="2c", ev_id="c1", source="v"))
    assert ev.ok and ev.parsed["answered"] is True
    assert ev.parsed["values"] == {SYS_NAME: "lkt-probe-agent"}
    assert COMMUNITY not in ev.model_dump_json()


def test_v1_configured_community_answered(lab):
    ev = run_in_netns(lab.v, lambda: snmp_get_community(lab.n_ip, [SYS_NAME], community=COMMUNITY,
                                                        version="1", ev_id="c2", source="v"))
    assert ev.ok and ev.parsed["answered"] is True
    assert ev.parsed["values"][SYS_NAME] == "lkt-probe-agent"


def test_v2c_unconfigured_community_not_answered(lab):
    ev = run_in_netns(lab.v, lambda: snmp_get_community(lab.n_ip, [SYS_NAME], community="public",
                                                        version="2c", ev_id="c3", source="v",
                                                        timeout=0.4, retries=1))
    assert ev.ok and ev.parsed["answered"] is False
    assert ev.parsed["error_indication_type"] == "RequestTimedOut", ev.parsed
    assert ev.duration < 3.0


def test_missing_oid_is_answered_with_exception_value(lab):
    ev = run_in_netns(lab.v, lambda: snmp_get_community(lab.n_ip, ["1.3.6.1.2.1.1.99.0"],
                                                        community=COMMUNITY, ev_id="c4", source="v"))
    assert ev.ok and ev.parsed["answered"] is True
    assert ev.parsed["values"]["1.3.6.1.2.1.1.99.0"] in ("noSuchObject", "noSuchInstance")


def test_v2c_no_agent(lab):
    ev = run_in_netns(lab.v, lambda: snmp_get_community(f"10.250.{lab.subnet}.77", [SYS_NAME],
                                                        community=COMMUNITY, ev_id="c5", source="v",
                                                        timeout=0.3, retries=0))
    assert ev.ok and ev.parsed["answered"] is False


def test_non_numeric_oid_rejected(lab):
    ev = run_in_netns(lab.v, lambda: snmp_get_community(lab.n_ip, ["SNMPv2-MIB::sysName.0"],
                                                        community=COMMUNITY, ev_id="c6", source="v"))
    assert not ev.ok and "numeric OID" in ev.error
