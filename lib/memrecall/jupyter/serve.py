"""Start JupyterLab for the project: the repository as its root, notebooks/ opened, the real URL.

Serving the repository root (not ``notebooks/``) lets Lab's file browser reach the session's
``figures/interactive/`` and ``results/interactive/``; Lab opens on ``notebooks/``. Source
notebooks are saved as git stores them, each save keeping an executed copy in
``notebooks/rendered/interactive/`` (:func:`memrecall.jupyter.lab.save_hook`), and open
unmodified (:class:`memrecall.jupyter.contents.LabContentsManager`).

* :func:`free_port`: the first port at or above a start that nothing listens on;
* :func:`start_lab`: a running server (:class:`LabServer`: its URL with the token, ``stop()``),
  returned once it answers, for ``make lab`` and the browser test;
* ``python -m memrecall.jupyter.serve [--port N]`` (``make lab PORT=N``): start it, print the
  URL to open, stop on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .._io import repo_root

__all__ = ["LabServer", "free_port", "lab_command", "main", "start_lab"]

OPEN_PATH = "notebooks"
DEFAULT_PORT = 8888
SAVE_HOOK = "memrecall.jupyter.lab.save_hook"
"""Each save of a source notebook keeps an executed copy, then writes it as git stores it."""
CONTENTS_MANAGER = "memrecall.jupyter.contents.LabContentsManager"
"""Source notebooks open unmodified (the kernel's ``language_info`` is served with them)."""


def free_port(start: int = DEFAULT_PORT, host: str = "127.0.0.1", tries: int = 100) -> int:
    """The first port from ``start`` on which nothing listens on ``host``.

    Raises:
        RuntimeError: none of ``tries`` ports is free.
    """
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + tries - 1}: pass another with PORT=")


def lab_command(root: Path, port: int, token: str, ip: str = "127.0.0.1") -> list[str]:
    """The ``jupyter lab`` command line: ``root`` served, notebooks/ opened, git-clean saves.

    Saves go through :data:`SAVE_HOOK` (an executed copy in ``notebooks/rendered/interactive/``,
    then the clean filter), and notebooks are served by :data:`CONTENTS_MANAGER`.
    """
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               f"--ServerApp.root_dir={root}", f"--ServerApp.ip={ip}",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}",
               f"--ServerApp.default_url=/lab/tree/{OPEN_PATH}",
               f"--ServerApp.contents_manager_class={CONTENTS_MANAGER}",
               f"--ContentsManager.pre_save_hook={SAVE_HOOK}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and cloud notebooks run as root
    return command


@dataclass
class LabServer:
    """A running JupyterLab: where to open it, and how to stop it."""

    process: subprocess.Popen
    port: int
    token: str
    host: str = "127.0.0.1"

    @property
    def base(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to open: notebooks/ in Lab, with the token."""
        return f"{self.base}/lab/tree/{OPEN_PATH}?token={self.token}"

    def stop(self, timeout: float = 20) -> None:
        """Stop the server (terminate, then kill if it does not exit in ``timeout`` s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_lab(root: str | Path | None = None, port: int | None = None, *,
              timeout: float = 120, log: Path | None = None,
              first_port: int = DEFAULT_PORT) -> LabServer:
    """Start JupyterLab on ``root`` (default: the repository) and return once it answers.

    Args:
        root: the folder served (the repository root, so figures/ and results/ are reachable).
        port: the port; None for :func:`free_port` from ``first_port``, tried again on the next
            free one (three times) if another process takes it before the server binds it.
        timeout: seconds to wait for the server to answer.
        log: where its output goes (None: this process's stderr).
        first_port: where the search for a free port starts when ``port`` is None.

    Raises:
        RuntimeError: the server exited or did not answer in time (its log says why).
    """
    if port is not None:
        return _start(root, port, timeout, log)
    start = first_port
    for attempt in range(3):
        port = free_port(start)
        try:
            return _start(root, port, timeout, log)
        except _Exited:
            if attempt == 2:
                raise
            start = port + 1
    raise AssertionError("unreachable")


class _Exited(RuntimeError):
    """The server process ended before it answered (most often: its port was taken)."""


def _start(root: str | Path | None, port: int, timeout: float, log: Path | None) -> LabServer:
    """Start JupyterLab on ``port`` and return once it answers."""
    root = Path(root) if root is not None else repo_root()
    token = secrets.token_hex(24)
    stream = open(log, "w", encoding="utf-8") if log else None  # noqa: SIM115 (kept open)
    process = subprocess.Popen(lab_command(root, port, token), cwd=root, stdout=stream,
                               stderr=subprocess.STDOUT if stream else None)
    server = LabServer(process, port, token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _Exited(f"JupyterLab exited with status {process.returncode} on port "
                               f"{port} (is it taken? pass another with PORT=)")
        try:
            with urllib.request.urlopen(f"{server.base}/api/status?token={token}", timeout=2):
                return server
        except OSError:
            time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """``make lab``: start Lab, print the URL, wait until Ctrl-C or the server ends."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=None,
                        help="port to serve on (default: the first free one from 8888)")
    args = parser.parse_args(argv)
    if args.port is not None:
        try:
            free_port(args.port, tries=1)
        except RuntimeError:
            print(f"error: port {args.port} is taken: pass another with PORT=", file=sys.stderr)
            return 2
    server = start_lab(port=args.port)
    print(f"\nJupyterLab is serving {repo_root()} (notebooks/ opens first). Open:\n\n"
          f"    {server.url}\n\nA session writes to figures/interactive/ and results/interactive/;"
          " saving a notebook keeps its outputs in notebooks/rendered/interactive/.\n"
          "Ctrl-C stops the server.", flush=True)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        server.stop()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
