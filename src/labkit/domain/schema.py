"""JSON Schemas of lab and topology files, for editors (yaml-language-server) and reviewers.

The committed copies are ``labs/lab.schema.json`` and ``topologies/topology.schema.json``;
regenerate them with ``python -m labkit.domain.schema [PROJECT_DIR]`` after changing the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from labkit.models.lab import LabSpec
from labkit.models.topology import TopologySpec

LAB_SCHEMA = "lab.schema.json"
TOPOLOGY_SCHEMA = "topology.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def lab_schema() -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, **LabSpec.model_json_schema()}


def topology_schema() -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, **TopologySpec.model_json_schema()}


def schema_text(schema: dict[str, Any]) -> str:
    """The exact text written to disk (stable: sorted keys, two-space indent, final newline)."""
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def export_schemas(out_dir: Path) -> list[Path]:
    """Write lab.schema.json and topology.schema.json into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in ((LAB_SCHEMA, lab_schema()), (TOPOLOGY_SCHEMA, topology_schema())):
        path = out_dir / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


def project_schema_files(project: Path) -> dict[Path, str]:
    """Where the committed copies live in a project, with the text each must have."""
    return {
        Path(project) / "labs" / LAB_SCHEMA: schema_text(lab_schema()),
        Path(project) / "topologies" / TOPOLOGY_SCHEMA: schema_text(topology_schema()),
    }


def write_project_schemas(project: Path) -> list[Path]:
    """Refresh the committed copies under ``project``."""
    files = project_schema_files(project)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


if __name__ == "__main__":  # pragma: no cover
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for p in write_project_schemas(root):
        print(p)
