#!/usr/bin/env python3
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Build a pinned NCCL, nccl-tests and (when needed) aws-ofi-nccl once into shared storage.

Run by the ``nccl_shared`` role with ``ansible.builtin.script`` on one build host per cluster
(``run_once`` + ``delegate_to``). Standard library only, Python 3.8+, because it runs with the
node's own interpreter. It prints one JSON object on stdout and exits 0 on success, 1 on failure
(the object then has ``failed: true`` and ``msg``).

Why one script and not a chain of tasks: the lock must be held from the check "is this version
already built?" through fetch, build and the final rename, which only one process can do. Other
builders (a second ``ansible-playbook``, nodes that run the role on themselves at boot) wait on
the lock and then find the finished version.

Layout under the root (``/fsx/nccl`` by default)::

    .lock                         flock(2) lock, holds the current holder's host, pid and time
    <id>/                         one complete version; never changed or removed once there
        lib/ include/             NCCL (make src.build)
        bin/*_perf                nccl-tests, built with MPI=1 against <id>
        ofi/lib/                  aws-ofi-nccl, only when the EFA installer did not bundle it
        logs/*.log                build output of each step
        manifest.json             written last; a directory with it is complete
    current -> <id>               the version the role manages now (replaced atomically)
    .build-<id>.<random>/         work directory of a build in progress (sources, objects, stage)
    .stale-<id>.<time>/           an incomplete <id> found by a later build, moved aside (kept)

Sources come only from git: each is fetched by its tag, and the tag must resolve to the pinned
40-hex commit (content addressed, so the pin is an integrity check); a mismatch fails before
anything is built. The version id defaults to ``<nccl version>-cuda<major.minor>-<archs>``, for
example ``2.29.2-1-cuda13.0-sm90-sm100``: a new NCCL, CUDA or GPU architecture list gets a new
directory beside the old ones, so running jobs keep what they loaded.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA = 1
ARCH_RE = re.compile(r"^sm_(\d+)(a?)$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
VERSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
NVCC_RELEASE_RE = re.compile(r"release (\d+)\.(\d+), V(\S+)")
OFI_PACKAGE_RE = re.compile(r"(?:libnccl-ofi|aws-ofi-nccl)[-_](\d+\.\d+\.\d+)")
OFI_LIBRARY_GLOB = "libnccl-net*.so*"
LOCK_PROGRESS_S = 60
TAIL_CHARS = 3000


class BuildError(Exception):
    """A failure with a message for the user: what failed, why, what to do."""


# ---------------------------------------------------------------- pure helpers (unit-tested)


def parse_arch(arch: str) -> tuple[int, str]:
    """``sm_100`` -> (100, ""), ``sm_90a`` -> (90, "a"); BuildError for anything else."""
    match = ARCH_RE.match(arch)
    if not match:
        raise BuildError(
            f"GPU architecture {arch!r} is not of the form sm_<number> or sm_<number>a "
            "(for example sm_90, sm_90a, sm_100): fix nccl_shared_cuda_archs"
        )
    return int(match.group(1)), match.group(2)


def sorted_archs(archs: list[str]) -> list[str]:
    """Archs validated, deduplicated and in ascending order (sm_90 before sm_90a before sm_100)."""
    if not archs:
        raise BuildError(
            "no GPU architecture to build for: set nccl_shared_cuda_archs to the cuda_arch of "
            "each GPU queue's instance type (the instance catalog's cuda_arch, e.g. sm_100 for "
            "B200)"
        )
    return sorted(set(archs), key=parse_arch)


def gencode(archs: list[str]) -> str:
    """NVCC_GENCODE for ``archs``: SASS for each, plus PTX of the highest portable one.

    ``sm_XX`` -> ``-gencode=arch=compute_XX,code=sm_XX``. The PTX (``code=compute_XX``) lets a
    newer GPU JIT-compile the kernels; it is taken from the highest arch without the ``a``
    suffix, since arch-specific (``sm_90a``) PTX does not run on other GPUs.
    """
    ordered = sorted_archs(archs)
    flags = []
    for arch in ordered:
        number, suffix = parse_arch(arch)
        flags.append(f"-gencode=arch=compute_{number}{suffix},code=sm_{number}{suffix}")
    portable = [parse_arch(a)[0] for a in ordered if not parse_arch(a)[1]]
    ptx = max(portable) if portable else parse_arch(ordered[-1])[0]
    flags.append(f"-gencode=arch=compute_{ptx},code=compute_{ptx}")
    return " ".join(flags)


def version_id(nccl_version: str, cuda_version: str, archs: list[str]) -> str:
    """``2.29.2-1``, ``13.0``, [sm_90, sm_100] -> ``2.29.2-1-cuda13.0-sm90-sm100``."""
    return "-".join(
        [nccl_version, f"cuda{cuda_version}"] + [a.replace("_", "") for a in sorted_archs(archs)]
    )


def parse_nvcc_version(text: str) -> tuple[str, str]:
    """``nvcc --version`` output -> ("13.0", "13.0.88")."""
    match = NVCC_RELEASE_RE.search(text)
    if not match:
        raise BuildError(f"cannot read the CUDA release from `nvcc --version`: {text.strip()!r}")
    return f"{match.group(1)}.{match.group(2)}", match.group(3)


def bundled_ofi_version(installed_packages: str | None) -> str | None:
    """The aws-ofi-nccl version the EFA installer lists in efa_installed_packages, if any."""
    if not installed_packages:
        return None
    match = OFI_PACKAGE_RE.search(installed_packages)
    return match.group(1) if match else None


# ---------------------------------------------------------------- the build


class Builder:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.root = Path(spec["root"])
        self.host = socket.gethostname()
        self.mode = spec.get("mode", "build")
        self.log: list[str] = []

    # -- helpers

    def _run(
        self, argv: list[str], cwd: Path, log: Path | None = None, env: dict | None = None
    ) -> str:
        full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
        try:
            proc = subprocess.run(
                argv,
                cwd=str(cwd),
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise BuildError(f"cannot run {argv[0]}: {exc}") from exc
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as handle:
                handle.write(f"$ {' '.join(argv)}\n{proc.stdout}\n")
        if proc.returncode != 0:
            raise BuildError(
                f"`{' '.join(argv)}` in {cwd} failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-TAIL_CHARS:]}"
            )
        return proc.stdout

    def nvcc(self) -> Path:
        return Path(self.spec["cuda_home"]) / "bin" / "nvcc"

    def cuda_version(self) -> tuple[str, str]:
        nvcc = self.nvcc()
        if not os.access(str(nvcc), os.X_OK):
            raise BuildError(
                f"no nvcc at {nvcc} on {self.host}: install the CUDA toolkit or set "
                "nccl_shared_cuda_home (ParallelCluster AMIs have it at /usr/local/cuda)"
            )
        return parse_nvcc_version(self._run([str(nvcc), "--version"], cwd=Path("/")))

    def check_archs_supported(self, cuda: str) -> None:
        """Fail before any build when nvcc cannot compile for one of the archs."""
        try:
            listed = self._run([str(self.nvcc()), "--list-gpu-arch"], cwd=Path("/"))
        except BuildError:
            return  # nvcc older than 11.0 has no --list-gpu-arch; the build itself will tell
        supported = {int(m) for m in re.findall(r"compute_(\d+)", listed)}
        missing = [a for a in self.archs if parse_arch(a)[0] not in supported]
        if missing:
            known = ", ".join(f"sm_{n}" for n in sorted(supported))
            raise BuildError(
                f"CUDA {cuda} nvcc at {self.nvcc()} on {self.host} cannot build for "
                f"{', '.join(missing)} (it supports {known}): "
                "use a CUDA toolkit that has them, or drop them from nccl_shared_cuda_archs"
            )

    @property
    def archs(self) -> list[str]:
        return sorted_archs(list(self.spec["cuda_archs"]))

    def inputs(self, cuda: str) -> dict[str, Any]:
        """What decides the content of a version directory (compared on every later run)."""
        spec = self.spec
        return {
            "nccl": {"tag": spec["nccl"]["tag"], "commit": spec["nccl"]["commit"]},
            "nccl_tests": {"tag": spec["tests"]["tag"], "commit": spec["tests"]["commit"]},
            "cuda": cuda,
            "archs": self.archs,
            "mpi_home": spec["mpi_home"],
        }

    def read_manifest(self, target: Path) -> dict[str, Any] | None:
        try:
            manifest = json.loads((target / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and manifest.get("id") else None

    def check_inputs(self, manifest: dict[str, Any], inputs: dict[str, Any], target: Path) -> None:
        built = manifest.get("inputs", {})
        differ = sorted(k for k in inputs if built.get(k) != inputs[k])
        if differ:
            detail = "; ".join(f"{k}: built {built.get(k)}, asked {inputs[k]}" for k in differ)
            raise BuildError(
                f"{target} exists and was built from other inputs ({detail}). A version directory "
                "is never rebuilt in place because running jobs may use it: set "
                "nccl_shared_version_id to a new name to build beside it"
            )

    def current_needs_update(self, vid: str) -> bool:
        if not self.spec.get("update_current", True):
            return False
        try:
            return os.readlink(str(self.root / "current")) != vid
        except OSError:
            return True

    def update_current(self, vid: str) -> bool:
        if not self.current_needs_update(vid):
            return False
        tmp = self.root / f".current.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(vid, str(tmp))
        os.replace(str(tmp), str(self.root / "current"))
        return True

    # -- lock

    def acquire(self, timeout: float) -> tuple[int, float]:
        """flock on <root>/.lock with a deadline; returns (fd, seconds waited)."""
        path = self.root / ".lock"
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        next_report = start + LOCK_PROGRESS_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise BuildError(
                        f"cannot lock {path}: {exc} (on Lustre, mount with the flock option)"
                    ) from exc
            now = time.monotonic()
            if now - start >= timeout:
                holder = path.read_text().strip() or "unknown"
                os.close(fd)
                raise BuildError(
                    f"another build has held {path} for more than {timeout:.0f}s ({holder}): "
                    "wait for it, or raise nccl_shared_lock_timeout"
                )
            if now >= next_report:
                print(f"waiting for {path} ({now - start:.0f}s)", file=sys.stderr, flush=True)
                next_report = now + LOCK_PROGRESS_S
            time.sleep(0.2)
        waited = time.monotonic() - start
        os.ftruncate(fd, 0)
        os.write(fd, f"host={self.host} pid={os.getpid()} since={_now()}\n".encode())
        return fd, waited

    # -- sources

    def fetch(self, name: str, source: dict[str, str], work: Path) -> Path:
        """Clone ``source['tag']`` of ``source['repo']`` and check it is ``source['commit']``."""
        tag, commit, repo = source["tag"], source["commit"], source["repo"]
        if not COMMIT_RE.match(commit or ""):
            raise BuildError(
                f"{name}: commit {commit!r} is not a 40-hex git commit: pin the commit that tag "
                f"{tag} points at (git ls-remote {repo} refs/tags/{tag})"
            )
        dest = work / "src" / name
        dest.mkdir(parents=True)
        log = work / "stage" / "logs" / f"fetch-{name}.log"
        self._run(["git", "init", "-q"], cwd=dest, log=log)
        ref = f"refs/tags/{tag}"
        try:
            self._run(
                ["git", "fetch", "-q", "--depth", "1", "--no-tags", repo, f"+{ref}:{ref}"],
                cwd=dest,
                log=log,
            )
        except BuildError as exc:
            raise BuildError(f"{name}: cannot fetch tag {tag} from {repo}: {exc}") from exc
        found = self._run(["git", "rev-parse", f"{ref}^{{commit}}"], cwd=dest).strip()
        if found != commit:
            raise BuildError(
                f"{name}: tag {tag} of {repo} is commit {found}, but the pinned commit is "
                f"{commit}. Either the pin is wrong or the tag was moved: check the commit "
                f"(git ls-remote {repo} refs/tags/{tag}) before building from it"
            )
        self._run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", commit], cwd=dest)
        return dest

    # -- plans

    def ofi_plan(self) -> dict[str, Any]:
        """Use the plugin the EFA installer bundles; build it only when absent and allowed."""
        spec = self.spec["ofi"]
        bundled = Path(spec["bundled_home"])
        libs = sorted(p.name for p in (bundled / "lib").glob(OFI_LIBRARY_GLOB))
        if libs:
            packages = _read(spec.get("installed_packages", ""))
            return {
                "source": "bundled",
                "path": str(bundled),
                "lib": str(bundled / "lib"),
                "version": bundled_ofi_version(packages),
                "libraries": libs,
            }
        if not spec.get("build", True):
            return {
                "source": "none",
                "reason": f"no aws-ofi-nccl in {bundled}/lib and nccl_shared_build_ofi is false",
            }
        libfabric = Path(spec["libfabric_home"])
        if not (libfabric / "lib").is_dir() and not (libfabric / "lib64").is_dir():
            return {
                "source": "none",
                "reason": f"no libfabric at {libfabric} (EFA installer not installed)",
            }
        return {"source": "built", "version": spec["version"], "tag": spec["tag"]}

    # -- steps

    def build_nccl(self, src: Path, work: Path, stage: Path, target: Path) -> None:
        build = work / "nccl-build"
        self._run(
            [
                "make",
                f"-j{self.jobs}",
                "src.build",
                f"BUILDDIR={build}",
                f"CUDA_HOME={self.spec['cuda_home']}",
                f"NVCC_GENCODE={gencode(self.archs)}",
                f"PREFIX={target}",
            ],
            cwd=src,
            log=stage / "logs" / "nccl.log",
        )
        for part in ("lib", "include"):
            if not (build / part).is_dir():
                raise BuildError(f"NCCL build left no {build / part}")
            shutil.copytree(str(build / part), str(stage / part), symlinks=True)
        if not list((stage / "lib").glob("libnccl.so*")):
            raise BuildError(f"NCCL build left no libnccl.so in {build / 'lib'}")

    def build_ofi(self, src: Path, work: Path, stage: Path, target: Path) -> None:
        spec = self.spec["ofi"]
        log = stage / "logs" / "aws-ofi-nccl.log"
        prefix = target / "ofi"
        destdir = work / "ofi-destdir"
        self._run(["./autogen.sh"], cwd=src, log=log)
        self._run(
            [
                "./configure",
                f"--prefix={prefix}",
                f"--with-libfabric={spec['libfabric_home']}",
                f"--with-cuda={self.spec['cuda_home']}",
                *spec.get("configure_flags", []),
            ],
            cwd=src,
            log=log,
        )
        self._run(["make", f"-j{self.jobs}"], cwd=src, log=log)
        self._run(["make", "install", f"DESTDIR={destdir}"], cwd=src, log=log)
        installed = destdir / str(prefix).lstrip("/")
        if not list((installed / "lib").glob(OFI_LIBRARY_GLOB)):
            raise BuildError(f"aws-ofi-nccl install left no {OFI_LIBRARY_GLOB} in {installed}/lib")
        shutil.move(str(installed), str(stage / "ofi"))

    def build_tests(self, src: Path, work: Path, stage: Path) -> list[str]:
        build = work / "tests-build"
        self._run(
            [
                "make",
                f"-j{self.jobs}",
                "MPI=1",
                f"MPI_HOME={self.spec['mpi_home']}",
                f"CUDA_HOME={self.spec['cuda_home']}",
                f"NCCL_HOME={stage}",
                f"BUILDDIR={build}",
                f"NVCC_GENCODE={gencode(self.archs)}",
            ],
            cwd=src,
            log=stage / "logs" / "nccl-tests.log",
        )
        binaries = sorted(p for p in build.glob("*_perf") if p.is_file())
        if not binaries:
            raise BuildError(f"nccl-tests build left no *_perf binary in {build}")
        (stage / "bin").mkdir()
        for binary in binaries:
            shutil.copy2(str(binary), str(stage / "bin" / binary.name))
        return [b.name for b in binaries]

    @property
    def jobs(self) -> int:
        return int(self.spec.get("jobs") or 0) or (os.cpu_count() or 1)

    # -- entry

    def run(self) -> dict[str, Any]:
        spec = self.spec
        if not Path(spec["root"]).is_absolute():
            raise BuildError(f"nccl_shared_root must be an absolute path (got {spec['root']!r})")
        archs = self.archs
        cuda, cuda_full = self.cuda_version()
        self.check_archs_supported(cuda)
        vid = spec.get("version_id") or version_id(spec["nccl"]["version"], cuda, archs)
        if not VERSION_ID_RE.match(vid):
            raise BuildError(f"version id {vid!r} must match {VERSION_ID_RE.pattern}")
        target = self.root / vid
        inputs = self.inputs(cuda)
        result: dict[str, Any] = {
            "changed": False,
            "id": vid,
            "path": str(target),
            "root": str(self.root),
            "build_host": self.host,
            "cuda_version": cuda,
            "archs": archs,
            "nvcc_gencode": gencode(archs),
            "stale_moved_to": None,
            "lock_waited_s": 0.0,
        }
        if self.mode != "build":
            return self.predict(result, target, inputs)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, waited = self.acquire(float(spec.get("lock_timeout", 3600)))
        result["lock_waited_s"] = round(waited, 1)
        try:
            manifest = self.read_manifest(target)
            if manifest is not None:
                self.check_inputs(manifest, inputs, target)
                result.update(action="present", manifest=manifest)
            else:
                result["stale_moved_to"] = self.move_stale(target, vid)
                manifest = self.build(target, vid, inputs, cuda, cuda_full)
                result.update(action="built", manifest=manifest, changed=True)
            result["current_changed"] = self.update_current(vid)
            result["changed"] = result["changed"] or result["current_changed"]
        finally:
            os.close(fd)
        return result

    def predict(self, result: dict[str, Any], target: Path, inputs: dict[str, Any]) -> dict:
        """Check mode (``--check``) and probe (``nccl_shared_build: false``): read only."""
        manifest = self.read_manifest(target) if self.root.is_dir() else None
        if manifest is not None:
            self.check_inputs(manifest, inputs, target)
            result.update(action="present", manifest=manifest)
        elif self.mode == "check":
            result.update(action="would_build", changed=True)
            if target.exists():
                result["stale_moved_to"] = f"{self.root}/.stale-{result['id']}.<time>"
        else:
            result.update(action="missing")
        result["current_changed"] = self.current_needs_update(result["id"])
        if self.mode == "check":
            result["changed"] = result["changed"] or result["current_changed"]
        return result

    def move_stale(self, target: Path, vid: str) -> str | None:
        """Under the lock: clear dead work dirs; move an incomplete <id> aside (never delete it)."""
        for leftover in self.root.glob(f".build-{vid}.*"):
            shutil.rmtree(str(leftover), ignore_errors=True)
        if not (target.exists() or target.is_symlink()):
            return None
        stale = self.root / f".stale-{vid}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
        os.rename(str(target), str(stale))
        return str(stale)

    def build(
        self, target: Path, vid: str, inputs: dict[str, Any], cuda: str, cuda_full: str
    ) -> dict[str, Any]:
        spec = self.spec
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{vid}.", dir=str(self.root)))
        try:
            stage = work / "stage"
            stage.mkdir()
            (stage / "logs").mkdir()
            ofi = self.ofi_plan()
            if ofi["source"] == "built" and not COMMIT_RE.match(spec["ofi"].get("commit") or ""):
                raise BuildError(
                    f"aws-ofi-nccl is not bundled in {spec['ofi']['bundled_home']}/lib on "
                    f"{self.host} and nccl_shared_build_ofi is true, but nccl_shared_ofi_commit "
                    f"is {spec['ofi'].get('commit')!r}: set it to the 40-hex commit of tag "
                    f"{spec['ofi']['tag']} (git ls-remote {spec['ofi']['repo']} "
                    f"refs/tags/{spec['ofi']['tag']}), or set nccl_shared_build_ofi: false"
                )
            sources = {
                "nccl": self.fetch("nccl", spec["nccl"], work),
                "nccl-tests": self.fetch("nccl-tests", spec["tests"], work),
            }
            if ofi["source"] == "built":
                sources["aws-ofi-nccl"] = self.fetch("aws-ofi-nccl", spec["ofi"], work)
            self.build_nccl(sources["nccl"], work, stage, target)
            if ofi["source"] == "built":
                self.build_ofi(sources["aws-ofi-nccl"], work, stage, target)
                ofi.update(
                    path=str(target / "ofi"),
                    lib=str(target / "ofi" / "lib"),
                    commit=spec["ofi"]["commit"],
                    repo=spec["ofi"]["repo"],
                    libraries=sorted(
                        p.name for p in (stage / "ofi" / "lib").glob(OFI_LIBRARY_GLOB)
                    ),
                )
            binaries = self.build_tests(sources["nccl-tests"], work, stage)
            manifest = {
                "schema": SCHEMA,
                "id": vid,
                "path": str(target),
                "nccl": {k: spec["nccl"][k] for k in ("version", "tag", "commit", "repo")},
                "nccl_tests": {
                    **{k: spec["tests"][k] for k in ("version", "tag", "commit", "repo")},
                    "binaries": binaries,
                },
                "aws_ofi_nccl": ofi,
                "cuda": {"version": cuda, "release": cuda_full, "home": spec["cuda_home"]},
                "archs": self.archs,
                "nvcc_gencode": gencode(self.archs),
                "mpi_home": spec["mpi_home"],
                "inputs": inputs,
                "build_host": self.host,
                "built_at": _now(),
                "build_seconds": round(time.monotonic() - started, 1),
            }
            # Written last, then the whole stage appears at once under its final name.
            (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
            for path in [stage, *stage.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
            os.rename(str(stage), str(target))
            return manifest
        finally:
            shutil.rmtree(str(work), ignore_errors=True)


def _now() -> str:
    # datetime.UTC is Python 3.11+; nodes run this with their own Python (3.8 and later).
    return datetime.datetime.now(datetime.timezone.utc).strftime(  # noqa: UP017
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text() if path else None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the build as JSON (see the role)")
    parser.add_argument("--mode", choices=["build", "check", "probe"], default="build")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    spec["mode"] = args.mode
    try:
        result = Builder(spec).run()
        code = 0
    except BuildError as exc:
        result = {"failed": True, "changed": False, "msg": str(exc)}
        code = 1
    except Exception as exc:  # report, never die without JSON: the role shows msg
        result = {"failed": True, "changed": False, "msg": f"internal error: {exc!r}"}
        code = 1
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
