"""``labkit templates build --provider proxmox``: the templates labkit clones, from a Debian
cloud image the centre supplies (``debian-12-genericcloud-amd64.qcow2``, a file or a URL).

Templates named as :mod:`labkit.adapters.proxmox.naming` says and as the provider looks them
up: ``node_template(prefix, topology)`` per topology (every node of it: the packages of its
nodes' services and ``packages``) and ``grader_template`` (the grader guest).
Each carries ``labkit-template packages=<hash>``
in its description: a template with the same name and hash is kept (idempotent); one with
another hash is refused (delete it once no instance uses it, then build again).

How a template is made, all through the API (every task's exitstatus checked):
1. the image goes into a file storage with content ``import`` (``upload``, or
   ``download-url`` for a URL: PVE 8.4+), once;
2. ``POST /nodes/{n}/qemu``: the disk imported from it (``import-from``), a cloud-init drive,
   serial console (``serial0: socket``, ``vga: serial0``), guest agent on, NIC 0 on the
   build bridge with the build address, user ``labkit`` and a throwaway SSH key;
3. start; packages are installed over SSH from this host: the API cannot do it (cloud-init
   vendor/user data only comes from ``cicustom`` snippets, and ``upload`` takes only iso,
   vztmpl and import content: no snippets; the guest agent is not in the stock image yet);
   so the guest needs, on the build bridge: an address this host reaches (``--build-ip``, or
   DHCP) and a Debian mirror (through ``--build-gw`` or an HTTP proxy ``--apt-proxy``);
4. cloud-init is cleaned (clones run it again with their own addresses and keys), the guest is
   shut down, the build's address/user/key removed, and the VM converted to a template.
A failure removes the half-built VM.

A topology with container nodes (``container: true``, and ``containers`` on in proxmox.toml) also
gets a CT template ``naming.ct_template(prefix, topology)``, made from the Debian 12 system
container archive the centre names in ``ct_ostemplate`` (``pveam download``): an unprivileged
container (nesting on) with the packages of its container nodes, built the same way (address
on the build bridge, packages over SSH as root with a throwaway key), then stopped and
converted. Its authorized_keys keeps the home's container key (``settings.ct_key_path``, made
here at the first build): Proxmox sets a container's ``ssh-public-keys`` only at creation and a
linked clone copies its template's files, so no per-instance key can be given to a clone. Its
mark holds the package hash and the key's fingerprint (another key: another template).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shlex
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from labkit import __version__
from labkit.adapters.proxmox.naming import ct_template, node_template
from labkit.adapters.proxmox.settings import ProxmoxSettings, ct_key_path
from labkit.errors import LabkitError, ProviderError, UserError
from labkit.models.instance import InstancePlan
from labkit.models.services import SERVICE_PACKAGES

BASE_PACKAGES = ("qemu-guest-agent", "cloud-init", "openssh-server")
CT_BASE_PACKAGES = ("openssh-server",)  # a container: no guest agent, no cloud-init (Proxmox writes its network)
GRADER_PACKAGES = ("python3", "python3-venv", "tcpdump", "iproute2", "nftables", "iputils-ping", "procps")
UPLOAD_DIR = "/tmp/labkit-build"
AGENT_WRAPPER = "#!/bin/sh\n# labkit: the grader agent (ForceCommand of /etc/labkit-agent/authorized_keys)\n" \
    "exec /opt/labkit/bin/python -I -m labkit.agent \"$@\"\n"
AGENT_SSHD_UNIT = """[Unit]
Description=labkit grader agent SSH server (labkit.agent.sshd; configured by labkit-agent-setup)
After=network-online.target
Wants=network-online.target
ConditionPathExists=/etc/labkit-agent/sshd.env

[Service]
EnvironmentFile=/etc/labkit-agent/sshd.env
ExecStart=/opt/labkit/bin/python -I -m labkit.agent.sshd --instance ${LABKIT_INSTANCE} --listen ${LABKIT_LISTEN} \\
  --host-key /etc/labkit-agent/ssh_host_ed25519_key --authorized-keys /etc/labkit-agent/authorized_keys \\
  --relay /etc/labkit-agent/relay.json --log /var/log/labkit-agent-sshd.log
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""
MARK = "labkit-template packages="
BUILDING = "labkit-template-build (half-built: labkit removes it)"
IMAGE_SUFFIXES = (".qcow2", ".raw", ".vmdk")


