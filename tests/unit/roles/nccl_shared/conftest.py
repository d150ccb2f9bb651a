"""Stand-ins for the nccl_shared role's tests: local git repos, a fake CUDA toolkit, EFA paths.

The role's build script (``roles/nccl_shared/files/nccl_shared_build.py``) fetches NVIDIA/nccl,
NVIDIA/nccl-tests and aws/aws-ofi-nccl by tag from git and runs their build interfaces. Here
each is a small local git repository (reached with a ``file://`` URL) whose Makefile has the
same interface as the real one and writes fake outputs that record what it was given:

- nccl: ``make -jN src.build BUILDDIR=... CUDA_HOME=... NVCC_GENCODE=... PREFIX=...`` writes
  ``BUILDDIR/lib/libnccl.so.<version>`` (its text holds the version, NVCC_GENCODE and PREFIX),
  the ``libnccl.so.2`` / ``libnccl.so`` links and ``BUILDDIR/include/nccl.h``;
- nccl-tests: ``make MPI=1 MPI_HOME=... CUDA_HOME=... NCCL_HOME=... BUILDDIR=... NVCC_GENCODE=...``
  writes ``BUILDDIR/<coll>_perf`` scripts that print the version, NCCL_HOME and NVCC_GENCODE;
- aws-ofi-nccl: ``./autogen.sh``, ``./configure --prefix=...``, ``make``,
  ``make install DESTDIR=...``.

Every build appends one line to a log outside the repositories, so a test can count builds
across processes. Each fake fails like the real build would when an input is missing (empty
NVCC_GENCODE, no nvcc under CUDA_HOME, MPI not 1, no NCCL under NCCL_HOME).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..harness import ROOT, executable, load_script

ROLE = ROOT / "roles" / "nccl_shared"
SCRIPT = ROLE / "files" / "nccl_shared_build.py"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "nccl_shared"

NCCL_TAGS = ("v2.29.2-1", "v2.29.3-1")
TESTS_TAG = "v2.18.3"
OFI_TAG = "v1.18.0"
COLLECTIVES = ("all_reduce", "all_gather", "alltoall")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def load_build() -> ModuleType:
    """roles/nccl_shared/files/nccl_shared_build.py as a module (a file the role ships)."""
    return load_script(SCRIPT, "nccl_shared_build")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _commit(repo: Path, tag: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"release {tag}")
    git(repo, "tag", tag)
    return git(repo, "rev-parse", "HEAD")


NCCL_MAKEFILE = """\
VERSION := $(shell cat VERSION)
BUILDDIR ?= build
src.build:
\t@test -n "$(NVCC_GENCODE)" || { echo "NVCC_GENCODE is empty" >&2; exit 2; }
\t@test -x "$(CUDA_HOME)/bin/nvcc" || { echo "no nvcc under CUDA_HOME=$(CUDA_HOME)" >&2; exit 2; }
\tmkdir -p $(BUILDDIR)/lib $(BUILDDIR)/include $(BUILDDIR)/obj
\tprintf 'fake NCCL %s\\nNVCC_GENCODE=%s\\nPREFIX=%s\\n' '$(VERSION)' '$(NVCC_GENCODE)' \
'$(PREFIX)' > $(BUILDDIR)/lib/libnccl.so.$(VERSION)
\tln -sf libnccl.so.$(VERSION) $(BUILDDIR)/lib/libnccl.so.2
\tln -sf libnccl.so.2 $(BUILDDIR)/lib/libnccl.so
\tprintf '#define NCCL_VERSION_STR "%s"\\n' '$(VERSION)' > $(BUILDDIR)/include/nccl.h
\tsleep @SLEEP@
\techo 'nccl $(VERSION) $(NVCC_GENCODE)' >> @LOG@
"""

TESTS_MAKEFILE = """\
BUILDDIR ?= build
all:
\t@test "$(MPI)" = 1 || { echo "MPI=1 expected" >&2; exit 2; }
\t@test -d "$(MPI_HOME)/include" || { echo "no MPI under MPI_HOME=$(MPI_HOME)" >&2; exit 2; }
\t@test -e "$(NCCL_HOME)/lib/libnccl.so" -a -e "$(NCCL_HOME)/include/nccl.h" \
|| { echo "no NCCL under NCCL_HOME=$(NCCL_HOME)" >&2; exit 2; }
\tmkdir -p $(BUILDDIR)
\tfor c in @COLLECTIVES@; do \
sed -e 's|@NCCL_HOME@|$(NCCL_HOME)|' -e 's|@GENCODE@|$(NVCC_GENCODE)|' \
-e "s|@COLL@|$$c|" perf.sh.in > $(BUILDDIR)/$${c}_perf; chmod 755 $(BUILDDIR)/$${c}_perf; done
\techo 'nccl-tests NCCL_HOME=$(NCCL_HOME) MPI_HOME=$(MPI_HOME)' >> @LOG@
"""

PERF_SH = """\
#!/bin/sh
echo "# nccl-tests version 2.18.3 (fake @COLL@_perf)"
echo "# built with NCCL_HOME=@NCCL_HOME@ NVCC_GENCODE=@GENCODE@"
echo "# NCCL_HOME=$NCCL_HOME"
"""

OFI_CONFIGURE = """\
#!/bin/sh
set -eu
test -f autogen.done || { echo "run ./autogen.sh first" >&2; exit 1; }
prefix=
for arg; do
  case $arg in
    --prefix=*) prefix=${arg#--prefix=} ;;
    --with-libfabric=*)
      test -d "${arg#--with-libfabric=}/lib" || { echo "no libfabric" >&2; exit 1; } ;;
  esac
