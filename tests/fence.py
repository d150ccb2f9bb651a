"""Network fence for the test suite (a pytest plugin, loaded by ``tests/conftest.py``).

Tests may only reach the loopback network (127.0.0.0/8, ::1) and the local lab networks listed in
``XPU_FENCE_ALLOW_CIDRS``; see the "Network safety" section of the lab notes. The plugin enforces
that in two ways:

1. A socket guard, installed in ``pytest_configure`` so that it covers collection, fixtures and
   tests. It wraps ``socket.socket.connect``/``connect_ex``/``sendto``/``sendmsg``,
   ``socket.create_connection`` and the resolver functions (``getaddrinfo``, ``gethostbyname``,
   ``gethostbyname_ex``, ``gethostbyaddr``, ``getnameinfo``). An AF_INET/AF_INET6 destination that
   is not loopback and not inside an allowed CIDR raises :class:`FenceError` before any packet is
   sent. Host names other than ``localhost`` are refused without a DNS lookup (the lookup itself
   would leave the machine): use literal IP addresses. AF_UNIX and other families are not touched.
   The guard covers this Python process only; subprocesses are fenced by the proxy variables of
   :func:`fence_env`.
2. An environment check for tests marked ``aws``: before their fixtures run, the AWS endpoint,
   proxy and credential variables must point at the local emulator (:func:`aws_env_problems`).
   A test that fails the check is reported as FAILED, never skipped.

Environment variables read:

``XPU_FENCE``
    ``off`` disables the socket guard (debugging only: the Makefile never sets it); unset, empty
    or ``on`` enables it; anything else is a usage error. The AWS check always runs.
``XPU_FENCE_ALLOW_CIDRS``
    Comma separated CIDRs the guard also allows, e.g. the lab's podman network ``10.213.0.0/24``.
    Only RFC 1918 and ULA (fc00::/7) ranges are accepted; link-local (which holds the instance
    metadata service) and public ranges are refused.
``AWS_*``, ``HTTP(S)_PROXY``, ``NO_PROXY`` and their lower-case forms
    Checked for ``aws`` tests, see :func:`aws_env_problems`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import pytest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FENCE_VAR: Final = "XPU_FENCE"
ALLOW_CIDRS_VAR: Final = "XPU_FENCE_ALLOW_CIDRS"
#: Proxy that every AWS-facing process gets: port 9 (discard) on loopback, so a request that
#: escapes the explicit endpoint fails locally instead of reaching the internet.
FENCE_PROXY: Final = "http://127.0.0.1:9"
FENCE_NO_PROXY: Final = "127.0.0.1,localhost"
DUMMY_CREDENTIAL: Final = "testing"
HOW_TO_FIX: Final = (
    "Run through `make test`, which sets them, or build the environment with "
    "tests.fence.fence_env(port)."
)

# Ranges a lab network may be allowed from (XPU_FENCE_ALLOW_CIDRS must lie inside one of them).
_LOCAL_RANGES: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    )
)
# Access key id prefixes AWS issues (long-term, temporary, bearer, context-specific).
_REAL_KEY_RE: Final = re.compile(r"^\s*(AKIA|ASIA|ABIA|ACCA)", re.IGNORECASE)
# Variables that would make botocore look for credentials or endpoints outside the environment.
_MUST_BE_UNSET: Final = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


class FenceError(ConnectionRefusedError):
    """A destination outside the fence; a ConnectionRefusedError, so clients treat it as one."""

    def __init__(self, message: str, destination: str = "") -> None:
        super().__init__(errno.ECONNREFUSED, message)
        self.destination = destination

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.strerror, self.destination))


class FenceConfigError(ValueError):
    """XPU_FENCE or XPU_FENCE_ALLOW_CIDRS holds a value the fence does not accept."""


class FenceEnvError(AssertionError):
    """The environment does not point AWS clients at a loopback endpoint."""


class AwsEnvFailure(pytest.fail.Exception):
    """Raised in setup of an ``aws`` test whose environment fails :func:`aws_env_problems`."""


@dataclass(frozen=True)
class FenceState:
    """What the guard enforces: on or off, and the CIDRs allowed besides loopback."""

    enabled: bool = True
    allow_cidrs: tuple[IPNetwork, ...] = ()


# --------------------------------------------------------------------------- decisions


def _literal_ip(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _as_text(host: object) -> str | None:
    if isinstance(host, bytes):
        try:
            return host.decode("ascii")
        except UnicodeDecodeError:
            return None
    return host if isinstance(host, str) else None


def is_loopback_host(host: object) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x)."""
    text = _as_text(host)
    if text is None:
        return False
    if text.lower() == "localhost":
        return True
    address = _literal_ip(text)
    return address is not None and address.is_loopback


