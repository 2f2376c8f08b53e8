"""Where labkit finds a GNS3 v3 server: ``<LABKIT_HOME>/gns3.toml`` (or the file named by
``LABKIT_GNS3_CONFIG``), with the password of labkit's GNS3 account in ``LABKIT_GNS3_PASSWORD``
or in a file of mode 0600 named by ``password_file``.

Example::

    url = "https://gns3.example.org:3080"      # the controller (http:// only on 127.0.0.1)
    user = "labkit"                             # an Administrator account made for labkit
    password_file = "/var/lib/labkit/gns3-password"
    ca_file = "/etc/labkit/gns3-ca.pem"
    compute_id = "local"
    console_host = "gns3.example.org"           # what candidates' telnet consoles connect to

    [templates]                                 # lab role -> GNS3 template name
    router = "FRR 8.4"
    host = "Debian 12 (labkit)"

    [grader]                                    # labkit's agent on the GNS3 host (SSH)
    host = "gns3.example.org"
    port = 2222
    host_key = "ssh-ed25519 AAAA..."            # pinned: printed by the agent's setup
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from labkit.adapters.providers.settings_files import load_toml_model, read_secret_file
from labkit.errors import UserError

CONFIG_NAME = "gns3.toml"
ENV_CONFIG = "LABKIT_GNS3_CONFIG"
ENV_PASSWORD = "LABKIT_GNS3_PASSWORD"
LOOPBACKS = ("127.0.0.1", "localhost", "[::1]")


class GraderHost(BaseModel):
    """labkit's grader agent on the GNS3 host: it owns the per-candidate host bridges that the
    projects' cloud nodes plug into, and the grader's namespaces on them."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(default=2222, ge=1, le=65535)
    host_key: str = ""  # "ssh-ed25519 AAAA...": the agent's host key, pinned
    client_key_file: str | None = None  # default: <LABKIT_HOME>/keys/gns3-grader (made on first use)


class Gns3Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    user: str
    password: str = Field(default="", repr=False)
    password_file: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    compute_id: str = "local"
    console_host: str | None = None  # default: the url's host
    templates: dict[str, str] = Field(default_factory=dict)  # lab role -> template name
    switch_template: str = "Ethernet switch"  # one per LAN segment (a built-in template)
    grader: GraderHost | None = None
    project_prefix: str = "lk-"
    parallel: int = Field(default=4, ge=1, le=64)
    api_timeout: float = Field(default=30.0, gt=0)
    start_timeout: float = Field(default=300.0, gt=0)
    export_max_mb: int = Field(default=200, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.rstrip("/")
        if v.startswith("https://"):
            return v
        if v.startswith("http://"):
            host = v[len("http://"):].split("/", 1)[0].rsplit(":", 1)[0]
            if host in LOOPBACKS:
                return v
            raise ValueError("url must start with https:// (http:// only for a server on 127.0.0.1: "
                             "the password and the candidates' tokens would cross the network in clear)")
        raise ValueError("url must start with https:// (or http://127.0.0.1:PORT for a local server)")

    @property
    def host(self) -> str:
        """The url's host name (without port or brackets)."""
        from urllib.parse import urlsplit

        return urlsplit(self.url).hostname or ""


def config_path(home: Path) -> Path:
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else Path(home) / CONFIG_NAME


def configured(home: Path) -> bool:
    """True when a GNS3 configuration file exists (no file: labkit does not use GNS3)."""
    return config_path(home).is_file()


def load_gns3_settings(home: Path) -> Gns3Settings:
    """The server's settings; a UserError says what to write where when something is missing."""
    path = config_path(home)
    if not path.is_file():
        raise UserError(f"GNS3 is not configured: write {path} with at least url, user and password_file "
                        f"(or set {ENV_PASSWORD}); see 'labkit doctor --provider gns3'.")
    settings = load_toml_model(
        path, Gns3Settings, clear_key="password",
        clear_error=f"{path} holds the GNS3 password in clear; move it to a file of mode 0600 named by "
                    f"password_file, or to the environment variable {ENV_PASSWORD}.")
    secret = os.environ.get(ENV_PASSWORD, "")
    if not secret and settings.password_file:
        secret = read_secret_file(Path(settings.password_file), what="GNS3 password",
                                  content="labkit's GNS3 password", env=ENV_PASSWORD)
    if not secret:
        raise UserError(f"no GNS3 password: set password_file in {path} (a file of mode 0600) "
                        f"or the environment variable {ENV_PASSWORD}.")
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise UserError(f"the CA file {settings.ca_file} named in {path} does not exist; fix ca_file.")
    return settings.model_copy(update={"password": secret})
