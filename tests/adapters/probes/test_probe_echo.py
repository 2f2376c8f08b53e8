"""Grader-to-grader echo: only the far probe, which holds the call's key, can answer."""

from __future__ import annotations

import secrets
import select
import threading

import pytest
from probe_testlib import root_only

from labkit.adapters.netns.nsutil import run_in_netns
from labkit.adapters.probes.echo import NONCE_LEN, EchoPair, open_udp
from labkit.errors import NamespaceSafetyError

pytestmark = root_only


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("echo", 40)


def _pair(lab, target_ip: str | None = None) -> EchoPair:
    return EchoPair.open(lambda where, fn: run_in_netns(where, fn, 5), lab.v, lab.n, target_ip or lab.n_ip)


def test_the_far_probe_answers_every_nonce(lab):
    with _pair(lab) as pair:
        res = pair.exchange(count=4, timeout=1.0)
    assert res["reachable"] and res["verified"] == 4 and res["forged"] == 0
    assert res["responder_received"] == 4 and res["responder_peers"] == [lab.v_ip]
    assert len(res["rtt_ms"]) == 4


def test_an_impostor_that_owns_the_address_is_not_counted(lab):
    """Whoever answers on the far address without the key (a candidate's box that took the
    probe's address) sends replies that fail the MAC: not reachable, and counted as forged."""
    pair = _pair(lab)
    stop = threading.Event()

    def impostor() -> None:
        while not stop.is_set():
            if select.select([pair.responder], [], [], 0.05)[0]:
                data, addr = pair.responder.recvfrom(2048)
                pair.responder.sendto(data[:NONCE_LEN] + secrets.token_bytes(32), addr)

    t = threading.Thread(target=impostor, daemon=True)
    t.start()
    try:
        res = pair.exchange(count=3, timeout=0.5)
    finally:
        stop.set()
        t.join(2)
        pair.sender.close()
        pair.responder.close()
    assert not res["reachable"] and res["verified"] == 0 and res["forged"] == 3


def test_no_route_means_not_reachable(lab):
    with _pair(lab) as pair:
        pair.target_ip = "10.250.40.99"  # nobody there: the responder is never reached
        res = pair.exchange(count=2, timeout=0.3)
    assert not res["reachable"] and res["verified"] == 0 and res["responder_received"] == 0


def test_wait_reports_the_first_verified_reply(lab):
    with _pair(lab) as pair:
        res = pair.wait(deadline_s=2.0, interval=0.1)
    assert res["reachable"] and res["first_reply_after_s"] is not None and res["first_reply_after_s"] < 2.0


def test_wait_is_bounded_when_nothing_answers(lab):
    with _pair(lab) as pair:
        pair.target_ip = "10.250.40.99"
        res = pair.wait(deadline_s=0.5, interval=0.1)
    assert not res["reachable"] and res["first_reply_after_s"] is None and 3 <= res["sent"] <= 7


def test_refuses_to_open_a_socket_outside_a_lab_namespace():
    with pytest.raises(NamespaceSafetyError):
        open_udp(None)
