"""The cluster stage on every preset: offline validation, then pcluster's dry run on the emulator.

Each preset of playbooks/vars/cluster_presets/ goes through playbooks/cluster.yml against the lab's
infra stack in the emulator: the spec is rendered and loaded through ParallelCluster's schema,
then `pcluster create-cluster --dryrun true` runs ParallelCluster's validators against the
emulator. Where the emulator cannot serve a preset as written, the test changes the spec and says
why (EMULATOR_CHANGES); the validators suppressed are the lab's, each with its reason in
playbooks/lab/vars/lab.yml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, playbook

pytestmark = [pytest.mark.lab, pytest.mark.aws]

LAB = yaml.safe_load((ROOT / "playbooks/lab/vars/lab.yml").read_text())
PRESETS = sorted(p.stem for p in (ROOT / "playbooks/vars/cluster_presets").glob("*.yml"))

EMULATOR_CHANGES = {
    # No FSx for Lustre in the emulator (it can neither create nor describe one).
    "fsx": "shared_storage.fsx.enabled=false",
    # The emulator has no capacity reservations: DescribeCapacityReservations answers HTTP 500,
    # so Capacity Block and ODCR queues are checked as on-demand queues.
    "reservations": "CAPACITY_BLOCK/ODCR queues -> ONDEMAND",
    # Instance types the emulator does not know (pcluster's validators describe them), replaced by
    # one of the same CPU architecture; p6e-gb200 is also sold only as Capacity Blocks, which the
    # spec enforces once its queue is on-demand. The offline validation of the preset as written
    # is in tests/unit/plugins/module_utils/test_cluster_render.py (golden files).
    "instance_types": "p6e-gb200.36xlarge -> c7g.2xlarge (arm64, like the Grace CPUs)",
}
UNKNOWN_TO_THE_EMULATOR = {"p6e-gb200.36xlarge": "c7g.2xlarge"}


def emulator_spec(preset: str) -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / f"playbooks/vars/cluster_presets/{preset}.yml").read_text())[
        "cluster_spec"
    ]
    spec["name"] = f"it-{preset}"
    spec.setdefault("shared_storage", {}).setdefault("fsx", {})["enabled"] = False
    for queue in spec["queues"]:
        if queue.get("capacity_type") in ("CAPACITY_BLOCK", "ODCR"):
            queue["capacity_type"] = "ONDEMAND"
            queue.pop("reservation_id", None)
        for resource in queue["compute_resources"]:
            kind = resource["instance_type"]
            resource["instance_type"] = UNKNOWN_TO_THE_EMULATOR.get(kind, kind)
    return spec


_INFRA: dict[str, dict] = {}


def infra_in(region: str, lab_infra: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The lab's infra stack, or the same stack in another region (presets whose instance types
    are offered elsewhere, e.g. trn2 in us-east-2), deployed once per region."""
    if region == LAB["xpu_pc_region"]:
        return lab_infra
    if region not in _INFRA:
        state = tmp_path_factory.mktemp(f"infra-{region}")
        extra = state / "extra.json"
        name = f"it-infra-{region}"
        extra.write_text(
            json.dumps(
                {
                    "xpu_pc_cluster_name": name,
                    "xpu_pc_region": region,
                    "xpu_pc_state_dir": str(state),
                    "xpu_pc_infra": {
                        **LAB["xpu_pc_infra"],
                        "availability_zones": [f"{region}a"],
                    },
                }
            )
        )
        playbook("-e", f"@{extra}", "playbooks/infra.yml", "playbooks/lab/emulator-gaps.yml")
        _INFRA[region] = json.loads((state / name / "infra-outputs.json").read_text())
    return _INFRA[region]


def test_every_preset_is_covered() -> None:
    assert {"p6-b200", "p6e-gb200", "p5en", "p5", "p4d", "cpu"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_passes_offline_validation_and_the_emulator_dry_run(
    preset: str, lab_infra: dict, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    spec = emulator_spec(preset)
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "xpu_pc_cluster_spec": spec,
                "xpu_pc_infra_outputs": infra_in(spec["region"], lab_infra, tmp_path_factory),
                "xpu_pc_cluster_dryrun": True,
                "xpu_pc_pcluster_suppress_validators": LAB["xpu_pc_pcluster_suppress_validators"],
                "xpu_pc_state_dir": str(tmp_path / "state"),
            }
        )
    )
    proc = playbook("-e", f"@{extra}", "playbooks/cluster.yml", check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-5000:]
    assert f"cluster it-{preset}: dry run: cluster it-{preset} would be created" in out, out[-3000:]
    config = yaml.safe_load(
        (tmp_path / "state" / f"it-{preset}" / "cluster-config.yaml").read_text()
    )
    infra = infra_in(spec["region"], lab_infra, tmp_path_factory)
    assert config["HeadNode"]["Networking"]["SubnetId"] == infra["HeadNodeSubnetId"]
    assert config["Scheduling"]["SlurmQueues"], "no queue rendered"
