"""`inceptionnet serve` as a subprocess on a free loopback port, for the server and page tests (not collected)."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(model: Path, *args: str, log: Path, host: str = "127.0.0.1", env: dict | None = None,
                   timeout: float = 180):
    """Start `inceptionnet serve model --port <free> *args` (environment plus `env`), wait until /health
    answers, yield (base URL, process); the server is stopped afterwards. Its output goes to `log`."""
    port = free_port()
    cmd = [sys.executable, "-m", "inceptionnet", "serve", str(model), "--host", host, "--port", str(port), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{Path(log).read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not up after {timeout} s:\n{Path(log).read_text()}")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