class Api(Protocol):
    """What the builder needs of :class:`labkit.adapters.proxmox.client.PveClient`."""

    def call(self, method: str, path: str, /, **params: Any) -> Any: ...

    def wait_task(self, node: str, upid: str, timeout: float | None = None, what: str = "") -> None: ...


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    packages: tuple[str, ...]  # sorted, without duplicates
    grader: bool = False  # the grader guest: labkit (its agent) and labkit-agent-setup installed too
    container: bool = False  # a CT template (LXC), for the topology's container nodes
    ct_key: str = ""  # a CT template: the fingerprint of the home's container key it holds

    @property
    def digest(self) -> str:
        extra = f"\ngrader labkit {__version__}" if self.grader else ""
        if self.container:
            extra += f"\ncontainer key {self.ct_key}"
        return hashlib.sha256(("\n".join(self.packages) + extra).encode()).hexdigest()[:16]

    @property
    def mark(self) -> str:
        return f"{MARK}{self.digest}"


def node_packages(plans: Iterable[InstancePlan], container: bool | None = None) -> set[str]:
    """Debian packages the labs' nodes need: their services' and their own ``packages`` (only
    the container nodes' when ``container`` is True, only the others' when False)."""
    out: set[str] = set()
    for plan in plans:
        for node in plan.nodes:
            if container is not None and node.container != container:
                continue
            out.update(SERVICE_PACKAGES[s].package for s in node.services if s in SERVICE_PACKAGES)
            out.update(node.packages)
    return out


def wanted_templates(settings: ProxmoxSettings, plans: Iterable[InstancePlan]) -> list[TemplateSpec]:
    """Per topology, as the provider looks them up: the VM template (:func:`naming.node_template`)
    when some of its nodes are VMs, the CT template (:func:`naming.ct_template`) when some are
    containers (``container: true`` and ``containers`` on); then the grader guest's."""
    by_topology: dict[str, list[InstancePlan]] = {}
    for plan in plans:
        by_topology.setdefault(plan.topology_id, []).append(plan)
    out: list[TemplateSpec] = []
    for topo, group in sorted(by_topology.items()):
        nodes = [n for plan in group for n in plan.nodes]
        cts = settings.containers and any(n.container for n in nodes)
        if not settings.containers or not all(n.container for n in nodes):
            vm_nodes = None if not settings.containers else False
            out.append(TemplateSpec(node_template(settings.template_prefix, topo),
                                    tuple(sorted(set(BASE_PACKAGES) | node_packages(group, vm_nodes)))))
        if cts:
            out.append(TemplateSpec(ct_template(settings.template_prefix, topo),
                                    tuple(sorted(set(CT_BASE_PACKAGES) | node_packages(group, True))),
                                    container=True))
    grader = sorted(set(BASE_PACKAGES) | set(GRADER_PACKAGES))
    return [*out, TemplateSpec(settings.grader_template, tuple(grader), grader=True)]


@dataclass(frozen=True)
class BuildOptions:
    image: str  # a local file or an http(s) URL
    node: str
    image_storage: str = "local"  # a file storage with content "import"
    bridge: str = ""  # default: settings.mgmt_bridge
    build_ip: str = ""  # the build guest's address on the bridge, e.g. "10.250.255.2/16"
    build_gw: str | None = None
    apt_proxy: str | None = None
    labkit_wheel: str | None = None  # labkit's wheel, installed in the grader template (build_wheel)
    memory: int = 1024
    disk_size: str = "8G"
    ssh_timeout: float = 600.0


# (host, port, user, private key PEM, script, timeout, files) -> None; raises on failure.
# files: name -> (content, mode), uploaded to UPLOAD_DIR before the script runs.
Provisioner = Callable[[str, int, str, str, str, float, dict[str, tuple[bytes, int]]], None]


