"""The counters CSV the dcgm_exporter role writes: rendered from the role's template and defaults.

Every field must be a DCGM field name known from DCGM's header (fixture with its source), typed
gauge or counter as its meaning requires, and every field the monitoring contract names must be
there. The slow role test checks that the playbook renders the same lines.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "dcgm_exporter"
FIELDS = ROOT / "tests" / "unit" / "fixtures" / "dcgm_exporter" / "dcgm_fields.txt"

# The monitoring contract (shared/metrics.md) and the role's purpose: traffic and errors,
# XID, ECC, remapped rows, throttling.
REQUIRED = {
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    # The last XID seen, not a count.
    "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": "counter",
    # A 0/1 state.
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    # A bitmask.
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": "gauge",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": "counter",
    # Profiling fields are rates over the sample period (bytes per second), not running totals.
    "DCGM_FI_PROF_NVLINK_TX_BYTES": "gauge",
    "DCGM_FI_PROF_NVLINK_RX_BYTES": "gauge",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge",
}


def known_fields() -> dict[str, int]:
    fields = {}
    for line in FIELDS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, number = line.split()
            fields[name] = int(number)
    return fields


def render(counters: list[dict] | None = None) -> str:
    """templates/counters.csv.j2 with the role's defaults, as Ansible renders it."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    if counters is None:
        counters = (
            defaults["dcgm_exporter_default_counters"]
            + defaults["dcgm_exporter_extra_counters"]
            + defaults["dcgm_exporter_user_counters"]
        )
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)
    env.filters["ansible.builtin.comment"] = lambda text: f"#\n# {text}\n#"
    template = env.from_string((ROLE / "templates" / "counters.csv.j2").read_text())
    return template.render(ansible_managed="Ansible managed", __dcgm_exporter_counters=counters)


def parse(text: str) -> list[tuple[str, str, str]]:
    """The CSV as dcgm-exporter reads it: '#' lines skipped, three fields per record."""
    rows = []
    data = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for record in csv.reader(io.StringIO("\n".join(data)), skipinitialspace=True):
        assert len(record) == 3, record
        rows.append((record[0].strip(), record[1].strip(), record[2].strip()))
    return rows


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str, str]]:
    return parse(render())


def test_every_line_is_a_known_dcgm_field_with_a_valid_type(rows) -> None:
    known = known_fields()
    assert rows, "no counters rendered"
    unknown = [field for field, _, _ in rows if field not in known]
    assert unknown == []
    assert {kind for _, kind, _ in rows} <= {"gauge", "counter"}
    assert all(help_text for _, _, help_text in rows)


def test_each_field_once(rows) -> None:
    fields = [field for field, _, _ in rows]
    assert len(fields) == len(set(fields))


@pytest.mark.parametrize(("field", "kind"), sorted(REQUIRED.items()))
def test_required_field_present_with_its_type(rows, field: str, kind: str) -> None:
    types = {f: k for f, k, _ in rows}
    assert types.get(field) == kind


def test_header_carries_ansible_managed() -> None:
    assert render().splitlines()[:3] == ["#", "# Ansible managed", "#"]


def test_a_help_text_with_a_comma_would_break_the_record() -> None:
    # Why preflight refuses commas in help: dcgm-exporter would read a fourth field.
    text = render([{"field": "DCGM_FI_DEV_GPU_UTIL", "type": "gauge", "help": "a, b"}])
    with pytest.raises(AssertionError):
        parse(text)


def test_fixture_ids_match_the_header_for_the_contract_fields() -> None:
    known = known_fields()
    assert known["DCGM_FI_PROF_NVLINK_TX_BYTES"] == 1011
    assert known["DCGM_FI_PROF_NVLINK_RX_BYTES"] == 1012
    assert known["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"] == known["DCGM_FI_DEV_CLOCKS_EVENT_REASONS"]
