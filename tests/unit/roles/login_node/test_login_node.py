"""Unit tests for the login_node role: preflight, message of the day, login shell environment.

The real role runs with ``ansible-playbook -c local`` and ``--tags login_node_configure``
(preflight and configure, never the package installs). Each inventory host is one case with its
own variables and its own ``__login_node_root`` (the role's internal destination prefix) under a
temporary directory, so nothing is written under the real /etc and one run covers many cases:
hosts that preflight refuses fail alone while the others go on. The JSON callback gives each
host's recap and failure message. The rendered files are then checked for what users see and what
a login shell does with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[4]
MOTD = "etc/motd.d/50-xpu-parallelcluster"
PROFILE = "etc/profile.d/xpu-parallelcluster.sh"
SQUEUE_FORMAT = "%.18i %.9P %.30j %.8u %.2t %.10M %.6D %R"
SACCT_FORMAT = "JobID%-15,JobName%-30,Partition,NNodes,AllocTRES%-45,Elapsed,State,ExitCode"
NOBODY = "65534"

PLAYBOOK = """\
- name: Apply login_node to this machine under a temporary root per case
  hosts: all
  gather_facts: false
  roles:
    - role: xpu.parallelcluster.login_node
"""

# A CPU queue first, so that the examples prove they pick the first queue with accelerators.
QUEUES = [
    {"name": "cpu", "instance_type": "c6i.xlarge", "max_nodes": 16},
    {"name": "gpu", "instance_type": "p6-b200.48xlarge", "max_nodes": 4},
    {"name": "trn", "instance_type": "trn2.48xlarge", "max_nodes": 2},
    # Not taken from the instance catalog: the entry gives its accelerators itself.
    {
        "name": "inference",
        "instance_type": "g5.12xlarge",
        "max_nodes": 8,
        "accelerators": 4,
        "accelerator_model": "A10G",
    },
]
EXTRA = "Support: #ml-infra (Slack)\nQuiet hours: none"
TRICKY = 'it\'s "$HOME" `id` \\n; rm -rf /'

# Cases preflight must refuse: variables, and what the message must say.
REFUSED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "not_login_node": (
        {"pc_node_type": "HeadNode"},
        [
            "not_login_node is a HeadNode node",
            "Run the role on the 'login' group",
            "set login_node_force: true",
        ],
    ),
    "unknown_node_type": (
        {"pc_node_type": None},
        ["not known to be a login node (the inventory sets no pc_node_type)", "login_node_force"],
    ),
    "no_cluster_name": (
        {"pc_cluster_name": ""},
        ["login_node_cluster_name is empty", "set login_node_cluster_name"],
    ),
    "bad_queues": (
        {
            "login_node_queues": [
                {"name": "GPU_1", "instance_type": "p5.48xlarge", "max_nodes": 2},
                {"name": "cpu", "instance_type": "c6i.xlarge", "max_nodes": 0},
                {"name": "big", "instance_type": "x.large", "max_nodes": 1, "accelerators": -1},
                {"name": "cpu", "instance_type": "c6i.xlarge", "max_nodes": 3},
            ]
        },
        [
            "Queue names GPU_1 are not ParallelCluster queue names",
            "Queues cpu need max_nodes of 1 or more",
            "Queues big have a negative accelerator count",
            "repeat a queue and instance type",
        ],
    ),
    "type_not_in_catalog": (
        {"login_node_queues": [{"name": "gpu", "instance_type": "p5en.48xlarg", "max_nodes": 2}]},
        ["unknown instance type 'p5en.48xlarg'", "did you mean 'p5en.48xlarge'"],
    ),
    "argument_spec": (
        {"login_node_queues": [{"name": "gpu", "instance_type": "p5en.48xlarge"}]},
        ["missing required arguments: max_nodes found in login_node_queues"],
    ),
    "paths_and_names": (
        {
            "login_node_environment": {"1BAD": "x", "OK_NAME": "y"},
            "login_node_nccl_env_file": "fsx/nccl/env.sh",
            "login_node_shared_storage": [{"path": "fsx"}],
        },
        [
            "login_node_shared_storage paths fsx must be absolute",
            "login_node_environment names 1BAD are not shell variable names",
            "login_node_nccl_env_file fsx/nccl/env.sh must be an absolute path",
        ],
    ),
}


@dataclass
class HostResult:
    ok: int
    changed: int
    failed: bool
    messages: list[str] = field(default_factory=list)


@dataclass
class Run:
    hosts: dict[str, HostResult]
    output: str

    def __getitem__(self, host: str) -> HostResult:
        return self.hosts[host]


def apply(workdir: Path, cases: dict[str, dict[str, Any]], *args: str) -> Run:
    """Run the role once over ``cases`` (host name -> variables); each host writes under its root.

    A case's variables go over the base ones; a value of None removes the variable altogether.
    """
    hosts = {}
    for name, variables in cases.items():
        base = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "__login_node_root": str(workdir / name / "root"),
            "pc_node_type": "LoginNode",
            "pc_cluster_name": "ml-prod",
        }
        hosts[name] = {k: v for k, v in (base | variables).items() if v is not None}
    (workdir / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (workdir / "play.yml").write_text(PLAYBOOK)
    env = os.environ | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    real_before = real_files()
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            *("-i", str(workdir / "inventory.json"), "--tags", "login_node_configure"),
            *args,
            str(workdir / "play.yml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert real_files() == real_before, "the role wrote outside its temporary root"
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible-playbook printed no JSON report\n{output[-4000:]}") from exc
    results = {}
    for host, stats in report["stats"].items():
        failures = [
            str(task["hosts"][host].get("msg", ""))
            + " ".join(map(str, task["hosts"][host].get("argument_errors", [])))
            for play in report["plays"]
            for task in play["tasks"]
            if task["hosts"].get(host, {}).get("failed")
        ]
        results[host] = HostResult(
            ok=stats["ok"],
            changed=stats["changed"],
            failed=stats["failures"] > 0,
            messages=failures,
        )
    return Run(hosts=results, output=output)


def real_files() -> dict[str, float | None]:
    """Modification times of the role's real destinations on this machine (None: absent)."""
    paths = [Path("/", MOTD), Path("/", MOTD).parent, Path("/", PROFILE)]
    return {str(p): (p.stat().st_mtime if p.exists() else None) for p in paths}