def build_wheel(project: Path, out: Path) -> Path:
    """labkit's wheel for the grader guest, built from a copy of the project's sources (so the
    checkout gets no build/ nor egg-info)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lk-wheel-") as tmp:
        src = Path(tmp) / "labkit"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(project / name, src / name)
        for name in ("src", "graders"):
            shutil.copytree(project / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                              "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            if "bdist_wheel" in res.stdout + res.stderr:
                raise ProviderError("labkit's wheel for the grader template cannot be built here: setuptools "
                                    "lacks bdist_wheel; install the 'wheel' package in labkit's environment, or "
                                    "give a wheel made elsewhere with --labkit-wheel FILE.")
            raise ProviderError(f"building labkit's wheel for the grader template failed: "
                                f"{res.stderr.strip()[-300:]}; give one with --labkit-wheel FILE.")
    wheels = sorted(out.glob("labkit-*.whl"))
    if not wheels:
        raise ProviderError(f"pip made no labkit wheel in {out}; build one with 'pip wheel .' and retry.")
    return wheels[-1]


def grader_files(wheel: str) -> dict[str, tuple[bytes, int]]:
    setup = (Path(__file__).parent / "grader_setup.py").read_bytes()
    return {"labkit-agent-setup": (setup, 0o755), "labkit-agent": (AGENT_WRAPPER.encode(), 0o755),
            "labkit-agent-sshd.service": (AGENT_SSHD_UNIT.encode(), 0o644),
            Path(wheel).name: (Path(wheel).read_bytes(), 0o644)}


def grader_script(wheel_name: str, apt_proxy: str | None) -> str:
    proxy = f"export http_proxy={shlex.quote(apt_proxy)} https_proxy={shlex.quote(apt_proxy)}\n" if apt_proxy else ""
    d = UPLOAD_DIR
    return (f"{proxy}"
            "python3 -m venv /opt/labkit\n"
            f"/opt/labkit/bin/pip install -q {d}/{shlex.quote(wheel_name)}\n"
            f"install -m 0755 {d}/labkit-agent-setup /usr/local/sbin/labkit-agent-setup\n"
            f"install -m 0755 {d}/labkit-agent /usr/local/bin/labkit-agent\n"
            "install -d -m 0700 /etc/labkit-agent\n"
            # the agent's own SSH server (labkit-agent-setup configures and starts it at up)
            f"install -m 0644 {d}/labkit-agent-sshd.service /etc/systemd/system/labkit-agent-sshd.service\n"
            "systemctl daemon-reload\n"
            "/opt/labkit/bin/python -I -m labkit.agent --help >/dev/null\n"
            "/opt/labkit/bin/python -I -m labkit.agent.sshd --help >/dev/null\n")


def check_options(opts: BuildOptions) -> None:
    """Refuse bad options before anything is made."""
    import ipaddress

    try:
        iface = ipaddress.ip_interface(opts.build_ip)
    except ValueError:
        raise UserError(f"--build-ip {opts.build_ip or '(none)'} is not an address with its prefix; give the "
                        "build guest's address on the build bridge, e.g. --build-ip 10.250.255.2/16 (DHCP "
                        "addresses cannot be read before the guest agent is installed).") from None
    if iface.network.prefixlen == iface.max_prefixlen:
        raise UserError(f"--build-ip {opts.build_ip} has no prefix; write it as ADDRESS/PREFIX, e.g. /16.")
    if opts.build_gw:
        try:
            ipaddress.ip_address(opts.build_gw)
        except ValueError:
            raise UserError(f"--build-gw {opts.build_gw} is not an IP address; fix it.") from None
    if not opts.image:
        raise UserError("give the Debian cloud image with --image FILE|URL.")
    if opts.labkit_wheel is not None and not Path(opts.labkit_wheel).is_file():
        raise UserError(f"labkit's wheel {opts.labkit_wheel} does not exist; build it with 'pip wheel --no-deps .'.")
    is_url, filename = _image_name(opts.image)
    if not filename.endswith(IMAGE_SUFFIXES):
        raise UserError(f"the image {opts.image} is not a .qcow2, .raw or .vmdk disk image; give Debian's "
                        "genericcloud .qcow2 (e.g. debian-12-genericcloud-amd64.qcow2).")
    if not is_url and not Path(opts.image).is_file():
        raise UserError(f"the image file {opts.image} does not exist; give the path of the Debian cloud image.")


def _image_name(image: str) -> tuple[bool, str]:
    """(is a URL, the image's file name)."""
    is_url = image.startswith(("http://", "https://"))
    return is_url, posixpath.basename(urllib.parse.urlparse(image).path) if is_url else Path(image).name


def provision_script(packages: Iterable[str], apt_proxy: str | None) -> str:
    line = 'Acquire::http::Proxy "%s";' % apt_proxy  # noqa: UP031
    proxy = f"echo {shlex.quote(line)} > /etc/apt/apt.conf.d/80labkit-proxy\n" if apt_proxy else ""
    pkgs = " ".join(shlex.quote(p) for p in sorted(packages))
    return ("set -eu\n"
            "cloud-init status --wait >/dev/null || true\n"
            f"{proxy}"
            "export DEBIAN_FRONTEND=noninteractive\n"
            "apt-get update -q\n"
            f"apt-get install -y -q --no-install-recommends {pkgs}\n"
            "systemctl enable qemu-guest-agent 2>/dev/null || true  # Debian starts it from udev anyway\n"
            "rm -f /etc/apt/apt.conf.d/80labkit-proxy\n"
            "apt-get clean\n"
            "cloud-init clean --logs --machine-id\n"
            "rm -f /etc/ssh/ssh_host_*\n"
            "sync\n")


CT_HOSTKEYS_UNIT = """[Unit]
Description=labkit: this container's own SSH host keys (made at its first boot)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


def ct_provision_script(packages: Iterable[str], apt_proxy: str | None) -> str:
    """What runs (as root, over SSH) in a CT template's build container: the packages, then
    what makes every clone its own (host keys made at a clone's first boot, an empty
    machine-id), and the build's throwaway key removed from root's authorized_keys (the home's
    container key stays)."""
    line = 'Acquire::http::Proxy "%s";' % apt_proxy  # noqa: UP031
    proxy = f"echo {shlex.quote(line)} > /etc/apt/apt.conf.d/80labkit-proxy\n" if apt_proxy else ""
    pkgs = " ".join(shlex.quote(p) for p in sorted(packages))
    return ("set -eu\n"
            f"{proxy}"
            "export DEBIAN_FRONTEND=noninteractive\n"
            "apt-get update -q\n"
            f"apt-get install -y -q --no-install-recommends {pkgs}\n"
            "rm -f /etc/apt/apt.conf.d/80labkit-proxy\n"
            "apt-get clean\n"
            f"cat > /etc/systemd/system/labkit-ssh-hostkeys.service <<'EOF'\n{CT_HOSTKEYS_UNIT}EOF\n"
            "systemctl enable labkit-ssh-hostkeys.service\n"
            "rm -f /etc/ssh/ssh_host_*\n"
            ": > /etc/machine-id\n"
            "sed -i '/ labkit-template-build$/d' /root/.ssh/authorized_keys\n"
            "sync\n")


def ensure_ct_key(home: Path) -> tuple[str, str]:
    """The home's container key (made once, 0600): (public key line, its SHA-256 fingerprint)."""
    import base64

    from cryptography.hazmat.primitives import serialization

    path = ct_key_path(home)
    pub_path = path.with_name(path.name + ".pub")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem, pub = _new_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(pem)
        pub_path.write_text(pub.replace("labkit-template-build", "labkit-proxmox-ct") + "\n", encoding="utf-8")
    if not pub_path.is_file():
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        pub_path.write_text(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                         serialization.PublicFormat.OpenSSH).decode()
                            + " labkit-proxmox-ct\n", encoding="utf-8")
    pub = pub_path.read_text(encoding="utf-8").strip()
    try:
        blob = base64.b64decode(pub.split()[1])
    except (IndexError, ValueError):
        raise UserError(f"{pub_path} is not an SSH public key; remove {path} and its .pub and build the CT "
                        "templates again.") from None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return pub, f"SHA256:{digest}"