def is_allowed_host(host: object, cidrs: Sequence[IPNetwork] = ()) -> bool:
    """The guard's decision for a destination host: loopback, unspecified or inside ``cidrs``.

    Host names other than ``localhost`` are never allowed (deciding would need a DNS lookup).
    """
    text = _as_text(host)
    if text is None:
        return False
    if text == "" or is_loopback_host(text):  # "" is INADDR_ANY: the local machine
        return True
    address = _literal_ip(text)
    if address is None:
        return False
    if address.is_unspecified:  # connecting to 0.0.0.0 / :: reaches the local machine
        return True
    return any(address.version == net.version and address in net for net in cidrs)


def _refusal(destination: str, reason: str, cidrs: Sequence[IPNetwork]) -> FenceError:
    allowed = ", ".join(str(net) for net in cidrs) or "none"
    return FenceError(
        f"xpu network fence: refused {destination} ({reason}). Tests may reach only loopback "
        f"(127.0.0.0/8, ::1) and {ALLOW_CIDRS_VAR} [{allowed}]. To allow a local lab network, "
        f"add its CIDR to {ALLOW_CIDRS_VAR} (RFC 1918 / ULA ranges only); use literal IP "
        f"addresses, host names are refused without a DNS lookup. See tests/fence.py.",
        destination,
    )


def check_destination(
    address: object, cidrs: Sequence[IPNetwork] = (), *, action: str = "connection to"
) -> None:
    """Raise FenceError unless the socket address tuple ``(host, port, ...)`` may be reached."""
    if not isinstance(address, tuple) or not address:
        return  # not an INET address: the real call rejects it with TypeError
    host = address[0]
    if _as_text(host) is None and not isinstance(host, bytes):
        return  # same: the real call raises TypeError without touching the network
    if is_allowed_host(host, cidrs):
        return
    text = _as_text(host)
    if text is not None and _literal_ip(text) is None and text != "":
        reason = "host names other than localhost are not resolved"
    else:
        reason = "not loopback and not in an allowed CIDR"
    raise _refusal(f"{action} {address!r}", reason, cidrs)


def _check_lookup(host: object, cidrs: Sequence[IPNetwork], *, reverse: bool, action: str) -> None:
    """Resolver calls: literal IPs resolve locally, ``localhost`` via /etc/hosts, names via DNS."""
    if host is None:
        return
    text = _as_text(host)
    if text is not None and (text == "" or is_loopback_host(text)):
        return
    address = _literal_ip(text) if text is not None else None
    if address is not None and not reverse:
        return  # numeric host: getaddrinfo parses it, no query is sent
    reason = "a reverse lookup goes to DNS" if address is not None else "a DNS lookup"
    raise _refusal(f"{action} {host!r}", f"{reason} would leave the machine", cidrs)


# --------------------------------------------------------------------------- the guard

_LOCK = threading.RLock()
_STATES: list[FenceState] = []
#: The functions beneath the guard while it is installed (tests patch them to prove that a
#: refused call never reached the real socket).
_ORIGINALS: dict[str, Callable[..., Any]] = {}
_OWNED: dict[str, bool] = {}


def active_state() -> FenceState | None:
    """The state the guard enforces now (None when no pytest session configured the fence)."""
    with _LOCK:
        return _STATES[-1] if _STATES else None


def _cidrs() -> tuple[IPNetwork, ...]:
    state = active_state()
    return state.allow_cidrs if state is not None else ()


def _enforcing() -> bool:
    state = active_state()
    return state is not None and state.enabled


def _guard_socket(sock: socket.socket, address: object, action: str) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and _enforcing():
        check_destination(address, _cidrs(), action=action)


