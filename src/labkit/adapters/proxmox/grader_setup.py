#!/usr/bin/python3
"""labkit-agent-setup: run in the grader guest (as root, through the guest agent) after the
provider wrote /etc/labkit-agent/{ssh_host_ed25519_key,authorized_keys,places.json}.

Installed into the grader template by ``labkit templates build`` as
/usr/local/sbin/labkit-agent-setup; standard library only (the guest's own python3).

1. the agent's own SSH server (``labkit.agent.sshd``, systemd unit labkit-agent-sshd.service
   installed in the template) in place of OpenSSH's sshd (stopped and disabled): key only (the
   keys of authorized_keys, their options ignored), a session is the grader agent, and its
   relay (``labkit agent-proxy``, Ansible's way to the nodes) opens connections to a node
   address on port 22 from the vantage point whose LAN holds it (relay.json, written here from
   places.json: the vantage points' addresses, and the node addresses from places.json's
   ``nodes``);
2. the grader's places, one network namespace each, from places.json's ``places``; the grader
   owns every LAN's layer 2, as the netns provider does:
   - segment ``<p>.s-X`` (entry: place, ports = [{name, mac, vnet, member}, ...]): a bridge
     ``br0`` joining the grader NICs of the segment's members, each moved in and renamed to
     its port name (p1..pN, the order of the segment's members): every frame between two of
     the segment's VMs crosses this bridge (capture, cut, silent drop);
   - vantage point ``<p>.v-X`` (entry: place, segment, address, gateway): a veth, ``eth0`` in
     the vantage namespace with its address (and default route), its peer a further port
     (p<N+1>, ...) of the segment's ``br0``;
   - link halves ``<p>.l-X-a`` / ``<p>.l-X-b`` (entry: place, mac, vnet): both NICs in ONE
     namespace ``<p>.l-X`` as ports p1 (half a) and p2 (half b) of a bridge br0, as on netns,
     so the WAN link passes through the grader (cut, drop, capture).
   places.json's ``mtu`` (1450 in a VXLAN zone, absent otherwise) is set on every bridge, NIC
   and veth made here, so the vantage points send nothing the VXLAN VNets would drop.
Idempotent: a place that exists already is left as it is.

LABKIT_AGENT_ROOT (tests only) prefixes every file path; LABKIT_AGENT_IP and
LABKIT_AGENT_SYSTEMCTL name the ``ip`` and ``systemctl`` programs.
"""

import ipaddress
import json
import os
import subprocess
import sys

ROOT = os.environ.get("LABKIT_AGENT_ROOT", "")
IP = os.environ.get("LABKIT_AGENT_IP", "ip")
AGENT_DIR = "/etc/labkit-agent"
SYSTEMCTL = os.environ.get("LABKIT_AGENT_SYSTEMCTL", "systemctl")
OLD_SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-labkit-agent.conf"  # what earlier versions wrote
UNIT = "labkit-agent-sshd.service"
LISTEN = "0.0.0.0:22"  # the guest's own namespace holds only the management NIC
RELAY_PORTS = [22]


def run(*argv):
    subprocess.run([IP, *argv], check=True)


