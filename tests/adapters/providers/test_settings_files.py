"""The remote providers' configuration files: TOML into a typed model, the secret in a 0600
file; every problem one sentence naming the file and what to do (Proxmox and GNS3 alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.adapters.gns3.settings import ENV_PASSWORD, load_gns3_settings
from labkit.adapters.providers.settings_files import load_toml_model, read_secret_file
from labkit.adapters.proxmox.settings import load_proxmox_settings
from labkit.errors import UserError


def _secret(tmp_path: Path, text: str = "s3cret\n", mode: int = 0o600) -> Path:
    p = tmp_path / "secret"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_a_secret_file_must_exist_be_private_and_not_empty(tmp_path: Path) -> None:
    kw = {"what": "GNS3 password", "content": "labkit's GNS3 password", "env": ENV_PASSWORD}
    assert read_secret_file(_secret(tmp_path), **kw) == "s3cret"
    with pytest.raises(UserError, match=r"cannot read the GNS3 password file .*/nope .*or set LABKIT_GNS3_PASSWORD"):
        read_secret_file(tmp_path / "nope", **kw)
    with pytest.raises(UserError, match=r"readable by others \(mode 0644\); run 'chmod 600 "):
        read_secret_file(_secret(tmp_path, mode=0o644), **kw)
    with pytest.raises(UserError, match="is empty; write labkit's GNS3 password in it"):
        read_secret_file(_secret(tmp_path, "  \n"), **kw)


def test_toml_errors_are_one_sentence_naming_the_file(tmp_path: Path) -> None:
    from labkit.adapters.gns3.settings import Gns3Settings

    f = tmp_path / "gns3.toml"
    f.write_text("url = [")
    with pytest.raises(UserError, match=r"gns3.toml is not valid TOML .*; fix it\.$"):
        load_toml_model(f, Gns3Settings, clear_key="password", clear_error="clear")
    f.write_text('url = "https://g:3080"\nuser = "labkit"\npassword = "x"\n')
    with pytest.raises(UserError, match="^clear$"):
        load_toml_model(f, Gns3Settings, clear_key="password", clear_error="clear")
    f.write_text('url = "http://gns3.example.org:3080"\nuser = "labkit"\nparallel = 0\n')
    with pytest.raises(UserError) as err:
        load_toml_model(f, Gns3Settings, clear_key="password", clear_error="clear")
    msg = str(err.value)
    assert msg.startswith(f"{f} is invalid (") and "url: " in msg and "parallel: " in msg and msg.endswith("fix it.")


def test_both_providers_load_through_the_shared_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    monkeypatch.delenv("LABKIT_PVE_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("LABKIT_GNS3_CONFIG", raising=False)
    monkeypatch.delenv("LABKIT_PROXMOX_CONFIG", raising=False)
    secret = _secret(tmp_path)
    (tmp_path / "gns3.toml").write_text(f'url = "https://g.example.org:3080"\nuser = "labkit"\n'
                                        f'password_file = "{secret}"\n[templates]\nrouter = "FRR"\n')
    g3 = load_gns3_settings(tmp_path)
    assert g3.password == "s3cret" and g3.templates == {"router": "FRR"} and g3.host == "g.example.org"
    (tmp_path / "proxmox.toml").write_text(f'url = "https://pve:8006"\ntoken_id = "labkit@pve!t"\n'
                                           f'token_secret_file = "{secret}"\n')
    assert load_proxmox_settings(tmp_path).token_secret == "s3cret"
    (tmp_path / "gns3.toml").write_text('url = "https://g:3080"\nuser = "labkit"\n')
    with pytest.raises(UserError, match="no GNS3 password: set password_file in .* or the environment variable"):
        load_gns3_settings(tmp_path)
    monkeypatch.setenv(ENV_PASSWORD, "from-env")
    assert load_gns3_settings(tmp_path).password == "from-env"
