"""Shared by the dashboard tests of the exporter roles: promtool's PromQL check of a dashboard's
queries (each written as a recording rule, the way promtool parses expressions offline)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml


def promtool_check(
    expressions: list[str], tmp_path: Path, group: str
) -> subprocess.CompletedProcess:
    """``promtool check rules`` over one group with a recording rule per expression."""
    assert shutil.which("promtool"), "promtool is required"
    rules = [{"record": f"{group}:query{i}", "expr": e} for i, e in enumerate(expressions)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": group, "rules": rules}]}))
    return subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
