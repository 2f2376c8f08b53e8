"""Where labkit keeps things. Every path can be moved with an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _find_project_root() -> Path:
    env = os.environ.get("LABKIT_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "labs").is_dir() and (d / "topologies").is_dir():
            return d
    # editable install: src/labkit/settings.py -> project root two levels above src
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    home: Path  # persistent state: instances/, runs/
    run_dir: Path  # volatile: namespace bind-mount files
    project: Path  # labs/, topologies/, playbooks/, graders/, inventories/
    images: Path = Path("/var/lib/labkit/images")  # the nodes' root filesystems (build-node-image.sh)

    @property
    def instances(self) -> Path:
        return self.home / "instances"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def labs(self) -> Path:
        return self.project / "labs"

    @property
    def topologies(self) -> Path:
        return self.project / "topologies"

    @property
    def playbooks(self) -> Path:
        return self.project / "playbooks"

    @property
    def inventories(self) -> Path:
        return self.project / "inventories"


def load_settings() -> Settings:
    return Settings(
        home=Path(os.environ.get("LABKIT_HOME", "/var/lib/labkit")),
        run_dir=Path(os.environ.get("LABKIT_RUN_DIR", "/run/labkit")),
        project=_find_project_root(),
        images=Path(os.environ.get("LABKIT_IMAGE_DIR", "/var/lib/labkit/images")),
    )
