"""The deployment files in deploy/: gunicorn started with deploy/gunicorn.conf.py as the systemd unit
starts it (only the address, the worker count and the environment chosen here), signed webhooks
through it, and the unit and the nginx example checked by their own tools when the machine has them.

Every gunicorn runs in a temporary working directory with every bot setting removed from the
inherited environment (as tests/test_server_process.py does for server.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from bench.servers import free_port
from tests.conftest import ROOT, SHIPPED_FLOWS, terminate
from tests.signed_webhooks import AUTH_TOKEN
from tests.test_server_process import ASK_NUMBER, HELP_TEXT, SHIPPED, clean_env, text

DEPLOY = ROOT / "deploy"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
#: Settings gunicorn or the bot read that tests/test_server_process.py's clean_env leaves in place.
MORE_NAMES = ("WORKERS", "GUNICORN_CMD_ARGS", "PROMETHEUS_MULTIPROC_DIR", "METRICS_TOKEN", "ADMIN_PASSWORD",
              "LOG_FORMAT", "RELOAD_FLOWS", "FORWARDED_ALLOW_IPS")
BROKEN_FLOW = "flow: broken\n"  # no start, no states


class Gunicorn:
    """``gunicorn --config deploy/gunicorn.conf.py --bind 127.0.0.1:PORT --workers N``, output to a file."""

    def __init__(self, cwd: Path, workers: int = 2, **settings: str) -> None:
        self.port = free_port()
        self.command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF),
                        "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        base = {name: value for name, value in os.environ.items() if name not in MORE_NAMES}
        # TMPDIR: the /metrics folder gunicorn's master makes for its workers lands where the test sees it.
        self.env = clean_env(base, TMPDIR=str(cwd), **settings)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Gunicorn:
        self._output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=self._output,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"gunicorn did not answer /healthz in time:\n{self.output()}")

    def workers(self) -> list[int]:
        assert self.process is not None
        pid = self.process.pid
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def wait(self, timeout: float) -> int:
        """The exit code, once gunicorn has exited within ``timeout`` seconds (else the test fails)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gunicorn still running after {timeout} s:\n{self.output()}") from None

    def output(self) -> str:
        descriptor = self._output.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)  # kills what the test left running (a passing test has stopped it)
            self.process = None
            self._output.close()


def settings_for(tmp_path: Path, flows: Path = SHIPPED_FLOWS, **more: str) -> dict[str, str]:
    return {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "FLOWS_DIR": str(flows),
            "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}", **more}


def flows_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, folder, ignore=shutil.ignore_patterns("tests"))
    return folder


