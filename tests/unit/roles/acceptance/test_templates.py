"""The acceptance role's batch script: rendered by Ansible for planned runs, checked by shellcheck.

Runs one ansible-playbook (local connection) that renders ``run.sbatch.j2`` with the role's
defaults for a GPU ring run, an EFA-only run, a container run and a CPU MPI run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.xpu.parallelcluster.plugins.filter.acceptance import acceptance_plan

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "acceptance"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("acceptance")
    gpu = acceptance_plan(
        [{"name": "gpu", "instance_type": "p5en.48xlarge", "max_nodes": 2}],
        container_image="/fsx/images/nccl tests.sqsh",
    )["runs"]
    cpu = acceptance_plan([{"name": "cpu", "instance_type": "c6i.xlarge", "max_nodes": 2}])["runs"]
    mix = acceptance_plan(
        [
            {"name": "mix", "compute_resource": "a", "instance_type": "c6i.xlarge", "max_nodes": 2},
            {"name": "mix", "compute_resource": "b", "instance_type": "c7i.xlarge", "max_nodes": 2},
        ]
    )["runs"]
    runs = [r for r in gpu if r["variant"] in ("ring", "efa_only", "container")] + cpu[:1] + mix[:1]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    defaults.pop("acceptance_run_id")
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {**defaults, "acceptance_root": "/fsx/acceptance", "runs": runs},
            "tasks": [
                {
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / "run.sbatch.j2"),
                        "dest": f"{tmp}/{{{{ run.name }}}}.sbatch",
                        "mode": "0644",
                    },
                    "loop": "{{ runs }}",
                    "loop_control": {"loop_var": "__run"},
                    "vars": {
                        "run": "{{ __run | combine({'dir': base ~ __run.name}) }}",
                        "base": "/fsx/acceptance/c1/r1/",
                    },
                }
            ],
        }
    ]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {p.stem: p.read_text() for p in tmp.glob("*.sbatch")}


def test_every_script_passes_shellcheck(rendered: dict[str, str], tmp_path: Path) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (make deps installs it)")
    for name, text in rendered.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        proc = subprocess.run(
            ["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{name}:\n{proc.stdout}"


def test_gpu_ring_run(rendered: dict[str, str]) -> None:
    script = rendered["gpu-all_reduce-2n-ring"]
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=8" in script
    assert "#SBATCH --gpus-per-node=8" in script and "#SBATCH --partition=gpu" in script
    assert "export NCCL_ALGO=Ring" in script and "export NCCL_DEBUG=INFO" in script
    assert "all_reduce_perf" in script and "-c 1" in script  # data checks on
    assert "source /etc/profile.d/xpu-nccl.sh" in script
    for obsolete in ("FI_EFA_USE_DEVICE_RDMA", "FI_PROVIDER", "NCCL_PROTO"):
        assert obsolete not in script
    assert "--ranks 16" in script and "--instance-type p5en.48xlarge" in script
    assert 'exit "${rc}"' in script


def test_efa_only_and_container_runs(rendered: dict[str, str]) -> None:
    efa_only = rendered["gpu-all_reduce-1n-efa_only"]
    assert "export NCCL_P2P_DISABLE=1" in efa_only and "export NCCL_SHM_DISABLE=1" in efa_only
    container = rendered["gpu-all_reduce-2n-container"]
    assert "--container-image='/fsx/images/nccl tests.sqsh'" in container
    assert "/opt/amazon/efa:/opt/amazon/efa,/opt/amazon/ofi-nccl:/opt/amazon/ofi-nccl" in container


def test_cpu_run_uses_mpirun_and_the_shared_benchmark(rendered: dict[str, str]) -> None:
    script = rendered["cpu-all_reduce-2n"]
    assert (
        "mpirun" in script and "/fsx/acceptance/bin/mpi_bench.py --collective all_reduce" in script
    )
    assert "--gpus-per-node" not in script and "srun" not in script
    assert "--benchmark mpi" in script and json.dumps("cpu")  # queue name flows through
    assert "#SBATCH --output=/fsx/acceptance/c1/r1/cpu-all_reduce-2n/output.txt" in script


def test_only_a_run_of_a_shared_queue_is_pinned_to_its_instance_type(
    rendered: dict[str, str],
) -> None:
    assert "#SBATCH --constraint=c6i.xlarge\n" in rendered["mix-a-all_reduce-2n"]
    assert "--constraint" not in rendered["cpu-all_reduce-2n"]
