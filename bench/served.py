"""`s2s serve` in its own process on a free 127.0.0.1 port, for the bench scripts that drive it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(run_dirs: list[str], *options: str, env: dict | None = None,
           seconds: float = 300) -> Iterator[int]:
    """Start `s2s serve RUN... OPTIONS`, wait until /health answers, yield its port, stop it."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a long run never blocks on it
    server = subprocess.Popen([sys.executable, "-m", "s2s", "serve", *run_dirs, "--port", str(port),
                               *options], env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + seconds
        while True:
            if server.poll() is not None:
                log.seek(0)
                sys.exit(f"s2s serve stopped: {log.read()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"s2s serve did not answer within {seconds:.0f} s")
                time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(30)
        log.close()
