"""The network fence (tests/fence.py) refuses traffic that would leave the machine.

Each refusal test replaces the functions beneath the guard (``fence._ORIGINALS``) with recorders,
so it proves that the real socket call never happened, not only that an error came back.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from tests import fence

pytest_plugins = ["pytester"]

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class Recorder:
    """Stands in for a real socket function; the tests assert it was never called."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args)
        raise AssertionError(f"the fence let {self.name}{args!r} through to the real socket")


SENDING = ("connect", "connect_ex", "sendto", "sendmsg", "create_connection")


def replace_beneath(monkeypatch: pytest.MonkeyPatch, names: Iterable[str]) -> dict[str, Recorder]:
    assert fence.guard_installed(), "the fence is not installed (XPU_FENCE=off?)"
    recorders = {name: Recorder(name) for name in names}
    for name, recorder in recorders.items():
        monkeypatch.setitem(fence._ORIGINALS, name, recorder)
    return recorders


@pytest.fixture
def beneath(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    """Replace every real function under the guard (senders and resolvers) with a Recorder."""
    return replace_beneath(monkeypatch, list(fence._ORIGINALS))


@pytest.fixture
def beneath_senders(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    """Replace the functions that send packets; numeric getaddrinfo stays real."""
    return replace_beneath(monkeypatch, SENDING)


def refused(call: Callable[[], object]) -> fence.FenceError:
    started = time.monotonic()
    with pytest.raises(fence.FenceError) as excinfo:
        call()
    assert time.monotonic() - started < 1.0
    return excinfo.value


def assert_untouched(recorders: dict[str, Recorder]) -> None:
    assert {name: r.calls for name, r in recorders.items() if r.calls} == {}


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "host", ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "169.254.169.254"]
)
def test_create_connection_to_a_remote_address_is_refused(
    host: str, beneath: dict[str, Recorder]
) -> None:
    error = refused(lambda: socket.create_connection((host, 80), timeout=5))
    assert isinstance(error, ConnectionRefusedError)
    assert host in str(error)
    assert fence.ALLOW_CIDRS_VAR in str(error)
    assert_untouched(beneath)