def ssh_provision(host: str, port: int, user: str, key_pem: str, script: str, timeout: float,
                  files: dict[str, tuple[bytes, int]]) -> None:
    """Run ``script`` as root (through sudo unless ``user`` is root) in the build guest over SSH
    (retries the connection until the guest's sshd answers or ``timeout``). The build guest is
    fresh on the centre's build bridge: its host key is not known beforehand and is accepted for
    this one session."""
    import paramiko

    key = paramiko.Ed25519Key.from_private_key(io.StringIO(key_pem))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - fresh build guest
        try:
            client.connect(host, port=port, username=user, pkey=key, timeout=10, banner_timeout=10,
                           auth_timeout=10, allow_agent=False, look_for_keys=False)
        except paramiko.AuthenticationException:
            client.close()
            raise ProviderError(f"the build guest at {host} refused labkit's throwaway key for user {user}; "
                                "is another machine answering at that address? Pick a free --build-ip.") from None
        except (OSError, paramiko.SSHException) as exc:
            last = exc
            client.close()
            time.sleep(3)
            continue
        try:
            if files:
                sftp = client.open_sftp()
                try:
                    try:
                        sftp.mkdir(UPLOAD_DIR, 0o700)
                    except OSError:
                        pass
                    for name, (content, mode) in files.items():
                        with sftp.open(f"{UPLOAD_DIR}/{name}", "wb") as fh:
                            fh.write(content)
                        sftp.chmod(f"{UPLOAD_DIR}/{name}", mode)
                finally:
                    sftp.close()
            # root (a CT template's build container: Debian's system container image has no sudo)
            # runs the script itself; the cloud image's user goes through sudo
            shell = "sh -s" if user == "root" else "sudo sh -s"
            _in, out, err = client.exec_command(shell, timeout=max(1.0, deadline - time.monotonic()))
            _in.write(script)
            _in.channel.shutdown_write()
            code = out.channel.recv_exit_status()
            if code != 0:
                tail = err.read().decode(errors="replace").strip()[-400:]
                raise ProviderError(f"installing the template's packages failed in the build guest (exit {code}): "
                                    f"{tail}; check the build guest's mirror access (--build-gw or --apt-proxy).")
            return
        finally:
            client.close()
    raise ProviderError(f"the build guest at {host} did not answer SSH within {timeout:.0f} s ({last}); check "
                        "that this host reaches the build bridge and the address given by --build-ip.")


