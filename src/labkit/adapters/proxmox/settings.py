"""Where labkit finds a Proxmox VE cluster: ``<LABKIT_HOME>/proxmox.toml`` (or the file named by
``LABKIT_PROXMOX_CONFIG``), with the token secret in ``LABKIT_PVE_TOKEN_SECRET`` or in a file of
mode 0600 named by ``token_secret_file``.

Example::

    url = "https://pve1.example.org:8006"
    token_id = "labkit@pve!labkit"
    token_secret_file = "/var/lib/labkit/pve-token"   # or env LABKIT_PVE_TOKEN_SECRET
    ca_file = "/etc/labkit/pve-ca.pem"                # or verify_tls = false (tests only)
    storage = "local-lvm"
    zone = "labkit"                                   # an SDN zone of type simple or vxlan
    mgmt_bridge = "vmbr1"                             # where the grader guests' first NIC sits
    mgmt_cidr = "10.250.0.0/16"                       # grader guests' management addresses
    containers = true                                 # nodes marked container: true run as LXC
    ct_ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"  # for the CT templates
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from labkit.adapters.providers.settings_files import load_toml_model, read_secret_file
from labkit.errors import UserError

CONFIG_NAME = "proxmox.toml"
ENV_CONFIG = "LABKIT_PROXMOX_CONFIG"
ENV_SECRET = "LABKIT_PVE_TOKEN_SECRET"


class ProxmoxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    token_id: str  # user@realm!name
    token_secret: str = Field(default="", repr=False)
    token_secret_file: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    nodes: list[str] = Field(default_factory=list)  # empty: every online node
    storage: str = "local-lvm"
    zone: str = "labkit"
    mgmt_bridge: str = "vmbr1"
    mgmt_cidr: str = "10.250.0.0/16"  # the grader guests' management addresses (one /30 each)
    agent_port: int = 22  # sshd of the grader guest (ForceCommand: the grader agent)
    template_prefix: str = "lk-tpl-"
    grader_template: str = "lk-tpl-grader"
    vmid_base: int = Field(default=100000, ge=100)
    vmid_block: int = Field(default=100, ge=4, le=10000)
    vmid_blocks: int = Field(default=1000, ge=1)
    parallel: int = Field(default=4, ge=1, le=64)
    task_timeout: float = Field(default=300.0, gt=0)
    api_timeout: float = Field(default=30.0, gt=0)
    sdn_timeout: float = Field(default=120.0, gt=0)
    ready_timeout: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    # nodes whose topology says ``container: true`` run as unprivileged LXC containers, linked
    # clones of a CT template per topology; false: every node is a QEMU VM
    containers: bool = True
    # the Debian 12 system container archive the CT templates are made from (``storage:vztmpl/...``,
    # e.g. from 'pveam download local debian-12-standard_12.7-1_amd64.tar.zst')
    ct_ostemplate: str = Field(default="", pattern=r"^$|^[a-zA-Z0-9][a-zA-Z0-9_.-]*:vztmpl/[^/]+$")

    @field_validator("token_id")
    @classmethod
    def _token_id(cls, v: str) -> str:
        user, bang, name = v.partition("!")
        if not bang or "@" not in user or not name:
            raise ValueError("token_id must look like user@realm!tokenname")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError("url must start with https:// (the Proxmox API is only served over TLS)")
        return v.rstrip("/")

    @property
    def host_port(self) -> tuple[str, int]:
        rest = self.url[len("https://"):].split("/", 1)[0]
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            return rest, 8006
        return host.strip("[]"), int(port)


def config_path(home: Path) -> Path:
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else Path(home) / CONFIG_NAME


def ct_key_path(home: Path) -> Path:
    """The home's container key (private, 0600; ``.pub`` beside it): baked into every CT template
    this home builds, and how Ansible reaches container nodes. Proxmox sets a container's
    ``ssh-public-keys`` only at creation and a linked clone copies its template's
    authorized_keys, so there is no per-instance key for container clones."""
    return Path(home) / "keys" / "proxmox-ct"


def configured(home: Path) -> bool:
    """True when a Proxmox configuration file exists (no file: labkit does not use Proxmox)."""
    return config_path(home).is_file()


def load_proxmox_settings(home: Path) -> ProxmoxSettings:
    """The cluster's settings; a UserError says what to write where when something is missing."""
    path = config_path(home)
    if not path.is_file():
        raise UserError(f"Proxmox is not configured: write {path} with at least url, token_id and "
                        f"token_secret_file (or set {ENV_SECRET}); see 'labkit doctor --provider proxmox'.")
    settings = load_toml_model(
        path, ProxmoxSettings, clear_key="token_secret",
        clear_error=f"{path} holds the token secret in clear; move it to a file of mode 0600 named by "
                    f"token_secret_file, or to the environment variable {ENV_SECRET}.")
    secret = os.environ.get(ENV_SECRET, "")
    if not secret and settings.token_secret_file:
        secret = read_secret_file(Path(settings.token_secret_file), what="Proxmox token secret",
                                  content="the token's secret", env=ENV_SECRET)
    if not secret:
        raise UserError(f"no Proxmox token secret: set token_secret_file in {path} (a file of mode 0600) "
                        f"or the environment variable {ENV_SECRET}.")
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise UserError(f"the CA file {settings.ca_file} named in {path} does not exist; fix ca_file.")
    return settings.model_copy(update={"token_secret": secret})
