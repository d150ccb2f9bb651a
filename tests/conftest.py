"""Suite-wide pytest configuration.

The network fence (tests/fence.py) is registered here so that every run that collects anything
under tests/ gets it: the socket guard from configure time on, and the environment check for
tests marked ``aws``.
"""

pytest_plugins = ["tests.fence"]