def is_current(api: Api, spec: TemplateSpec) -> bool:
    """True when the template exists with this spec's packages (it would be kept)."""
    kind = "lxc" if spec.container else "qemu"
    vm = find_vm(api, spec.name, kind)
    if vm is None or not vm.get("template"):
        return False
    cfg = api.call("GET", f"/nodes/{vm['node']}/{kind}/{vm['vmid']}/config") or {}
    return spec.mark in str(cfg.get("description", ""))


def find_vm(api: Api, name: str, kind: str = "qemu") -> dict[str, Any] | None:
    """The VM (``kind`` qemu) or container (``lxc``) of this name."""
    for r in api.call("GET", "/cluster/resources", type="vm") or []:
        if r.get("name") == name and r.get("type") == kind:
            return dict(r)
    return None


def _task(api: Api, node: str, upid: Any, what: str, timeout: float | None = None) -> None:
    if isinstance(upid, str) and upid.startswith("UPID:"):
        api.wait_task(node, upid, timeout, what)


def ensure_image(api: Api, opts: BuildOptions) -> str:
    """The image's volume id on ``image_storage`` (uploaded or downloaded once)."""
    is_url, filename = _image_name(opts.image)
    volid = f"{opts.image_storage}:import/{filename}"
    base = f"/nodes/{opts.node}/storage/{opts.image_storage}"
    stores = {s.get("storage"): s for s in api.call("GET", f"/nodes/{opts.node}/storage") or []}
    store = stores.get(opts.image_storage)
    if store is None or "import" not in str(store.get("content", "")).split(","):
        what = "does not exist" if store is None else f"does not take content 'import' ({store.get('content')})"
        raise UserError(f"the image storage {opts.image_storage} on {opts.node} {what}; give a file storage "
                        "with content 'import' (--image-storage), or add 'import' to its content in "
                        "Datacenter > Storage (PVE 8.4 or later).")
    have = {c.get("volid") for c in api.call("GET", f"{base}/content", content="import") or []}
    if volid in have:
        return volid
    if is_url:
        upid = api.call("POST", f"{base}/download-url", content="import", filename=filename, url=opts.image)
    else:
        with open(opts.image, "rb") as fh:
            upid = api.call("POST", f"{base}/upload", content="import", filename=fh)
    _task(api, opts.node, upid, f"getting the image {filename} onto {opts.image_storage}", 3600)
    return volid


