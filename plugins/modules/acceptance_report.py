#!/usr/bin/python
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
---
module: acceptance_report
short_description: Gate acceptance benchmark runs; write JSON, Markdown and PNG reports
version_added: 0.1.0
description:
  - Reads the benchmark runs that role C(xpu.parallelcluster.acceptance) leaves under O(run_dir)
    (one folder per run holding C(meta.json), the job's metadata, and C(output.txt), the
    benchmark's output in nccl-tests' format or its C(-J) JSON) and applies the gates below to
    each run.
  - C(correctness) - the job exited 0, the output has result rows, no row has wrong elements
    (C(#wrong)), the out-of-bounds footer is 0 and no C(Test ... failure) line was printed; the bus
    bandwidth printed matches algorithm bandwidth times the collective's factor for the run's rank
    count (a wrong rank count or a garbled output fails here).
  - C(efa) - for runs across nodes of an instance type with EFA, the aws-ofi-nccl line
    C(Selected provider is efa ... (found N nics)) is present with N equal to the type's EFA
    interface count in the instance catalog.
  - C(bandwidth) - the peak bus bandwidth over the large messages (O(min_size_bytes) and up) is
    at least O(bandwidth_fraction) of the calibrated expectation for the instance type, collective
    and node count (the catalog's C(expected) figures, or O(expectations)). Applies to single-node
    runs and to multi-node runs forced to the ring algorithm (variant C(ring)), whose figures are
    comparable with the line rate. An expectation above the physical ceiling (NVLink per GPU on
    one node, the node's network line rate across nodes) is refused.
  - C(regression) - the peak bus bandwidth is not more than O(regression_tolerance) below the same
    run's figure in the previous report stored for the cluster under O(history_dir).
  - Writes C(report.json), C(report.md), C(busbw_<collective>.png) (bus bandwidth against message
    size) and C(scaling.png) (bus bandwidth and efficiency against node count) into O(output_dir).
    After a passing report it becomes the cluster's reference for the next regression check.
  - Fails, when O(fail_on_gate=true), with a message that names each failed gate, the run and the
    shortfall.
options:
  run_dir:
    description: Folder with one sub-folder per benchmark run (C(meta.json) + C(output.txt)).
    type: path
    required: true
  output_dir:
    description: Where the report files go. Default - C(<run_dir>/report).
    type: path
  cluster_name:
    description: The cluster the runs belong to (names the regression reference).
    type: str
    required: true
  history_dir:
    description:
      - Folder that keeps C(<cluster_name>/latest.json), the last passing report, for the
        regression gate. Without it the regression gate is skipped.
    type: path
  bandwidth_fraction:
    description: Share of the calibrated expectation a run must reach (0 < x <= 1.5).
    type: float
    default: 0.95
  regression_tolerance:
    description: Largest allowed drop against the previous passing report, as a share (0-1).
    type: float
    default: 0.1
  min_size_bytes:
    description:
      - Messages from this size up count for the bandwidth and regression gates (a run whose
        largest message is smaller uses its largest size only).
    type: int
    default: 1073741824
  expectations:
    description:
      - "Overrides of the calibrated expectations in GB/s, keyed by instance type, then collective,
        then node count - for example C({p5en.48xlarge: {all_reduce: {1: 420.0, 2: 300.0}}})."
    type: dict
    default: {}
  plots:
    description: Write the PNG plots (needs matplotlib on the host that runs the module).
    type: bool
    default: true
  fail_on_gate:
    description: Fail the task when a gate fails (the report is written first).
    type: bool
    default: true
author:
  - xpu.parallelcluster contributors
attributes:
  check_mode:
    support: full
    description: Computes the gates and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
    description: Runs where the run folder is readable, usually the controller after a fetch.
requirements:
  - matplotlib (for O(plots))
seealso:
  - module: xpu.parallelcluster.cluster_config
"""

EXAMPLES = r"""
- name: Gate the runs of this validation and write the report
  xpu.parallelcluster.acceptance_report:
    run_dir: "{{ playbook_dir }}/../.cache/acceptance/ml1/20261128T101500Z"
    cluster_name: ml1
    history_dir: "{{ playbook_dir }}/../.cache/acceptance/history"
  delegate_to: localhost

- name: Report only, never fail (for a first calibration run)
  xpu.parallelcluster.acceptance_report:
    run_dir: /fsx/acceptance/ml1/20261128T101500Z
    cluster_name: ml1
    fail_on_gate: false
    expectations:
      p5en.48xlarge:
        all_reduce: {1: 420.0, 2: 300.0}
"""

RETURN = r"""
passed:
  description: Every gate of every run passed or was skipped.
  returned: always
  type: bool
gates:
  description: One entry per run and gate - run, gate, status (pass, fail or skip) and detail.
  returned: always
  type: list
  elements: dict
  sample:
    - {run: all_reduce-2n-ring, gate: bandwidth, status: pass,
       detail: "peak 351.6 GB/s >= 0.95 x 300.0 GB/s"}
runs:
  description: Per run - name, collective, variant, nodes, ranks, instance type, peak bus bandwidth.
  returned: always
  type: list
  elements: dict
report:
  description: Paths of the files written (json, markdown, plots); empty in check mode.
  returned: always
  type: dict
failures:
  description: One line per failed gate, as in the failure message.
  returned: always
  type: list
  elements: str
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog
from ansible_collections.xpu.parallelcluster.plugins.module_utils import nccl_tests as nt

REPORT_SCHEMA = 1
MULTI_NODE_COMPARABLE = ("ring",)


def load_runs(run_dir):
    runs = []
    for name in sorted(os.listdir(run_dir)):
        folder = os.path.join(run_dir, name)
        meta_path = os.path.join(folder, "meta.json")
        if not os.path.isfile(meta_path):
            continue
        with open(meta_path) as handle:
            try:
                meta = json.load(handle)
            except ValueError as exc:
                meta = {"name": name, "meta_error": f"meta.json is not JSON: {exc}"}
        meta.setdefault("name", name)
        output_path = os.path.join(folder, "output.txt")
        text = ""
        if os.path.isfile(output_path):
            with open(output_path, errors="replace") as handle:
                text = handle.read()
        runs.append((meta, text))
    return runs


def physical_ceiling(entry, nodes):
    if nodes <= 1:
        return entry.single_node_ceiling_GBps or None
    return entry.line_rate_GBps or None


def large_rows(result, min_size):
    if not result.rows:
        return []
    largest = max(r.size for r in result.rows)
    floor = min(min_size, largest)
    return [r for r in result.rows if r.size >= floor]


def peak(rows):
    values = [bw for r in rows if (bw := r.best_busbw()) is not None]
    return max(values) if values else None


class Gates:
    def __init__(self):
        self.items = []

    def add(self, run, gate, status, detail):
        self.items.append({"run": run, "gate": gate, "status": status, "detail": detail})

    def failures(self):
        return [
            f"{g['run']}: gate {g['gate']} failed - {g['detail']}"
            for g in self.items
            if g["status"] == "fail"
        ]


def evaluate(params, runs, previous):
    gates = Gates()
    summaries = []
    overrides = params["expectations"] or {}
    for meta, text in runs:
        name = str(meta["name"])
        collective = nt.normalise_collective(meta.get("collective"))
        nodes = int(meta.get("nodes") or 1)
        variant = str(meta.get("variant") or "default")
        itype = meta.get("instance_type")
        try:
            entry = catalog.lookup(itype) if itype else None
        except catalog.UnknownInstanceTypeError:
            entry = None
        result = None
        parse_error = meta.get("meta_error")
        if not parse_error:
            try:
                result = nt.parse(text, collective)
            except nt.ParseError as exc:
                parse_error = str(exc)
        ranks = int(meta.get("ranks") or 0) or (result.nranks if result else None)

        # correctness
        problems = []
        if parse_error:
            problems.append(parse_error)
        exit_code = meta.get("exit_code")
        if exit_code not in (0, "0", None):
            problems.append(f"the job exited {exit_code}")
        if result is not None:
            if not result.rows:
                problems.append("no result rows")
            wrong = result.total_wrong()
            if wrong:
                problems.append(f"{wrong:g} wrong elements (#wrong)")
            if result.out_of_bounds:
                problems.append(f"{result.out_of_bounds} out-of-bounds values")
            if result.failures:
                problems.append(f"failure line: {result.failures[0]}")
            if result.rows and ranks:
                bad = nt.busbw_mismatches(result, ranks)
                if bad:
                    first = bad[0]
                    problems.append(
                        f"busbw {first['busbw']} at {first['size']} B does not match algbw x factor"
                        f" for {ranks} ranks ({first['expected']:.2f})"
                    )
        gates.add(
            name,
            "correctness",
            "fail" if problems else "pass",
            "; ".join(problems) or "data checked, no failures",
        )

        rows = large_rows(result, params["min_size_bytes"]) if result else []
        measured = peak(rows)

        # efa
        if (
            entry is not None
            and entry.efa_supported
            and meta.get("benchmark", "nccl-tests") == "nccl-tests"
            and (nodes > 1 or variant == "efa_only")
        ):
            want = entry.efa_interfaces
            found = [p for p in (result.providers if result else []) if p["provider"] == "efa"]
            if not found:
                seen = (
                    ", ".join(
                        f"{p['provider']} ({p['nics']} nics)"
                        for p in (result.providers if result else [])
                    )
                    or "none"
                )
                gates.add(
                    name,
                    "efa",
                    "fail",
                    f"no 'Selected provider is efa' line (providers seen: {seen});"
                    f" expected efa with {want} nics",
                )
            elif any(p["nics"] != want for p in found):
                nics = found[0]["nics"]
                gates.add(
                    name,
                    "efa",
                    "fail",
                    f"efa found {nics} nics, {itype} has {want}:"
                    f" {want - nics} EFA interfaces unused",
                )
            else:
                gates.add(name, "efa", "pass", f"efa with {want} nics")
        else:
            why = (
                "no EFA on this instance type"
                if entry is not None and not entry.efa_supported
                else "single-node or non-NCCL run"
            )
            if entry is None:
                why = f"instance type {itype!r} not in the catalog"
            gates.add(name, "efa", "skip", why)

        # bandwidth
        expected = None
        comparable = nodes == 1 or variant in MULTI_NODE_COMPARABLE
        override = ((overrides.get(itype) or {}).get(collective) or {}) if itype else {}
        if override:
            known = sorted(int(n) for n in override if int(n) <= nodes)
            if known:
                expected = float({int(k): v for k, v in override.items()}[known[-1]])
        elif entry is not None and collective:
            expected = catalog.expected_busbw(itype, nodes, collective)
        ceiling = physical_ceiling(entry, nodes) if entry is not None else None
        if expected is not None and ceiling and expected > ceiling:
            gates.add(
                name,
                "bandwidth",
                "fail",
                f"expectation {expected:.1f} GB/s is above the physical ceiling {ceiling:.1f} GB/s"
                f" for {nodes} node(s) of {itype}: fix the expectation",
            )
        elif expected is None:
            gates.add(
                name,
                "bandwidth",
                "skip",
                f"no calibrated expectation for {itype} {collective} on {nodes} node(s)",
            )
        elif not comparable:
            gates.add(
                name,
                "bandwidth",
                "skip",
                f"variant {variant} on {nodes} nodes is not comparable with the line rate"
                " (run the ring variant)",
            )
        elif measured is None:
            gates.add(name, "bandwidth", "fail", "no bandwidth measured")
        else:
            target = params["bandwidth_fraction"] * expected
            if measured >= target:
                gates.add(
                    name,
                    "bandwidth",
                    "pass",
                    f"peak {measured:.1f} GB/s >= {params['bandwidth_fraction']:g}"
                    f" x {expected:.1f} GB/s",
                )
            else:
                gates.add(
                    name,
                    "bandwidth",
                    "fail",
                    f"peak {measured:.1f} GB/s < {target:.1f} GB/s"
                    f" ({params['bandwidth_fraction']:g} x {expected:.1f}):"
                    f" {target - measured:.1f} GB/s ({(target - measured) / target:.0%}) short",
                )

        # regression
        before = (previous or {}).get(name)
        if previous is None:
            gates.add(name, "regression", "skip", "no previous report for this cluster")
        elif before is None or measured is None:
            gates.add(name, "regression", "skip", "no previous figure for this run")
        else:
            floor = (1 - params["regression_tolerance"]) * before
            drop = (before - measured) / before if before else 0.0
            if measured >= floor:
                gates.add(
                    name,
                    "regression",
                    "pass",
                    f"peak {measured:.2f} GB/s vs {before:.2f} before ({-drop:+.1%})",
                )
            else:
                gates.add(
                    name,
                    "regression",
                    "fail",
                    f"peak {measured:.2f} GB/s is {drop:.1%} below the previous {before:.2f} GB/s"
                    f" (tolerance {params['regression_tolerance']:.0%})",
                )

        summaries.append(
            {
                "name": name,
                "benchmark": meta.get("benchmark", "nccl-tests"),
                "collective": collective,
                "variant": variant,
                "nodes": nodes,
                "ranks": ranks,
                "instance_type": itype,
                "queue": meta.get("queue"),
                "job_id": meta.get("job_id"),
                "peak_busbw": measured,
                "expected_busbw": expected,
                "ceiling_busbw": ceiling,
                "meta": meta,
                "result": result.to_dict() if result else None,
            }
        )
    return gates, summaries


def markdown(cluster, run_id, summaries, gates, passed):
    lines = [
        f"# Acceptance report - {cluster}",
        "",
        f"Run {run_id}: **{'PASSED' if passed else 'FAILED'}**",
        "",
        "| run | nodes | ranks | instance type | variant | peak busbw (GB/s) | expected"
        " | correctness | efa | bandwidth | regression |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    by_run = {}
    for g in gates:
        by_run.setdefault(g["run"], {})[g["gate"]] = g["status"]
    for s in summaries:
        status = by_run.get(s["name"], {})
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {s['name']} | {s['nodes']} | {s['ranks'] or '-'} | {s['instance_type'] or '-'}"
            f" | {s['variant']} | {fmt(s['peak_busbw'])} | {fmt(s['expected_busbw'])} | "
            + " | ".join(
                status.get(g, "-") for g in ("correctness", "efa", "bandwidth", "regression")
            )
            + " |"
        )
    lines += ["", "## Gate details", ""]
    lines += [f"- {g['run']} / {g['gate']}: {g['status']} - {g['detail']}" for g in gates]
    lines += ["", "## Versions", ""]
    for s in summaries:
        versions = s["meta"].get("versions") or {}
        if versions:
            text = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
            lines.append(f"- {s['name']}: {text}")
    return "\n".join(lines) + "\n"


def row_busbw(row):
    values = [
        h["busbw"]
        for h in (row["out_of_place"], row["in_place"])
        if h and h.get("busbw") is not None
    ]
    return max(values) if values else None


def plot(output_dir, summaries):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    written = []
    collectives = sorted({s["collective"] for s in summaries if s["collective"] and s["result"]})
    for collective in collectives:
        fig, ax = plt.subplots(figsize=(8, 5))
        for s in summaries:
            if s["collective"] != collective or not s["result"]:
                continue
            points = [
                (r["size"], bw) for r in s["result"]["rows"] if (bw := row_busbw(r)) is not None
            ]
            if points:
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    label=f"{s['name']} ({s['nodes']}n)",
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("bus bandwidth (GB/s)")
        ax.set_title(f"{collective}: bus bandwidth vs message size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        path = os.path.join(output_dir, f"busbw_{collective}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    scaling = sorted(
        (s for s in summaries if s["peak_busbw"] is not None and s["collective"] == "all_reduce"),
        key=lambda s: s["nodes"],
    )
    if scaling:
        fig, ax = plt.subplots(figsize=(8, 5))
        by_variant = {}
        for s in scaling:
            by_variant.setdefault(s["variant"], []).append(s)
        for variant, items in sorted(by_variant.items()):
            ax.plot(
                [s["nodes"] for s in items],
                [s["peak_busbw"] for s in items],
                marker="o",
                label=f"busbw ({variant})",
            )
        ax.set_xlabel("nodes")
        ax.set_ylabel("peak bus bandwidth (GB/s)")
        ax.set_xscale("log", base=2)
        eff = [
            (s["nodes"], s["peak_busbw"] / s["ceiling_busbw"])
            for s in scaling
            if s["ceiling_busbw"]
        ]
        if eff:
            twin = ax.twinx()
            twin.plot(
                [e[0] for e in eff],
                [100 * e[1] for e in eff],
                "k--",
                marker="x",
                label="efficiency vs ceiling (%)",
            )
            twin.set_ylabel("efficiency vs physical ceiling (%)")
            twin.set_ylim(0, 110)
            twin.legend(loc="lower right", fontsize="small")
        ax.set_title("all_reduce scaling")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
        path = os.path.join(output_dir, "scaling.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def write_atomic(path, text):
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            run_dir=dict(type="path", required=True),
            output_dir=dict(type="path"),
            cluster_name=dict(type="str", required=True),
            history_dir=dict(type="path"),
            bandwidth_fraction=dict(type="float", default=0.95),
            regression_tolerance=dict(type="float", default=0.1),
            min_size_bytes=dict(type="int", default=1 << 30),
            expectations=dict(type="dict", default={}),
            plots=dict(type="bool", default=True),
            fail_on_gate=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p["bandwidth_fraction"] <= 1.5:
        module.fail_json(
            msg=f"bandwidth_fraction must be in (0, 1.5], got {p['bandwidth_fraction']}"
        )
    if not 0 <= p["regression_tolerance"] < 1:
        module.fail_json(
            msg=f"regression_tolerance must be in [0, 1), got {p['regression_tolerance']}"
        )
    if not os.path.isdir(p["run_dir"]):
        module.fail_json(
            msg=f"run_dir {p['run_dir']} does not exist: run playbooks/validate.yml first"
        )
    runs = load_runs(p["run_dir"])
    if not runs:
        module.fail_json(msg=f"no benchmark runs (folders with meta.json) under {p['run_dir']}")

    previous = None
    latest = (
        os.path.join(p["history_dir"], p["cluster_name"], "latest.json")
        if p["history_dir"]
        else None
    )
    if latest and os.path.isfile(latest):
        with open(latest) as handle:
            try:
                old = json.load(handle)
                previous = {r["name"]: r.get("peak_busbw") for r in old.get("runs", [])}
            except (ValueError, KeyError, TypeError) as exc:
                module.warn(f"ignoring unreadable previous report {latest}: {exc}")

    gates, summaries = evaluate(p, runs, previous)
    failures = gates.failures()
    passed = not failures
    run_id = os.path.basename(os.path.normpath(p["run_dir"]))
    runs_out = [{k: v for k, v in s.items() if k not in ("meta", "result")} for s in summaries]
    report = {}
    changed = False
    if not module.check_mode:
        output_dir = p["output_dir"] or os.path.join(p["run_dir"], "report")
        os.makedirs(output_dir, exist_ok=True)
        document = {
            "schema": REPORT_SCHEMA,
            "cluster": p["cluster_name"],
            "run_id": run_id,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "passed": passed,
            "settings": {
                k: p[k] for k in ("bandwidth_fraction", "regression_tolerance", "min_size_bytes")
            },
            "gates": gates.items,
            "runs": summaries,
        }
        report["json"] = os.path.join(output_dir, "report.json")
        write_atomic(report["json"], json.dumps(document, indent=1, sort_keys=True) + "\n")
        report["markdown"] = os.path.join(output_dir, "report.md")
        write_atomic(
            report["markdown"], markdown(p["cluster_name"], run_id, summaries, gates.items, passed)
        )
        if p["plots"]:
            try:
                report["plots"] = plot(output_dir, summaries)
            except ImportError:
                module.fail_json(
                    msg="plots=true needs matplotlib where the module runs"
                    " (pip install matplotlib), or set plots=false",
                    gates=gates.items,
                )
        if passed and latest:
            os.makedirs(os.path.dirname(latest), exist_ok=True)
            write_atomic(latest, json.dumps(document, indent=1, sort_keys=True) + "\n")
            report["reference"] = latest
        changed = True
    result = dict(
        changed=changed,
        passed=passed,
        gates=gates.items,
        runs=runs_out,
        report=report,
        failures=failures,
    )
    if failures and p["fail_on_gate"]:
        module.fail_json(
            msg=f"acceptance failed ({len(failures)} gate(s)): " + " | ".join(failures), **result
        )
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
