"""The base services a lab node may list (``Node.services``), and what each one is on Debian,
whatever runs the node: the package that provides it, the binary whose presence says the
package is installed, the process name that shows it runs. How a service is started belongs to
the provider (netns runs its init script inside the node; a Proxmox VM boots it with systemd).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from labkit.models.topology import Service


@dataclass(frozen=True)
class ServicePackage:
    binary: str  # its presence says the Debian package is installed
    package: str  # the Debian package
    process: str  # process name that shows it runs (``status``)


# Order matters: providers start services in this order within a node.
SERVICE_PACKAGES: dict[Service, ServicePackage] = {
    "frr": ServicePackage("/usr/lib/frr/zebra", "frr", "zebra"),
    "snmpd": ServicePackage("/usr/sbin/snmpd", "snmpd", "snmpd"),
    "ssh": ServicePackage("/usr/sbin/sshd", "openssh-server", "sshd"),
    "cron": ServicePackage("/usr/sbin/cron", "cron", "cron"),
    "rsyslog": ServicePackage("/usr/sbin/rsyslogd", "rsyslog", "rsyslogd"),
    "chrony": ServicePackage("/usr/sbin/chronyd", "chrony", "chronyd"),
}
assert set(SERVICE_PACKAGES) == set(get_args(Service)), "every Service of topology.py has its package"