def shell(shell_name: str, script: str, *, user: str | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` with an empty environment, optionally as another user (needs root)."""
    argv = ["env", "-i", "PATH=/usr/bin:/bin", shell_name, "-c", script]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def probe(profile: Path) -> str:
    """Shell code that sources the profile snippet and prints NCCL_PROBE (or 'unset')."""
    return f'. {profile} && printf "%s" "${{NCCL_PROBE-unset}}"'


@dataclass
class Lab:
    """The cases of one run: the working directory and the run's variables and results."""

    workdir: Path
    shared: Path  # world-readable, for the case run as another user
    cases: dict[str, dict[str, Any]]
    first: Run

    def root(self, case: str) -> Path:
        return Path(self.cases[case].get("__login_node_root", self.workdir / case / "root"))

    def motd(self, case: str) -> str:
        return (self.root(case) / MOTD).read_text()

    def profile(self, case: str) -> Path:
        return self.root(case) / PROFILE


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Every case applied once, in one ansible-playbook run."""
    workdir = tmp_path_factory.mktemp("login_node")
    # pytest's directories are private to root: the unreadable-file case lives where another
    # user can reach the profile snippet.
    shared = Path(tempfile.mkdtemp(prefix="login-node-"))
    shared.chmod(0o755)
    # The "disabled" case starts from files an earlier run left.
    for rel in (MOTD, PROFILE):
        (workdir / "disabled" / "root" / rel).parent.mkdir(parents=True)
        (workdir / "disabled" / "root" / rel).write_text("left by an earlier run\n")
    cases: dict[str, dict[str, Any]] = {
        "full": {
            "login_node_queues": QUEUES,
            "login_node_nccl_env_file": str(workdir / "nccl" / "current" / "env.sh"),
            "login_node_motd_extra": EXTRA,
        },
        "custom": {
            # Another node type, accepted because it is forced (a head node without login pools).
            "pc_node_type": "HeadNode",
            "login_node_force": True,
            "login_node_environment": {"SLURM_TIME_FORMAT": "relative", "XPU_TRICKY": TRICKY},
            "login_node_nccl_env_file": "",
            "login_node_motd_container_image": "",
        },
        "unreadable": {
            "__login_node_root": str(shared / "root"),
            "login_node_nccl_env_file": str(shared / "env.sh"),
        },
        "disabled": {"login_node_motd_enabled": False, "login_node_profile_enabled": False},
        **{name: variables for name, (variables, _) in REFUSED.items()},
    }
    try:
        yield Lab(workdir=workdir, shared=shared, cases=cases, first=apply(workdir, cases))
    finally:
        shutil.rmtree(shared)


GOOD = ("full", "custom", "unreadable", "disabled")


def test_good_cases_pass_and_write_their_files(lab):
    for case in GOOD:
        result = lab.first[case]
        assert not result.failed, f"{case}: {result.messages}\n{lab.first.output[-3000:]}"
    for case in ("full", "custom", "unreadable"):
        assert lab.first[case].changed == 4, case  # two directories, two files
        for rel in (MOTD, PROFILE):
            mode = (lab.root(case) / rel).stat().st_mode & 0o777
            assert mode == 0o644, f"{case}: {rel} has mode {mode:o}"


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_preflight_refuses_with_a_message(lab, case):
    result = lab.first[case]
    assert result.failed, f"{case} passed preflight"
    message = " ".join(" ".join(result.messages).split())
    for text in REFUSED[case][1]:
        assert text in message, f"{text!r} not in {message!r}"
    assert not lab.root(case).exists(), "preflight failed but files were written"


def test_motd_shows_cluster_and_queue_table(lab):
    motd = lab.motd("full")
    assert "ml-prod - AWS ParallelCluster (Slurm) login node" in motd
    lines = motd.splitlines()
    rows = {
        "cpu": ["cpu", "c6i.xlarge", "-", "16"],
        # From the instance catalog: 8 B200 per p6-b200, 16 Trainium2 per trn2.
        "gpu": ["gpu", "p6-b200.48xlarge", "8 x B200", "4"],
        "trn": ["trn", "trn2.48xlarge", "16 x Trainium2", "2"],
        # From the entry itself.
        "inference": ["inference", "g5.12xlarge", "4 x A10G", "8"],
    }
    header = next(line for line in lines if "INSTANCE TYPE" in line)
    titles = ("QUEUE", "INSTANCE TYPE", "ACCELERATORS/NODE", "MAX NODES")
    columns = [header.index(title) for title in titles]
    for queue, cells in rows.items():
        line = next((line for line in lines if line.split()[:1] == [queue]), None)
        assert line is not None, f"no row for {queue}:\n{motd}"
        # Each cell starts under its header.
        assert [line.index(cell, col) for cell, col in zip(cells, columns, strict=True)] == columns
        assert line.rstrip().endswith(cells[-1])


def test_motd_shows_storage_and_how_to_submit(lab):
    motd = lab.motd("full")
    assert "   /fsx   FSx for Lustre - data sets, checkpoints, container images\n" in motd
    assert "   /home  home directories\n" in motd
    # Examples use the first queue with accelerators, not the first queue.
    assert "sbatch -p gpu -N 2 --exclusive job.sbatch" in motd
    assert "srun -p gpu -N 1 --exclusive --pty bash -i" in motd
    assert "srun -p gpu -N 1 --container-image=nvcr.io#nvidia/pytorch:25.01-py3 --pty bash" in motd
    assert f"Login shells load {lab.workdir / 'nccl' / 'current' / 'env.sh'}" in motd
    assert " Support: #ml-infra (Slack)\n Quiet hours: none\n" in motd
    assert "[Ansible managed: xpu.parallelcluster.login_node]" in motd


def test_motd_without_queues_nccl_or_container_hint(lab):
    motd = lab.motd("custom")
    assert "Queues" not in motd
    assert "sbatch -N 2 --exclusive job.sbatch" in motd
    assert "--container-image" not in motd
    assert "NCCL" not in motd


def test_profile_is_valid_for_bash_and_sh(lab):
    for case in ("full", "custom"):
        profile = lab.profile(case)
        assert profile.read_text().startswith("#\n# Ansible managed\n#\n")
        for sh in ("bash", "sh"):
            proc = subprocess.run([sh, "-n", str(profile)], capture_output=True, text=True)
            assert proc.returncode == 0, f"{case}: {sh} -n: {proc.stderr}"


def test_login_shell_gets_the_slurm_environment(lab):
    script = f'. {lab.profile("full")} && printf "%s\\n%s" "$SQUEUE_FORMAT" "$SACCT_FORMAT"'
    proc = shell("sh", script)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.split("\n") == [SQUEUE_FORMAT, SACCT_FORMAT]


def test_custom_environment_is_exported_literally_and_replaces_the_defaults(lab):
    profile = lab.profile("custom")
    assert "env.sh" not in profile.read_text()
    proc = shell(
        "sh",
        f'. {profile} && printf "%s|%s|%s" '
        '"$SLURM_TIME_FORMAT" "$XPU_TRICKY" "${SQUEUE_FORMAT-unset}"',
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"relative|{TRICKY}|unset"


def test_profile_sources_nccl_env_only_when_readable(lab):
    nccl_env = lab.workdir / "nccl" / "current" / "env.sh"
    profile = lab.profile("full")
    # Absent (the shared NCCL not built yet): nothing sourced, and no error in the login shell.
    assert not nccl_env.exists()
    proc = shell("bash", probe(profile))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "unset", "")
    # A directory at that path is not a file to source.
    nccl_env.mkdir(parents=True)
    proc = shell("bash", probe(profile))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "unset", "")
    nccl_env.rmdir()
    # Present and readable: sourced, by bash and by sh.
    nccl_env.write_text("export NCCL_PROBE=from-fsx\n")
    try:
        for sh in ("bash", "sh"):
            proc = shell(sh, probe(profile))
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "from-fsx", ""), sh
    finally:
        nccl_env.unlink()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to source the profile as a user who cannot read the file",
)
def test_profile_skips_an_nccl_env_the_user_cannot_read(lab):
    env_file = lab.shared / "env.sh"
    env_file.write_text("export NCCL_PROBE=root-only\n")
    env_file.chmod(0o600)
    proc = shell("bash", probe(lab.profile("unreadable")), user=NOBODY)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "unset", "")
    env_file.chmod(0o644)
    proc = shell("bash", probe(lab.profile("unreadable")), user=NOBODY)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "root-only", "")


def test_disabled_removes_the_files(lab):
    assert lab.first["disabled"].changed == 2
    assert not (lab.root("disabled") / MOTD).exists()
    assert not (lab.root("disabled") / PROFILE).exists()


def test_second_run_changes_nothing(lab):
    before = {case: lab.motd(case) for case in ("full", "custom")}
    run = apply(lab.workdir, {case: lab.cases[case] for case in GOOD})
    for case in GOOD:
        assert (run[case].failed, run[case].changed) == (False, 0), run.output[-3000:]
    assert {case: lab.motd(case) for case in ("full", "custom")} == before


def test_check_mode_predicts_a_change_and_writes_nothing(tmp_path):
    cases = {
        # Nothing there yet.
        "fresh": {"login_node_queues": QUEUES},
        # Already rendered, then a variable changes.
        "changed": {"login_node_queues": QUEUES},
    }
    first = apply(tmp_path, {"changed": cases["changed"]})
    assert not first["changed"].failed
    motd_before = (tmp_path / "changed" / "root" / MOTD).read_text()
    cases["changed"] = cases["changed"] | {"login_node_motd_extra": "New: a p5en queue"}
    run = apply(tmp_path, cases, "--check", "--diff")
    assert not run["fresh"].failed and run["fresh"].changed == 4
    assert not (tmp_path / "fresh" / "root").exists()
    assert not run["changed"].failed and run["changed"].changed == 1
    assert (tmp_path / "changed" / "root" / MOTD).read_text() == motd_before


def test_every_public_variable_is_typed_and_documented():
    role = ROOT / "roles" / "login_node"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    public = {name for name in defaults if not name.startswith("__")}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    readme = (role / "README.md").read_text()
    assert public == set(options)
    for name in public:
        assert f"| `{name}` |" in readme, f"{name} missing from the README's table"
        spec_default = options[name].get("default")
        if spec_default is not None:
            assert spec_default == defaults[name], f"{name}: argument_specs and defaults disagree"
