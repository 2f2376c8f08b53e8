#!/usr/bin/python3
"""labkit-agent-setup: run in the grader guest (as root, through the guest agent) after the
provider wrote /etc/labkit-agent/{ssh_host_ed25519_key,authorized_keys,places.json}.

Installed into the grader template by ``labkit templates build`` as
/usr/local/sbin/labkit-agent-setup; standard library only (the guest's own python3).

1. sshd: a drop-in that makes the grader agent the only thing root can reach, key-only, with
   the host key and authorized keys labkit wrote (the key line carries the forced command);
2. the grader's places, one network namespace each, from places.json (entries: place, mac,
   vnet, and for a vantage point address + gateway):
   - vantage point ``<p>.v-X``: its NIC as eth0 with its address (and default route);
   - segment ``<p>.s-X``: its NIC as eth0, up, no address (capture);
   - link halves ``<p>.l-X-a`` / ``<p>.l-X-b``: both NICs (a, b) in ONE namespace ``<p>.l-X``
     joined by a bridge br0, so the WAN link passes through the grader (cut, drop, capture).
Idempotent: a place that exists already is left as it is.

LABKIT_AGENT_ROOT (tests only) prefixes every file path; LABKIT_AGENT_IP names the ``ip`` program.
"""

import json
import os
import subprocess
import sys

ROOT = os.environ.get("LABKIT_AGENT_ROOT", "")
IP = os.environ.get("LABKIT_AGENT_IP", "ip")
AGENT_DIR = "/etc/labkit-agent"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-labkit-agent.conf"
SSHD = """# labkit: the grader agent (written by labkit-agent-setup)
HostKey {d}/ssh_host_ed25519_key
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
AllowUsers root
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitTTY no
DisableForwarding yes
PermitTunnel no
PermitUserEnvironment no
MaxAuthTries 2
"""


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
    """(namespace, interface name inside it) of a places.json entry."""
    prefix, _, rest = place.rpartition(".")
    if rest.startswith("l-") and rest[-2:] in ("-a", "-b"):
        return f"{prefix}.{rest[:-2]}", rest[-1]
    return place, "eth0"


def setup_places(places):
    have = existing_namespaces()
    made = set()
    for entry in places:
        ns, ifname = namespace_of(entry["place"])
        if ns in have:
            continue
        dev = nic_by_mac(entry["mac"])
        if ns not in made:
            run("netns", "add", ns)
            run("-n", ns, "link", "set", "lo", "up")
            if ifname in ("a", "b"):
                run("-n", ns, "link", "add", "br0", "type", "bridge")
                run("-n", ns, "link", "set", "br0", "up")
            made.add(ns)
        run("link", "set", dev, "netns", ns)
        run("-n", ns, "link", "set", dev, "name", ifname)
        if ifname in ("a", "b"):
            run("-n", ns, "link", "set", ifname, "master", "br0")
        if entry.get("address"):
            run("-n", ns, "addr", "add", entry["address"], "dev", ifname)
        run("-n", ns, "link", "set", ifname, "up")
        if entry.get("gateway"):
            run("-n", ns, "route", "add", "default", "via", entry["gateway"])


def setup_sshd():
    path = ROOT + SSHD_DROPIN
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(SSHD.format(d=AGENT_DIR))
    for name in ("ssh_host_ed25519_key", "authorized_keys"):
        os.chmod(ROOT + AGENT_DIR + "/" + name, 0o600)
    if not ROOT:
        subprocess.run(["systemctl", "restart", "ssh"], check=True)


def main():
    with open(ROOT + AGENT_DIR + "/places.json") as fh:
        data = json.load(fh)
    setup_sshd()
    setup_places(data["places"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
