"""Suite-wide pytest configuration.

The network fence (tests/fence.py) is registered here so that every run that collects anything
under tests/ gets it: the socket guard from configure time on, and the environment check for
tests marked ``aws``.

The collection is importable as ``ansible_collections.xpu.parallelcluster`` (and its
dependencies, amazon.aws among them, as ``ansible_collections.<ns>.<name>``) from the
collections tree that ``make deps`` prepares, so unit tests import modules and module_utils
exactly as Ansible does.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".cache" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

pytest_plugins = ["tests.fence"]