done
printf 'PREFIX=%s\\nCONFIGURE_ARGS=%s\\n' "$prefix" "$*" > config.mk
"""

OFI_MAKEFILE = """\
include config.mk
all:
\tprintf 'fake aws-ofi-nccl\\n' > libnccl-net-ofi.so
install: all
\tmkdir -p $(DESTDIR)$(PREFIX)/lib
\tcp libnccl-net-ofi.so $(DESTDIR)$(PREFIX)/lib/
\tln -sf libnccl-net-ofi.so $(DESTDIR)$(PREFIX)/lib/libnccl-net.so
\tprintf '%s\\n' '$(CONFIGURE_ARGS)' > $(DESTDIR)$(PREFIX)/lib/configure-args.txt
\techo 'aws-ofi-nccl $(PREFIX)' >> @LOG@
"""


@dataclass
class Sources:
    """The three stand-in repositories, their file:// URLs and tag -> commit."""

    nccl: str
    tests: str
    ofi: str
    commits: dict[str, str]
    log: Path

    def builds(self, what: str = "nccl ") -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line.startswith(what)]


def make_sources(base: Path, sleep: float = 0) -> Sources:
    """Create the three repositories under ``base``; NCCL has one commit per NCCL_TAGS entry."""
    log = base / "builds.log"
    commits: dict[str, str] = {}

    nccl = base / "nccl"
    nccl.mkdir(parents=True)
    git(nccl, "init", "-q", "-b", "master")
    (nccl / "Makefile").write_text(
        NCCL_MAKEFILE.replace("@SLEEP@", str(sleep)).replace("@LOG@", str(log))
    )
    for tag in NCCL_TAGS:
        (nccl / "VERSION").write_text(tag[1:].split("-")[0] + "\n")
        commits[tag] = _commit(nccl, tag)

    tests = base / "nccl-tests"
    tests.mkdir()
    git(tests, "init", "-q", "-b", "master")
    (tests / "Makefile").write_text(
        TESTS_MAKEFILE.replace("@COLLECTIVES@", " ".join(COLLECTIVES)).replace("@LOG@", str(log))
    )
    (tests / "perf.sh.in").write_text(PERF_SH)
    commits[f"tests {TESTS_TAG}"] = _commit(tests, TESTS_TAG)

    ofi = base / "aws-ofi-nccl"
    ofi.mkdir()
    git(ofi, "init", "-q", "-b", "master")
    executable(ofi / "autogen.sh", "#!/bin/sh\ntouch autogen.done\n")
    executable(ofi / "configure", OFI_CONFIGURE)
    (ofi / "Makefile").write_text(OFI_MAKEFILE.replace("@LOG@", str(log)))
    commits[f"ofi {OFI_TAG}"] = _commit(ofi, OFI_TAG)

    return Sources(nccl.as_uri(), tests.as_uri(), ofi.as_uri(), commits, log)


def make_node(base: Path, nvcc: bool = True, gpus: int = 0, bundled_ofi: bool = True) -> Path:
    """A node's local paths under ``base``: CUDA (fake nvcc), Open MPI, EFA libfabric, GPUs.

    The fake nvcc prints the ``nvcc --version`` and ``--list-gpu-arch`` output recorded from a
    real CUDA 13.0 toolkit (tests/unit/fixtures/nccl_shared/).
    """
    if nvcc:
        executable(
            base / "cuda" / "bin" / "nvcc",
            "#!/bin/sh\n"
            f'if [ "$1" = "--list-gpu-arch" ]; then cat {FIXTURES / "nvcc_list_gpu_arch_13.0.txt"};'
            " exit 0; fi\n"
            f"cat {FIXTURES / 'nvcc_version_13.0.txt'}\n",
        )
    (base / "openmpi" / "include").mkdir(parents=True)
    (base / "etc" / "profile.d").mkdir(parents=True)
    (base / "efa" / "lib").mkdir(parents=True)
    if bundled_ofi:
        lib = base / "ofi-nccl" / "lib"
        lib.mkdir(parents=True)
        (lib / "libnccl-net-ofi.so").write_text("bundled\n")
        (base / "efa_installed_packages").write_text(fixture("efa_installed_packages_1.43.2"))
    gpu_dir = base / "proc" / "driver" / "nvidia" / "gpus"
    for index in range(gpus):
        (gpu_dir / f"0000:{index:02x}:00.0").mkdir(parents=True)
    return base


def spec(node: Path, sources: Sources, root: Path, **overrides) -> dict:
    """The --spec the role passes, pointed at a node made by make_node and the stand-in repos."""
    nccl_tag = overrides.pop("nccl_tag", NCCL_TAGS[0])
    value = {
        "root": str(root),
        "version_id": "",
        "cuda_home": str(node / "cuda"),
        "cuda_archs": ["sm_90", "sm_100"],
        "mpi_home": str(node / "openmpi"),
        "jobs": 2,
        "lock_timeout": 60,
        "update_current": True,
        "nccl": {
            "version": nccl_tag[1:],
            "tag": nccl_tag,
            "commit": sources.commits[nccl_tag],
            "repo": sources.nccl,
        },
        "tests": {
            "version": TESTS_TAG[1:],
            "tag": TESTS_TAG,
            "commit": sources.commits[f"tests {TESTS_TAG}"],
            "repo": sources.tests,
        },
        "ofi": {
            "build": True,
            "version": OFI_TAG[1:],
            "tag": OFI_TAG,
            "commit": sources.commits[f"ofi {OFI_TAG}"],
            "repo": sources.ofi,
            "bundled_home": str(node / "ofi-nccl"),
            "libfabric_home": str(node / "efa"),
            "configure_flags": ["--enable-platform-aws", "--disable-tests"],
            "installed_packages": str(node / "efa_installed_packages"),
        },
    }
    value.update(overrides)
    return value