def _new_key() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption()).decode()
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode()
    return pem, f"{pub} labkit-template-build"


_KINDS = {"qemu": ("VM", "VM", "VMID", "qm"), "lxc": ("CT", "container", "CT", "pct")}  # short, noun, id, CLI


def _destroy(api: Api, node: str, vmid: int, kind: str = "qemu") -> None:
    """Stop and remove a half-built guest; errors are ignored (the build's error matters)."""
    base, short = f"/nodes/{node}/{kind}/{vmid}", _KINDS[kind][0]
    try:
        if (api.call("GET", f"{base}/status/current") or {}).get("status") == "running":
            _task(api, node, api.call("POST", f"{base}/status/stop"), f"stopping {short} {vmid}")
        _task(api, node, api.call("DELETE", base, purge=1), f"removing {short} {vmid}")
    except LabkitError:
        pass


def _current(api: Api, spec: TemplateSpec, kind: str, changed: str) -> bool:
    """True when template ``spec`` exists with its mark (keep it). A build of it that crashed
    earlier is removed; anything else of that name is refused (``changed``: what may differ)."""
    existing = find_vm(api, spec.name, kind)
    if existing is None:
        return False
    node, vmid = str(existing["node"]), int(existing["vmid"])
    desc = str((api.call("GET", f"/nodes/{node}/{kind}/{vmid}/config") or {}).get("description", ""))
    if existing.get("template") and spec.mark in desc:
        return True
    if not existing.get("template") and desc.startswith("labkit-template-build"):
        _destroy(api, node, vmid, kind)  # a build that crashed earlier
        return False
    _short, noun, id_name, cli = _KINDS[kind]
    raise UserError(f"a {noun} named {spec.name} ({id_name} {vmid}) already exists but is not this template "
                    f"({changed} changed?); delete it once no instance uses it ('{cli} destroy {vmid}') and run "
                    "'labkit templates build' again.")


def _create(api: Api, node: str, kind: str, what: str, **params: Any) -> tuple[int, Any]:
    """Create a guest at the next free VMID (``/cluster/nextid`` reserves nothing: on "already
    exists" ask again, 5 times); returns (vmid, the creation task's upid)."""
    for _attempt in range(5):
        vmid = int(api.call("GET", "/cluster/nextid"))
        try:
            return vmid, api.call("POST", f"/nodes/{node}/{kind}", vmid=vmid, **params)
        except LabkitError as exc:
            if "already exists" not in str(exc):
                raise
    raise ProviderError(f"no free VMID for {what} after 5 tries; retry.")


def build_ct_template(api: Api, settings: ProxmoxSettings, spec: TemplateSpec, opts: BuildOptions,
                      provision: Provisioner = ssh_provision, home: Path | None = None) -> str:
    """Make the CT template ``spec`` (or keep it); returns "kept" or "built". ``home``: the labkit
    home whose container key goes in (default: this process's settings)."""
    from dataclasses import replace

    if home is None:
        from labkit.settings import load_settings

        home = load_settings().home
    if not settings.ct_ostemplate:
        raise UserError(f"the CT template {spec.name} needs a Debian 12 system container archive: download one "
                        "('pveam download local debian-12-standard_12.7-1_amd64.tar.zst') and name it in "
                        "proxmox.toml as ct_ostemplate = \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\" "
                        "(or set containers = false).")
    ct_pub, fingerprint = ensure_ct_key(home)
    spec = replace(spec, ct_key=fingerprint)
    if _current(api, spec, "lxc", "packages or container key"):
        return "kept"
    pem, pub = _new_key()
    bridge = opts.bridge or settings.mgmt_bridge
    net0 = f"name=eth0,bridge={bridge},ip={opts.build_ip},type=veth" + (f",gw={opts.build_gw}" if opts.build_gw
                                                                          else "")
    node = opts.node
    size = int(opts.disk_size.rstrip("G")) if opts.disk_size.rstrip("G").isdigit() else 8
    vmid, upid = _create(api, node, "lxc", "the CT template", ostemplate=settings.ct_ostemplate, hostname=spec.name,
                         storage=settings.storage, rootfs=f"{settings.storage}:{size}", memory=opts.memory,
                         cores=1, unprivileged=1, features="nesting=1", net0=net0, description=BUILDING,
                         **{"ssh-public-keys": f"{pub}\n{ct_pub}\n"})
    base = f"/nodes/{node}/lxc/{vmid}"
    try:
        _task(api, node, upid, f"creating {spec.name}", 1800)
        _task(api, node, api.call("POST", f"{base}/status/start"), f"starting {spec.name}")
        script = ct_provision_script(spec.packages, opts.apt_proxy)
        provision(opts.build_ip.split("/")[0], 22, "root", pem, script, opts.ssh_timeout, {})
        _task(api, node, api.call("POST", f"{base}/status/shutdown", timeout=120, forceStop=1),
              f"shutting {spec.name} down", 300)
        # the build's address goes; each clone gets its own NICs at up
        api.call("PUT", f"{base}/config", net0=f"name=eth0,bridge={bridge},type=veth", description=spec.mark)
        _task(api, node, api.call("POST", f"{base}/template"), f"converting {spec.name} to a template")
    except BaseException:
        _destroy(api, node, vmid, "lxc")
        raise
    return "built"


