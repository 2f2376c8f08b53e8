"""Node data volumes and the base services rsyslog and chrony on the netns provider: a volume
is a tmpfs of the declared size inside the node's mount namespace, and writes there reach
neither the host nor the node's overlay; each node's init scripts stop only that node's
daemons; chronyd runs with -x (it never sets the shared clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.models.topology import NodeSpec
from tests.conftest import LabEnv, leftovers, namespace_inodes

pytestmark = pytest.mark.root


def _pid(env: LabEnv, name: str, node: str, pidfile: str) -> int:
    return int(env.labkit("exec", name, node, "--", "cat", pidfile).stdout.strip())


def test_volume_has_its_size_and_writes_stay_in_the_node(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "supervision-snmp", "--instance", "supvol", "--seed", "7")
    df = lab_env.labkit("exec", "supvol", "srv1", "--", "df", "-P", "-k", "/srv/data").stdout.splitlines()[-1].split()
    assert df[0] == "tmpfs" and int(df[1]) == 16 * 1024 and df[5] == "/srv/data"
    # a file larger than the volume does not fit: the volume is full, nothing spills over
    fill = lab_env.labkit("exec", "supvol", "srv1", "--", "sh", "-c",
                          "head -c 20000000 /dev/zero > /srv/data/big", check=False)
    assert fill.returncode != 0 and "No space left" in fill.stderr
    size = lab_env.labkit("exec", "supvol", "srv1", "--", "stat", "-c", "%s", "/srv/data/big").stdout.strip()
    assert int(size) <= 16 * 1024 * 1024
    assert not Path("/srv/data/big").exists()
    upper = lab_env.settings.instances / "supvol" / "nodes" / "srv1" / "upper" / "srv" / "data"
    assert not (upper / "big").exists()
    # another node's volume is its own
    other = lab_env.labkit("exec", "supvol", "srv2", "--", "ls", "-A", "/srv/data").stdout.strip()
    assert other == ""
    inodes = namespace_inodes("supvol")
    lab_env.labkit("down", "supvol")
    assert leftovers(lab_env.settings, "supvol", inodes) == []


def test_base_service_stops_stay_in_their_node(lab_env: LabEnv) -> None:
    lab_env.labkit("up", "supervision-snmp", "--instance", "supsvc", "--seed", "8")
    others = {(node, f): _pid(lab_env, "supsvc", node, f) for node in ("srv2", "r1")
              for f in ("/run/chrony/chronyd.pid", "/run/rsyslogd.pid", "/run/snmpd.pid")}
    # pids are the node's own (its PID namespace): read them inside the node
    cmdline = lab_env.labkit("exec", "supsvc", "r1", "--", "sh", "-c",
                             "tr '\\0' '\\n' < /proc/$(cat /run/chrony/chronyd.pid)/cmdline").stdout.split()
    assert "-x" in cmdline, cmdline
    # kernel messages are the host's: no node reads /proc/kmsg
    conf = lab_env.labkit("exec", "supsvc", "srv1", "--", "grep", "-c", '^module(load="imklog")', "/etc/rsyslog.conf",
                          check=False)
    assert conf.stdout.strip() == "0"
    lab_env.labkit("exec", "supsvc", "srv1", "--", "sh", "-c",
                   "/etc/init.d/chrony stop; /etc/init.d/snmpd stop; "
                   "start-stop-daemon --stop --quiet --retry TERM/5/KILL/2 --pidfile /run/rsyslogd.pid "
                   "--exec /usr/sbin/rsyslogd")
    status = lab_env.labkit("status", "supsvc", "--json").stdout
    assert '"rsyslog": false' in status  # srv1's are stopped...
    for (node, f), pid in others.items():  # ...and no other node's daemon was signalled
        alive = lab_env.labkit("exec", "supsvc", node, "--", "sh", "-c", f"kill -0 {pid} && cat {f}", check=False)
        assert alive.returncode == 0 and alive.stdout.strip() == str(pid), f"{node}'s {f} ({pid}) was stopped by srv1"
    lab_env.labkit("down", "supsvc")
    assert leftovers(lab_env.settings, "supsvc") == []


@pytest.mark.parametrize("path", ["/mnt/data", "/srv/../etc", "relative", "/etc/data"])
def test_volume_paths_outside_the_node_dirs_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="volume path|String should match"):
        NodeSpec(name="n", role="server", volumes=[{"path": path, "size": "16m"}])  # type: ignore[list-item]