def _connect(self: socket.socket, address: Any) -> None:
    _guard_socket(self, address, "connect to")
    return _ORIGINALS["connect"](self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _guard_socket(self, address, "connect_ex to")
    return _ORIGINALS["connect_ex"](self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> int:
    if args:  # sendto(data, address) or sendto(data, flags, address)
        _guard_socket(self, args[-1], "sendto")
    return _ORIGINALS["sendto"](self, data, *args)


def _sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
    if len(args) >= 3 and args[2] is not None:  # sendmsg(buffers, ancdata, flags, address)
        _guard_socket(self, args[2], "sendmsg to")
    return _ORIGINALS["sendmsg"](self, buffers, *args)


def _create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    if _enforcing():
        check_destination(address, _cidrs(), action="create_connection to")
    return _ORIGINALS["create_connection"](address, *args, **kwargs)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if _enforcing():
        _check_lookup(host, _cidrs(), reverse=False, action="getaddrinfo")
    return _ORIGINALS["getaddrinfo"](host, *args, **kwargs)


def _gethostbyname(hostname: Any) -> str:
    if _enforcing():
        _check_lookup(hostname, _cidrs(), reverse=False, action="gethostbyname")
    return _ORIGINALS["gethostbyname"](hostname)


def _gethostbyname_ex(hostname: Any) -> Any:
    if _enforcing():
        _check_lookup(hostname, _cidrs(), reverse=False, action="gethostbyname_ex")
    return _ORIGINALS["gethostbyname_ex"](hostname)


def _gethostbyaddr(ip_address: Any) -> Any:
    if _enforcing():
        _check_lookup(ip_address, _cidrs(), reverse=True, action="gethostbyaddr")
    return _ORIGINALS["gethostbyaddr"](ip_address)


def _getnameinfo(sockaddr: Any, flags: int) -> Any:
    if _enforcing() and isinstance(sockaddr, tuple) and sockaddr:
        numeric = bool(flags & socket.NI_NUMERICHOST)
        _check_lookup(sockaddr[0], _cidrs(), reverse=not numeric, action="getnameinfo")
    return _ORIGINALS["getnameinfo"](sockaddr, flags)


_PATCHES: Final[tuple[tuple[Any, str, Callable[..., Any]], ...]] = (
    (socket.socket, "connect", _connect),
    (socket.socket, "connect_ex", _connect_ex),
    (socket.socket, "sendto", _sendto),
    (socket.socket, "sendmsg", _sendmsg),
    (socket, "create_connection", _create_connection),
    (socket, "getaddrinfo", _getaddrinfo),
    (socket, "gethostbyname", _gethostbyname),
    (socket, "gethostbyname_ex", _gethostbyname_ex),
    (socket, "gethostbyaddr", _gethostbyaddr),
    (socket, "getnameinfo", _getnameinfo),
)


def guard_installed() -> bool:
    """True while the socket functions are wrapped."""
    with _LOCK:
        return bool(_ORIGINALS)


def _sync_patches() -> None:
    want = bool(_STATES) and _STATES[-1].enabled
    if want and not _ORIGINALS:
        for owner, name, wrapper in _PATCHES:
            if not hasattr(owner, name):  # e.g. sendmsg on platforms without it
                continue
            _OWNED[name] = name in vars(owner)
            _ORIGINALS[name] = getattr(owner, name)
            setattr(owner, name, wrapper)
    elif not want and _ORIGINALS:
        for owner, name, _wrapper in _PATCHES:
            if name not in _ORIGINALS:
                continue
            if _OWNED[name]:
                setattr(owner, name, _ORIGINALS[name])
            else:
                delattr(owner, name)  # the method was inherited from _socket.socket
        _ORIGINALS.clear()
        _OWNED.clear()


def push_state(state: FenceState) -> None:
    """Enforce ``state`` (installing or removing the guard); undo with :func:`pop_state`."""
    with _LOCK:
        _STATES.append(state)
        _sync_patches()


def pop_state(state: FenceState) -> None:
    """Return to the state that was enforced before ``push_state(state)``."""
    with _LOCK:
        for index in range(len(_STATES) - 1, -1, -1):
            if _STATES[index] is state:
                del _STATES[index]
                break
        _sync_patches()


# --------------------------------------------------------------------------- configuration


def parse_allow_cidrs(value: str | None) -> tuple[IPNetwork, ...]:
    """Parse XPU_FENCE_ALLOW_CIDRS; each entry must lie in an RFC 1918 or ULA range."""
    networks: list[IPNetwork] = []
    for entry in re.split(r"[,\s]+", value or ""):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise FenceConfigError(f"{ALLOW_CIDRS_VAR}: {entry!r} is not a CIDR ({exc})") from exc
        if not any(
            network.version == local.version and network.subnet_of(local) for local in _LOCAL_RANGES
        ):
            raise FenceConfigError(
                f"{ALLOW_CIDRS_VAR}: {entry!r} is not a local network; only subnets of "
                f"{', '.join(str(net) for net in _LOCAL_RANGES)} may be allowed"
            )
        networks.append(network)
    return tuple(networks)


def load_state(env: Mapping[str, str] | None = None) -> FenceState:
    """Read XPU_FENCE and XPU_FENCE_ALLOW_CIDRS (from os.environ by default)."""
    env = os.environ if env is None else env
    switch = env.get(FENCE_VAR, "").strip().lower()
    if switch not in ("", "on", "off"):
        raise FenceConfigError(
            f"{FENCE_VAR}={env[FENCE_VAR]!r}: expected 'on' or 'off' ('off' is for debugging only)"
        )
    cidrs = parse_allow_cidrs(env.get(ALLOW_CIDRS_VAR))
    return FenceState(enabled=switch != "off", allow_cidrs=cidrs)


# --------------------------------------------------------------------------- AWS environment


def assert_loopback_endpoint(url: str | None, variable: str = "AWS_ENDPOINT_URL") -> str:
    """Return ``url`` if it is http(s) on a loopback host, else raise FenceEnvError."""
    expected = "expected http://127.0.0.1:<port> (the local emulator)"
    if not url:
        raise FenceEnvError(f"{variable} is not set: {expected}")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise FenceEnvError(f"{variable}={url!r} is not a URL ({exc}): {expected}") from exc
    if parts.scheme not in ("http", "https"):
        raise FenceEnvError(f"{variable}={url!r}: scheme must be http or https; {expected}")
    if not is_loopback_host(host):
        raise FenceEnvError(f"{variable}={url!r}: host {host!r} is not loopback; {expected}")
    return url


def _proxy_problems(env: Mapping[str, str], names: Iterable[str], required: bool) -> list[str]:
    names = tuple(names)
    present = [name for name in names if env.get(name)]
    if required and not present:
        return [f"{names[0]} is not set: expected {FENCE_PROXY} (the loopback fence proxy)"]
    problems = []
    for name in present:
        try:
            host = urlsplit(env[name].strip()).hostname
        except ValueError:
            host = None
        if not is_loopback_host(host):
            problems.append(f"{name}={env[name]!r}: expected {FENCE_PROXY} (a loopback proxy)")
    return problems


def _mask(value: str) -> str:
    return value[:4] + "*" * max(len(value) - 4, 0)


def aws_env_problems(env: Mapping[str, str] | None = None) -> list[str]:
    """What stops ``env`` (os.environ by default) from being safe for AWS API tests.

    Each entry names the variable, its value (access keys masked) and the value expected.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    endpoints = sorted(n for n in env if n.startswith("AWS_ENDPOINT_URL"))
    for name in endpoints:
        try:
            assert_loopback_endpoint(env[name], name)
        except FenceEnvError as exc:
            problems.append(str(exc))
    if "AWS_ENDPOINT_URL" not in env:
        try:
            assert_loopback_endpoint(None)
        except FenceEnvError as exc:
            problems.append(str(exc))
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
        problems.append(
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS='true' makes botocore ignore AWS_ENDPOINT_URL: "
            "expected it unset"
        )
    metadata = env.get("AWS_EC2_METADATA_DISABLED")
    if (metadata or "").strip().lower() != "true":
        problems.append(f"AWS_EC2_METADATA_DISABLED={metadata!r}: expected 'true'")
    problems += _proxy_problems(env, ("HTTPS_PROXY", "https_proxy"), required=True)
    problems += _proxy_problems(env, ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"), False)
    no_proxy = [name for name in ("NO_PROXY", "no_proxy") if name in env]
    if not no_proxy:
        problems.append(f"NO_PROXY is not set: expected {FENCE_NO_PROXY!r}")
    for name in no_proxy:
        entries = {entry.strip() for entry in env[name].split(",")}
        if "127.0.0.1" not in entries or "*" in entries:
            problems.append(
                f"{name}={env[name]!r}: expected {FENCE_NO_PROXY!r} (must list 127.0.0.1, not '*')"
            )
    key = env.get("AWS_ACCESS_KEY_ID")
    if not key:
        problems.append(
            f"AWS_ACCESS_KEY_ID is not set: expected a dummy such as {DUMMY_CREDENTIAL!r}"
        )
    elif _REAL_KEY_RE.match(key):
        problems.append(
            f"AWS_ACCESS_KEY_ID={_mask(key)!r} looks like a real AWS access key (AKIA/ASIA...): "
            f"expected a dummy such as {DUMMY_CREDENTIAL!r}"
        )
    if not env.get("AWS_SECRET_ACCESS_KEY"):
        problems.append(
            f"AWS_SECRET_ACCESS_KEY is not set: expected a dummy such as {DUMMY_CREDENTIAL!r}"
        )
    for name in _MUST_BE_UNSET:
        if env.get(name):
            problems.append(
                f"{name}={env[name]!r}: expected it unset (it can pull credentials from outside "
                f"the environment)"
            )
    return problems


def fence_env(port: int, *, region: str = "us-east-1", host: str = "127.0.0.1") -> dict[str, str]:
    """The fence variables, set to what :func:`aws_env_problems` expects, for an emulator port.

    Lower-case proxy variables are included because they take precedence over upper-case ones.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} out of range")
    endpoint = assert_loopback_endpoint(f"http://{host}:{int(port)}")
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTPS_PROXY": FENCE_PROXY,
        "HTTP_PROXY": FENCE_PROXY,
        "https_proxy": FENCE_PROXY,
        "http_proxy": FENCE_PROXY,
        "NO_PROXY": FENCE_NO_PROXY,
        "no_proxy": FENCE_NO_PROXY,
    }