def build_template(api: Api, settings: ProxmoxSettings, spec: TemplateSpec, opts: BuildOptions,
                   provision: Provisioner = ssh_provision, home: Path | None = None) -> str:
    """Make ``spec`` (or keep it); returns "kept" or "built". ``home``: the labkit home whose
    container key goes into a CT template."""
    check_options(opts)
    if spec.container:
        return build_ct_template(api, settings, spec, opts, provision, home=home)
    if _current(api, spec, "qemu", "packages"):
        return "kept"
    if spec.grader and not opts.labkit_wheel:
        raise UserError(f"the grader template {spec.name} needs labkit's wheel (BuildOptions.labkit_wheel).")
    volid = ensure_image(api, opts)
    pem, pub = _new_key()
    bridge = opts.bridge or settings.mgmt_bridge
    ipconfig = f"ip={opts.build_ip}" + (f",gw={opts.build_gw}" if opts.build_gw else "")
    node = opts.node
    vmid, upid = _create(api, node, "qemu", "the template", name=spec.name, memory=opts.memory, cores=1,
                         ostype="l26", scsihw="virtio-scsi-pci", scsi0=f"{settings.storage}:0,import-from={volid}",
                         ide2=f"{settings.storage}:cloudinit", boot="order=scsi0", serial0="socket", vga="serial0",
                         agent="enabled=1", net0=f"virtio,bridge={bridge}", ipconfig0=ipconfig, ciuser="labkit",
                         sshkeys=urllib.parse.quote(pub, safe=""), description=BUILDING)
    base = f"/nodes/{node}/qemu/{vmid}"
    try:
        _task(api, node, upid, f"creating {spec.name}", 1800)
        _task(api, node, api.call("PUT", f"{base}/resize", disk="scsi0", size=opts.disk_size),
              f"resizing {spec.name}'s disk")
        _task(api, node, api.call("POST", f"{base}/status/start"), f"starting {spec.name}")
        script = provision_script(spec.packages, opts.apt_proxy)
        files: dict[str, tuple[bytes, int]] = {}
        if spec.grader:
            files = grader_files(str(opts.labkit_wheel))
            script = script.replace("apt-get clean\n", "apt-get clean\n" + grader_script(
                Path(str(opts.labkit_wheel)).name, opts.apt_proxy))
        script += f"rm -rf {UPLOAD_DIR}\n"
        provision(opts.build_ip.split("/")[0], 22, "labkit", pem, script, opts.ssh_timeout, files)
        _task(api, node, api.call("POST", f"{base}/status/shutdown", timeout=120, forceStop=1),
              f"shutting {spec.name} down", 300)
        api.call("PUT", f"{base}/config", delete="ipconfig0,sshkeys,ciuser", description=spec.mark)
        _task(api, node, api.call("POST", f"{base}/template"), f"converting {spec.name} to a template")
    except BaseException:
        _destroy(api, node, vmid)
        raise
    return "built"