def answered_webhooks(base_url: str) -> float:
    """``textflow_webhooks_total`` for answered /sms webhooks, in one scrape of /metrics."""
    scrape = httpx.get(base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert scrape.status_code == 200, scrape.text
    found = re.search(r'^textflow_webhooks_total\{endpoint="sms",outcome="answered"\} (\S+)$', scrape.text, re.M)
    assert found, scrape.text
    return float(found.group(1))


def head_answer(port: int, padding: int) -> bytes:
    """The start of the answer to a request whose head carries a ``padding``-byte header."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * padding + b"\r\n")
        return connection.recv(4096)


# -- gunicorn with the shipped configuration ---------------------------------------------------------

@pytest.mark.slow  # a real gunicorn and its two workers
def test_gunicorn_serves_signed_webhooks_as_server_py_does(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path, workers=2, **settings_for(tmp_path, METRICS_TOKEN=METRICS_TOKEN))
    try:
        server.start()
        assert len(server.workers()) == 2
        sender = "+15557654321"
        assert text(server, "HELP", sender) == [HELP_TEXT]
        assert text(server, "STATUS", sender) == [ASK_NUMBER]  # a flow's turn, saved in the SQLite store
        assert text(server, "STOP", sender) == [SHIPPED.program.opt_out]
        assert text(server, "STATUS", sender) == []  # opted out: no flow texts them
        for _ in range(6):
            assert text(server, "HELP") == [HELP_TEXT]

        # The worker is uvicorn as server.py runs it: the head-size cap, no server or date header.
        assert head_answer(server.port, 40_000).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        headers = httpx.get(server.url + "/healthz", timeout=10).headers
        assert "server" not in headers and "date" not in headers, headers

        # Both workers count in one folder, so every scrape, whichever worker answers it, adds up all 10.
        assert [answered_webhooks(server.url) for _ in range(4)] == [10.0] * 4
        [metrics_folder] = tmp_path.glob("textflow-metrics-*")

        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)  # systemctl stop
        assert server.wait(timeout=30) == 0
        output = server.output()
        assert "Traceback" not in output, output
        assert not metrics_folder.exists()  # removed by the on_exit hook
    finally:
        server.stop()


@pytest.mark.slow  # a real gunicorn
@pytest.mark.parametrize("problem", ["broken flows", "no auth token"])
def test_gunicorn_refuses_to_start_as_server_py_does(tmp_path: Path, problem: str) -> None:
    """The master's start-up check: the bot's error lines and exit code, before any worker or socket."""
    flows = flows_copy(tmp_path)
    if problem == "broken flows":
        (flows / "broken.yaml").write_text(BROKEN_FLOW, encoding="utf-8")
        settings, code, message = settings_for(tmp_path, flows), 1, f"error: the flows in {flows} cannot run:"
    else:
        settings, code, message = {"FLOWS_DIR": str(flows)}, 2, "error: TWILIO_AUTH_TOKEN is not set"
    server = Gunicorn(tmp_path, **settings)
    result = subprocess.run(server.command, cwd=tmp_path, env=server.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=20)
    assert result.returncode == code, result.stdout
    assert message in result.stdout
    if problem == "broken flows":
        assert f"{flows / 'broken.yaml'}:1:1: error: missing field 'start'" in result.stdout
    assert "Booting worker" not in result.stdout and "Listening at" not in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.slow  # a real gunicorn, a worker killed
def test_a_worker_that_cannot_start_stops_gunicorn_instead_of_respawning(tmp_path: Path) -> None:
    """A worker replaced after the flow files were broken on disk (the running workers' hot reload
    refused them) fails the factory's check: gunicorn stops with its error lines, for systemd to
    restart and report, instead of forking a failing worker again and again."""
    flows = flows_copy(tmp_path)
    server = Gunicorn(tmp_path, workers=1, **settings_for(tmp_path, flows))
    try:
        server.start()
        (flows / "broken.yaml").write_text(BROKEN_FLOW, encoding="utf-8")
        [worker] = server.workers()
        os.kill(worker, signal.SIGKILL)
        assert server.wait(timeout=20) == 4  # gunicorn's "App failed to load."
        output = server.output()
        assert f"error: the flows in {flows} cannot run:" in output, output
        assert "App failed to load" in output
        assert output.count("Booting worker") == 2, output  # the first, and one replacement only
    finally:
        server.stop()


# -- the unit and the proxy example, checked by their own tools ---------------------------------------

def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The unit names /opt/textflow (the README's install folder); verify checks ExecStart exists,
    # so it is pointed at this checkout, where the same files are.
    unit = tmp_path / "textflow.service"
    unit.write_text((DEPLOY / "textflow.service").read_text(encoding="utf-8").replace("/opt/textflow", str(ROOT)),
                    encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(unit)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=60)
    about_the_unit = [line for line in result.stdout.splitlines() if "textflow" in line]
    assert result.returncode == 0 and not about_the_unit, result.stdout


def test_the_nginx_example_passes_nginx_t(tmp_path: Path) -> None:
    nginx, openssl = shutil.which("nginx"), shutil.which("openssl")
    if nginx is None or openssl is None:
        pytest.skip("nginx (and openssl, for a test certificate) are not installed")
    certificate, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=sms.example.com", "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True, timeout=60)
    server_block = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    server_block = server_block.replace("/etc/letsencrypt/live/sms.example.com/fullchain.pem", str(certificate))
    server_block = server_block.replace("/etc/letsencrypt/live/sms.example.com/privkey.pem", str(key))
    (tmp_path / "textflow.conf").write_text(server_block, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{\n    include {tmp_path / 'textflow.conf'};\n}}\n", encoding="utf-8")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "test is successful" in result.stdout