@pytest.mark.parametrize(
    ("family", "host"),
    [(socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")],
    ids=["ipv4", "ipv6"],
)
def test_socket_connect_and_connect_ex_to_a_remote_address_are_refused(
    family: socket.AddressFamily, host: str, beneath: dict[str, Recorder]
) -> None:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # pragma: no cover - depends on the kernel
        pytest.skip(f"no {family.name} sockets here: {exc}")
    with sock:
        sock.settimeout(5)
        address = (host, 80)
        assert host in str(refused(lambda: sock.connect(address)))
        refused(lambda: sock.connect_ex(address))
    assert_untouched(beneath)


def test_udp_sendto_a_remote_address_is_refused(beneath: dict[str, Recorder]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        refused(lambda: sock.sendto(b"x", ("192.0.2.1", 53)))
        refused(lambda: sock.sendto(b"x", 0, ("192.0.2.1", 53)))
        refused(lambda: sock.sendmsg([b"x"], [], 0, ("192.0.2.1", 53)))
    assert_untouched(beneath)


def test_host_names_are_refused_without_a_dns_lookup(
    beneath: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"DNS lookup attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    error = refused(lambda: socket.create_connection(("example.invalid", 443), timeout=5))
    assert "example.invalid" in str(error)
    assert "host names" in str(error)
    with socket.socket() as sock:
        refused(lambda: sock.connect(("example.invalid", 443)))
    assert_untouched(beneath)


def test_resolver_functions_refuse_names_but_not_literals(beneath: dict[str, Recorder]) -> None:
    refused(lambda: socket.getaddrinfo("example.invalid", 80))
    refused(lambda: socket.gethostbyname("example.invalid"))
    refused(lambda: socket.gethostbyname_ex("example.invalid"))
    refused(lambda: socket.gethostbyaddr("192.0.2.1"))  # reverse lookups go to DNS
    refused(lambda: socket.getnameinfo(("192.0.2.1", 80), 0))
    assert_untouched(beneath)
    # Numeric hosts and localhost never need DNS, so they reach the real resolver.
    with pytest.raises(AssertionError, match="let getaddrinfo"):
        socket.getaddrinfo("192.0.2.1", 80)
    with pytest.raises(AssertionError, match="let gethostbyname"):
        socket.gethostbyname("localhost")


def test_boto3_to_a_remote_endpoint_fails_with_the_fence_error(
    beneath_senders: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    for name in PROXY_VARS:  # go direct, so that the guard (not the fence proxy) is what stops it
        monkeypatch.delenv(name, raising=False)
    client = boto3.client(
        "ec2",
        endpoint_url="http://192.0.2.1:5000",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
    )
    started = time.monotonic()
    with pytest.raises(EndpointConnectionError) as excinfo:
        client.describe_regions()
    assert time.monotonic() - started < 1.0
    chain: list[BaseException] = []
    error: BaseException | None = excinfo.value
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, fence.FenceError) for e in chain), chain
    assert_untouched(beneath_senders)


# --------------------------------------------------------------------------- what is allowed


def test_loopback_tcp_works() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"
        with socket.socket() as client:
            client.settimeout(5)
            assert client.connect_ex(("localhost", port)) == 0


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"inside the fence"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_urllib_to_a_loopback_http_server_works(http_server: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(http_server, timeout=5) as response:
        assert response.read() == b"inside the fence"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        (b"127.0.0.1", True),
        ("10.213.0.5", True),
        ("10.213.0.255", True),
        ("10.213.1.5", False),
        ("192.0.2.1", False),
        ("2001:db8::1", False),
        ("169.254.169.254", False),
        ("localhost.example", False),
        ("127.0.0.1.nip.io", False),
        ("0x7f.1", False),
        (b"\xc0\x00\x02\x01", False),
    ],
)
def test_allow_cidrs_decision(
    host: str | bytes, allowed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fence.ALLOW_CIDRS_VAR, "10.213.0.0/24")
    state = fence.load_state()
    assert fence.is_allowed_host(host, state.allow_cidrs) is allowed
    if not allowed:
        with pytest.raises(fence.FenceError):
            fence.check_destination((host, 22), state.allow_cidrs)


@pytest.mark.parametrize("value", ["0.0.0.0/0", "8.8.8.0/24", "169.254.0.0/16", "10.0.0.0/7", "x"])
def test_allow_cidrs_refuses_non_local_networks(value: str) -> None:
    with pytest.raises(fence.FenceConfigError, match=fence.ALLOW_CIDRS_VAR):
        fence.parse_allow_cidrs(value)


def test_allowed_cidr_reaches_the_real_socket_in_a_fenced_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: XPU_FENCE_ALLOW_CIDRS read at configure time lets exactly that network in."""
    monkeypatch.setenv(fence.ALLOW_CIDRS_VAR, "10.213.0.0/24")
    monkeypatch.delenv(fence.FENCE_VAR, raising=False)
    pytester.makepyfile(
        """
        import socket
        import pytest
        from tests import fence

        class Reached(Exception):
            pass

        def reached(*args, **kwargs):
            raise Reached(args)

        def test_inside(monkeypatch):
            monkeypatch.setitem(fence._ORIGINALS, "create_connection", reached)
            with pytest.raises(Reached):
                socket.create_connection(("10.213.0.5", 22))
            with pytest.raises(fence.FenceError):
                socket.create_connection(("10.213.1.5", 22))
        """
    )
    result = pytester.runpytest("-p", "tests.fence")
    result.stdout.fnmatch_lines(["xpu network fence: on;*allowed: 127.0.0.0/8, ::1, 10.213.0.0/24"])
    result.assert_outcomes(passed=1)


def test_bad_fence_settings_are_usage_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    monkeypatch.setenv(fence.ALLOW_CIDRS_VAR, "8.8.8.0/24")
    result = pytester.runpytest("-p", "tests.fence")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*XPU_FENCE_ALLOW_CIDRS*8.8.8.0/24*not a local network*"])
    monkeypatch.delenv(fence.ALLOW_CIDRS_VAR)
    monkeypatch.setenv(fence.FENCE_VAR, "0")
    result = pytester.runpytest("-p", "tests.fence")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_fence_off_is_reported_and_scoped_to_its_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, beneath: dict[str, Recorder]
) -> None:
    pytester.makepyfile(
        """
        from tests import fence

        def test_off():
            assert not fence.guard_installed()
        """
    )
    monkeypatch.setenv(fence.FENCE_VAR, "off")
    result = pytester.runpytest("-p", "tests.fence")
    result.stdout.fnmatch_lines(["xpu network fence: OFF (XPU_FENCE=off: debugging only);*"])
    result.assert_outcomes(passed=1)
    # The outer session's guard is back, with the recorders still beneath it.
    assert fence.guard_installed()
    refused(lambda: socket.create_connection(("192.0.2.1", 80)))
    assert_untouched(beneath)


# --------------------------------------------------------------------------- AWS environment

INNER_AWS_TESTS = """
import pytest

@pytest.fixture
def emulator_client():
    print("FIXTURE RAN")
    raise RuntimeError("the fixture must not run when the environment is unsafe")

@pytest.mark.aws
def test_aws(emulator_client):
    pass

@pytest.mark.aws
def test_aws_without_fixture():
    pass

def test_not_aws():
    pass
"""


def good_env(port: int = 5055) -> dict[str, str]:
    return fence.fence_env(port)


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def apply(**overrides: str | None) -> None:
        """Start from a clean fence_env(5055), then apply overrides (None deletes)."""
        for name in list(os.environ):
            if name.startswith("AWS_") or name in (*PROXY_VARS, "NO_PROXY", "no_proxy"):
                monkeypatch.delenv(name)
        for name, value in {**good_env(), **overrides}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return apply


def test_aws_test_against_real_aws_fails_before_its_fixtures(
    pytester: pytest.Pytester, use_env: Callable[..., None]
) -> None:
    use_env(AWS_ENDPOINT_URL="https://ec2.us-east-1.amazonaws.com")
    pytester.makepyfile(INNER_AWS_TESTS)
    result = pytester.runpytest("-p", "tests.fence", "-s")
    result.assert_outcomes(failed=2, passed=1, errors=0)
    result.stdout.fnmatch_lines(
        [
            "*AWS endpoint: https://ec2.us-east-1.amazonaws.com (NOT loopback*",
            "*AWS_ENDPOINT_URL='https://ec2.us-east-1.amazonaws.com'*not loopback*",
            "*make test*",
            "FAILED *::test_aws*",
        ]
    )
    result.stdout.no_fnmatch_line("*FIXTURE RAN*")


def test_aws_test_with_the_loopback_environment_passes(
    pytester: pytest.Pytester, use_env: Callable[..., None]
) -> None:
    use_env()
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.aws
        def test_aws():
            assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5055"
        """
    )
    result = pytester.runpytest("-p", "tests.fence")
    result.stdout.fnmatch_lines(["xpu network fence: on; AWS endpoint: http://127.0.0.1:5055;*"])
    result.assert_outcomes(passed=1)


def test_aws_test_with_a_real_looking_key_fails(
    pytester: pytest.Pytester, use_env: Callable[..., None]
) -> None:
    use_env(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE")
    pytester.makepyfile(INNER_AWS_TESTS)
    result = pytester.runpytest("-p", "tests.fence")
    result.assert_outcomes(failed=2, passed=1)
    masked = "AWS_ACCESS_KEY_ID='AKIA" + "*" * 16 + "' looks like a real AWS access key"
    assert masked in result.stdout.str()
    result.stdout.no_fnmatch_line("*IOSFODNN7EXAMPLE*")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AWS_ENDPOINT_URL", None),
        ("AWS_ENDPOINT_URL", "http://192.0.2.1:5055"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1@ec2.amazonaws.com:80"),
        ("AWS_ENDPOINT_URL_EC2", "https://ec2.us-east-1.amazonaws.com"),
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ("AWS_EC2_METADATA_DISABLED", None),
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("HTTPS_PROXY", None),
        ("https_proxy", "http://proxy.example.com:3128"),
        ("HTTP_PROXY", "http://10.0.0.1:3128"),
        ("NO_PROXY", None),
        ("NO_PROXY", "localhost"),
        ("no_proxy", "127.0.0.1,*"),
        ("AWS_ACCESS_KEY_ID", None),
        ("AWS_ACCESS_KEY_ID", "ASIAXXXXXXXXXXXXXXXX"),
        ("AWS_SECRET_ACCESS_KEY", None),
        ("AWS_PROFILE", "prod"),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x"),
    ],
)
def test_aws_env_problems_name_the_variable(variable: str, value: str | None) -> None:
    env = good_env()
    if value is None:
        for name in (variable, variable.lower()):
            env.pop(name, None)
    else:
        env[variable] = value
    problems = fence.aws_env_problems(env)
    assert any(p.startswith(variable) for p in problems), problems
    assert fence.aws_env_problems(good_env()) == []


def test_fence_subprocess_env_drops_bypasses() -> None:
    base = {
        "PATH": "/usr/bin",
        "AWS_PROFILE": "prod",
        "AWS_ENDPOINT_URL_S3": "https://s3.amazonaws.com",
        "https_proxy": "http://proxy.example.com:3128",
        "AWS_SESSION_TOKEN": "t",
    }
    assert fence.aws_env_problems(base) != []
    env = fence.fence_subprocess_env(5055, base)
    assert env["PATH"] == "/usr/bin"
    assert fence.aws_env_problems(env) == []
    assert "AWS_SESSION_TOKEN" not in env


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5055", "http://localhost:5000", "http://[::1]:5000", "https://127.0.0.2"],
)
def test_assert_loopback_endpoint_accepts_loopback(url: str) -> None:
    assert fence.assert_loopback_endpoint(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "https://ec2.us-east-1.amazonaws.com",
        "http://192.0.2.1:5055",
        "http://127.0.0.1.nip.io:5055",
        "http://127.0.0.1@example.com:5055",
        "http://0.0.0.0:5055",
        "ftp://127.0.0.1",
        "http://127.0.0.1:99999",
    ],
)
def test_assert_loopback_endpoint_refuses_the_rest(url: str | None) -> None:
    with pytest.raises(fence.FenceEnvError, match="AWS_ENDPOINT_URL"):
        fence.assert_loopback_endpoint(url)