def existing_namespaces():
    out = subprocess.run([IP, "netns", "list"], check=True, capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def nic_by_mac(mac):
    base = ROOT + "/sys/class/net"
    for dev in sorted(os.listdir(base)):
        try:
            with open(os.path.join(base, dev, "address")) as fh:
                if fh.read().strip().lower() == mac.lower():
                    return dev
        except OSError:
            continue
    raise SystemExit(f"labkit-agent-setup: no NIC with MAC {mac} in the grader guest")


def namespace_of(place):
    """(namespace, bridge port name inside it) of a link-half entry of places.json: half a is
    port p1, half b port p2, as on netns (the graders' cable pull names these ports)."""
    prefix, _, rest = place.rpartition(".")
    if not (rest.startswith("l-") and rest[-2:] in ("-a", "-b")):
        raise SystemExit(f"labkit-agent-setup: {place} in places.json is no link half (<prefix>.l-<link>-a/-b)")
    return f"{prefix}.{rest[:-2]}", "p1" if rest[-1] == "a" else "p2"


def _mtu(mtu):
    """``ip`` words setting an MTU (none when the lab's networks keep the default 1500)."""
    return ["mtu", str(int(mtu))] if mtu else []


def bridge_namespace(ns, mtu=None):
    run("netns", "add", ns)
    run("-n", ns, "link", "set", "lo", "up")
    run("-n", ns, "link", "add", "br0", *_mtu(mtu), "type", "bridge", "stp_state", "0", "forward_delay", "0")
    run("-n", ns, "link", "set", "br0", "up")


def plug_nic(ns, dev, name, mtu=None):
    """The guest's NIC ``dev``, moved into ``ns`` as port ``name`` of its br0, up."""
    run("link", "set", dev, "netns", ns)
    run("-n", ns, "link", "set", dev, "name", name)
    run("-n", ns, "link", "set", name, *_mtu(mtu), "master", "br0", "up")


def setup_places(places, mtu=None):
    existing = existing_namespaces()  # left as they are (idempotent)
    have = set(existing)
    segments = [e for e in places if "ports" in e]
    halves = [e for e in places if "mac" in e]
    vantage = [e for e in places if "segment" in e]
    # every NIC found before anything is made (a missing one: nothing half-made)
    macs = [p["mac"] for e in segments if e["place"] not in existing for p in e["ports"]]
    macs += [e["mac"] for e in halves if namespace_of(e["place"])[0] not in existing]
    devs = {m.lower(): nic_by_mac(m) for m in macs}
    next_port = {}
    for entry in segments:
        ns = entry["place"]
        next_port[ns] = len(entry["ports"]) + 1
        if ns in existing:
            continue
        bridge_namespace(ns, mtu)
        for port in entry["ports"]:
            plug_nic(ns, devs[port["mac"].lower()], port["name"], mtu)
        have.add(ns)
    for entry in halves:
        ns, ifname = namespace_of(entry["place"])
        if ns in existing:
            continue
        if ns not in have:
            bridge_namespace(ns, mtu)
            have.add(ns)
        plug_nic(ns, devs[entry["mac"].lower()], ifname, mtu)
    for entry in vantage:
        ns, sw = entry["place"], entry["segment"]
        if sw not in next_port:
            raise SystemExit(f"labkit-agent-setup: vantage point {ns} is on {sw}, which places.json does not make")
        port = f"p{next_port[sw]}"
        next_port[sw] += 1
        if ns in existing:
            continue
        run("netns", "add", ns)
        run("link", "add", "name", "eth0", "netns", ns, *_mtu(mtu), "type", "veth", "peer", "name", port,
            "netns", sw, *_mtu(mtu))
        run("-n", sw, "link", "set", port, "master", "br0", "up")
        run("-n", ns, "link", "set", "lo", "up")
        run("-n", ns, "addr", "add", entry["address"], "dev", "eth0")
        run("-n", ns, "link", "set", "eth0", "up")
        if entry.get("gateway"):
            run("-n", ns, "route", "add", "default", "via", entry["gateway"])


def node_addresses(data):
    """The nodes' addresses (places.json's ``nodes``): the relay's only destinations."""
    return [str(a).split("/")[0] for a in data.get("nodes") or []]


def relay_targets(data):
    """node address -> the vantage place whose LAN holds it (addresses on no such LAN: none)."""
    nets = [(ipaddress.ip_interface(e["address"]).network, e["place"]) for e in data["places"] if e.get("address")]
    out = {}
    for a in node_addresses(data):
        ip = ipaddress.ip_address(a)
        place = next((p for net, p in nets if ip in net), None)
        if place and str(ip) not in out:
            out[str(ip)] = place
    return out


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def setup_agent_sshd(data):
    d = ROOT + AGENT_DIR
    write_private(d + "/relay.json", json.dumps({"ports": RELAY_PORTS, "targets": relay_targets(data)}, indent=1))
    write_private(d + "/sshd.env", f"LABKIT_INSTANCE={data['instance']}\nLABKIT_LISTEN={LISTEN}\n")
    for name in ("ssh_host_ed25519_key", "authorized_keys"):
        os.chmod(d + "/" + name, 0o600)
    if os.path.exists(ROOT + OLD_SSHD_DROPIN):
        os.unlink(ROOT + OLD_SSHD_DROPIN)
    # OpenSSH's sshd would hold port 22: the agent's server takes its place
    subprocess.run([SYSTEMCTL, "disable", "--now", "ssh.service", "ssh.socket"], check=False)
    subprocess.run([SYSTEMCTL, "enable", UNIT], check=True)
    subprocess.run([SYSTEMCTL, "restart", UNIT], check=True)


def main():
    with open(ROOT + AGENT_DIR + "/places.json") as fh:
        data = json.load(fh)
    setup_places(data["places"], data.get("mtu"))
    setup_agent_sshd(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