def fence_subprocess_env(
    port: int, base: Mapping[str, str] | None = None, *, region: str = "us-east-1"
) -> dict[str, str]:
    """``base`` (os.environ by default) without variables that bypass the fence, plus fence_env."""
    base = os.environ if base is None else base
    dropped = (*_MUST_BE_UNSET, "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "ALL_PROXY", "all_proxy")
    env = {
        name: value
        for name, value in base.items()
        if name not in dropped
        and not name.startswith("AWS_ENDPOINT_URL_")
        and name != "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
    }
    env.update(fence_env(port, region=region))
    return env


def header_line(state: FenceState, env: Mapping[str, str] | None = None) -> str:
    """The one-line summary printed in the pytest header."""
    env = os.environ if env is None else env
    guard = "on" if state.enabled else "OFF (XPU_FENCE=off: debugging only)"
    endpoint = env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        endpoint_text = "unset (aws tests will fail)"
    else:
        try:
            assert_loopback_endpoint(endpoint)
            endpoint_text = endpoint
        except FenceEnvError:
            endpoint_text = f"{endpoint} (NOT loopback: aws tests will fail)"
    allowed = ", ".join(["127.0.0.0/8", "::1", *(str(net) for net in state.allow_cidrs)])
    return f"xpu network fence: {guard}; AWS endpoint: {endpoint_text}; allowed: {allowed}"


# --------------------------------------------------------------------------- pytest hooks

_STATE_KEY: Final = pytest.StashKey[FenceState]()
_MARKER: Final = "aws: test talks to the AWS API (only against the local emulator; tests/fence.py)"


def pytest_configure(config: pytest.Config) -> None:
    declared = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    if "aws" not in declared:
        config.addinivalue_line("markers", _MARKER)
    try:
        state = load_state()
    except FenceConfigError as exc:
        raise pytest.UsageError(str(exc)) from exc
    push_state(state)
    config.stash[_STATE_KEY] = state


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is not None:
        pop_state(state)
        del config.stash[_STATE_KEY]


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(_STATE_KEY, None)
    return header_line(state) if state is not None else None


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Normal priority: after skip/xfail marks are evaluated, before the runner sets up fixtures
    # (it was registered earlier, and hooks of equal priority run last-registered first).
    if item.get_closest_marker("aws") is None:
        return
    problems = aws_env_problems()
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise AwsEnvFailure(
            "xpu network fence: refusing to run an `aws` test; the environment does not point "
            f"at the local emulator:\n{lines}\n{HOW_TO_FIX}",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    excinfo = call.excinfo
    if call.when == "setup" and excinfo is not None and excinfo.errisinstance(AwsEnvFailure):
        report.xpu_fence_env = True  # counted as a failure, see pytest_report_teststatus
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    if getattr(report, "xpu_fence_env", False) and report.failed:
        return "failed", "F", "FAILED"
    return None
