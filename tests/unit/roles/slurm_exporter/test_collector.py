"""The collector against a fake Slurm bin dir, the HTTP server, and the daemon as a process.

The fake commands (conftest.py) log every invocation, so the tests count exactly how many Slurm
commands a collection runs and prove that scrapes run none.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import COMMANDS, SCRIPT, FakeSlurm, load_exporter, make_fake_slurm

exp = load_exporter()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value of an exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def render(collector) -> str:
    """What /metrics answers (the daemon's one rendering path)."""
    return collector.exposition(exp.build_registry(collector)).decode()


def new_collector(fake: FakeSlurm, timeout: float = 5.0) -> object:
    return exp.SlurmCollector(str(fake.bin_dir), interval=0.1, timeout=timeout)


def test_one_collection_runs_each_command_once(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm)
    cache = collector.collect_once()
    calls = fake_slurm.calls()
    assert [c.split()[0] for c in calls] == ["sinfo", "squeue", "sdiag"]
    assert len(calls) <= 3 and cache.commands == 3 and cache.up
    assert calls[0] == "sinfo -h -a -N -O " + exp.format_option(exp.SINFO_FIELDS)
    assert calls[1] == "squeue -h -a -O " + exp.format_option(exp.SQUEUE_FIELDS)
    text = render(collector)
    assert value(text, "slurm_up") == 1
    assert value(text, "slurm_exporter_commands_per_collection") == 3
    assert value(text, "slurm_nodes", partition="gpu", state="powered_down") == 2
    assert value(text, "slurm_nodes", partition="cpu", state="idle") == 0
    assert value(text, "slurm_partition_gpus_total", partition="gpu") == 56
    assert value(text, "slurm_user_gpus_allocated", user="alice", partition="gpu") == 384
    assert value(text, "slurm_jobs", partition="gpu", state="pending", user="alice") == 488
    assert (
        value(
            text,
            "slurm_node_unavailable",
            node="cpu-0010",
            state="drained",
            reason="disk: /scratch full | ticket 42",
        )
        == 1
    )
    assert value(text, "slurm_scheduler_cycle_last_seconds") == pytest.approx(0.077832)
    assert value(text, "slurm_backfill_cycle_last_seconds") == pytest.approx(0.000128)
    assert value(text, "slurm_scheduler_server_threads") == 3
    assert value(text, "slurm_scheduler_threads") == 246
    assert value(text, "slurm_scheduler_agent_queue_size") == 14
    assert value(text, "slurm_scheduler_queue_length") == 2
    for command in COMMANDS:
        assert value(text, "slurm_exporter_command_errors_total", command=command) == 0


def test_every_contract_metric_is_served(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm)
    collector.collect_once()
    names = {name for name, _ in samples(render(collector))}
    contract = {
        "slurm_up",
        "slurm_nodes",
        "slurm_node_unavailable",
        "slurm_partition_nodes_total",
        "slurm_partition_cpus_total",
        "slurm_partition_cpus_allocated",
        "slurm_partition_gpus_total",
        "slurm_partition_gpus_allocated",
        "slurm_user_gpus_allocated",
        "slurm_jobs",
        "slurm_scheduler_threads",
        "slurm_scheduler_queue_length",
        "slurm_scheduler_cycle_last_seconds",
        "slurm_scheduler_cycle_mean_seconds",
        "slurm_backfill_cycle_last_seconds",
        "slurm_scheduler_agent_queue_size",
        "slurm_scheduler_server_threads",
        "slurm_exporter_collection_duration_seconds",
        "slurm_exporter_commands_per_collection",
        "slurm_exporter_last_collection_timestamp_seconds",
        "slurm_exporter_cache_age_seconds",
        "slurm_exporter_command_errors_total",
    }
    assert contract <= names, contract - names


def test_scrapes_run_no_slurm_command(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm)
    collector.collect_once()
    before = len(fake_slurm.calls())
    for _ in range(20):
        assert "slurm_up 1.0" in render(collector)
    assert len(fake_slurm.calls()) == before == 3


def test_slurmctld_down_keeps_serving_the_last_values(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm)
    collector.collect_once()
    fake_slurm.set_all("down")
    cache = collector.collect_once()
    # The first command says the controller cannot be reached: the others are not run.
    assert [c.split()[0] for c in fake_slurm.calls()[3:]] == ["sinfo"]
    assert cache.commands == 1 and not cache.up
    text = render(collector)
    assert [n for n, labels in samples(text) if n == "slurm_exporter_command_duration_seconds"] == [
        "slurm_exporter_command_duration_seconds"
    ]
    assert value(text, "slurm_up") == 0
    assert value(text, "slurm_exporter_command_errors_total", command="sinfo") == 1
    assert value(text, "slurm_exporter_command_errors_total", command="squeue") == 0
    # The previous values are still served.
    assert value(text, "slurm_nodes", partition="gpu", state="down") == 2
    assert value(text, "slurm_jobs", partition="debug", state="running", user="bob") == 1
    assert value(text, "slurm_scheduler_server_threads") == 3
    # Back up: fresh values, slurm_up 1 again, the error count stays.
    fake_slurm.set_all("ok")
    fake_slurm.set_output("squeue", "")
    assert collector.collect_once().up
    text = render(collector)
    assert value(text, "slurm_up") == 1
    assert value(text, "slurm_exporter_command_errors_total", command="sinfo") == 1
    assert not [n for n, _ in samples(text) if n == "slurm_jobs"]


def test_one_failing_command_keeps_its_old_values_only(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm)
    collector.collect_once()
    fake_slurm.set_mode("squeue", "fail")
    fake_slurm.set_output("sinfo", "")
    cache = collector.collect_once()
    # A plain failure (not "controller unreachable") does not stop the other commands.
    assert [c.split()[0] for c in fake_slurm.calls()[3:]] == ["sinfo", "squeue", "sdiag"]
    assert not cache.up
    text = render(collector)
    assert value(text, "slurm_exporter_command_errors_total", command="squeue") == 1
    assert value(text, "slurm_jobs", partition="gpu", state="pending", user="alice") == 488
    # sinfo answered (with no nodes): its families are fresh, so empty.
    assert not [n for n, _ in samples(text) if n == "slurm_nodes"]


def test_a_hanging_command_is_killed_at_its_deadline(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm, timeout=0.5)
    fake_slurm.set_mode("sinfo", "hang")
    begin = time.monotonic()
    cache = collector.collect_once()
    assert time.monotonic() - begin < 3
    assert not cache.up and cache.commands == 1
    assert collector.errors == {"sinfo": 1, "squeue": 0, "sdiag": 0}
    # Before any value was fetched: slurm_up 0, no Slurm families, health metrics present.
    text = render(collector)
    assert value(text, "slurm_up") == 0
    assert value(text, "slurm_exporter_cache_age_seconds") >= 0
    assert not [n for n, _ in samples(text) if n.startswith("slurm_nodes")]


def test_cache_age_grows_while_slurm_fails(fake_slurm: FakeSlurm) -> None:
    now = [1000.0]
    collector = exp.SlurmCollector(str(fake_slurm.bin_dir), timeout=5, clock=lambda: now[0])
    collector.collect_once()
    assert value(render(collector), "slurm_exporter_cache_age_seconds") == 0
    fake_slurm.set_all("down")
    now[0] += 90
    collector.collect_once()
    text = render(collector)
    assert value(text, "slurm_exporter_cache_age_seconds") == 90
    assert value(text, "slurm_exporter_last_collection_timestamp_seconds") == 1090


def test_unparsable_output_counts_as_an_error(fake_slurm: FakeSlurm, monkeypatch) -> None:
    def boom(_text: str) -> dict:
        raise ValueError("surprise")

    monkeypatch.setattr(exp, "parse_sdiag", boom)
    collector = new_collector(fake_slurm)
    cache = collector.collect_once()
    assert not cache.up and collector.errors["sdiag"] == 1
    assert value(render(collector), "slurm_up") == 0


def test_missing_binary_is_an_error_not_a_crash(tmp_path: Path) -> None:
    collector = exp.SlurmCollector(str(tmp_path / "nowhere"), timeout=1)
    cache = collector.collect_once()
    assert not cache.up and cache.commands == 3
    assert collector.errors == {"sinfo": 1, "squeue": 1, "sdiag": 1}


def test_commands_get_slurm_conf_and_full_array_expressions(
    fake_slurm: FakeSlurm, monkeypatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", "/opt/slurm/etc/slurm.conf")
    monkeypatch.setenv("SQUEUE_FORMAT", "%i")
    seen = {}

    def runner(argv, timeout, env):
        seen[Path(argv[0]).name] = (timeout, dict(env))
        return exp.run_command(argv, timeout, env)

    collector = exp.SlurmCollector(str(fake_slurm.bin_dir), timeout=7, runner=runner)
    collector.collect_once()
    timeout, env = seen["squeue"]
    assert timeout == 7
    assert env["SLURM_CONF"] == "/opt/slurm/etc/slurm.conf"
    assert env["SLURM_BITSTR_LEN"] == "0"
    assert "SQUEUE_FORMAT" not in env


def _get(url: str) -> tuple[int, str, float]:
    begin = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(), time.monotonic() - begin
    except urllib.error.HTTPError as err:
        return err.code, "", time.monotonic() - begin


def test_http_server_serves_the_cache_on_loopback(fake_slurm: FakeSlurm) -> None:
    collector = new_collector(fake_slurm)
    collector.collect_once()
    server = exp.make_server("127.0.0.1", 0, collector, exp.build_registry(collector))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1" and port > 0
        status, body, _ = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert value(body, "slurm_up") == 1
        assert value(body, "slurm_partition_nodes_total", partition="gpu") == 8
        assert _get(f"http://127.0.0.1:{port}/")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/nothing")[0] == 404
        assert len(fake_slurm.calls()) == 3
    finally:
        server.shutdown()
        server.server_close()


def test_daemon_process_serves_collects_and_stops(tmp_path: Path) -> None:
    fake = make_fake_slurm(tmp_path / "bin", version="24.11")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--listen-address",
            "127.0.0.1",
            "--port",
            "0",
            "--interval",
            "0.3",
            "--timeout",
            "5",
            "--slurm-bin-dir",
            str(fake.bin_dir),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}/metrics"
        deadline = time.monotonic() + 10
        while len(fake.calls()) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Collections repeat on their own, three commands each.
        assert len(fake.calls()) >= 6
        assert [c.split()[0] for c in fake.calls()[:6]] == list(COMMANDS) * 2
        _, body, _ = _get(url)
        assert value(body, "slurm_up") == 1
        assert value(body, "slurm_nodes", partition="p5", state="powering_up") == 2
        assert value(body, "slurm_user_gpus_allocated", user="alice", partition="p5") == 16
        # slurmctld goes away: the daemon keeps answering with slurm_up 0 and the old values.
        fake.set_all("down")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, body, _ = _get(url)
            if value(body, "slurm_up") == 0:
                break
            time.sleep(0.05)
        assert value(body, "slurm_up") == 0
        assert value(body, "slurm_exporter_command_errors_total", command="sinfo") >= 1
        assert value(body, "slurm_nodes", partition="p5", state="powering_up") == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_once_prints_metrics_and_reports_failure(tmp_path: Path) -> None:
    fake = make_fake_slurm(tmp_path / "bin")
    run = [sys.executable, str(SCRIPT), "--once", "--slurm-bin-dir", str(fake.bin_dir)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert value(done.stdout, "slurm_nodes", partition="debug", state="draining") == 1
    fake.set_mode("sdiag", "fail")
    done = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert value(done.stdout, "slurm_up") == 0
    assert "sdiag failed: exit 2" in done.stderr


@pytest.mark.parametrize(
    "args",
    [["--interval", "0"], ["--timeout", "-1"], ["--port", "70000"]],
)
def test_bad_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit):
        exp.parse_args(args)
