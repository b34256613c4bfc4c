"""A group of local worker processes (127.0.0.1): free ports to give them, and the JSON line each prints.

Shared by benchmarks/distributed.py and the multi-process tests (MultiWorkerMirrored, jax.distributed, the
fault-tolerance run), so that every launcher reads its workers the same way. Never imported by the library.
"""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any, Sequence

MARKER = "RESULT"  # a worker prints one line MARKER + json.dumps(result)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now (all held open together while they are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def results(workers: Sequence[subprocess.Popen], timeout: float) -> list[Any]:
    """Wait for every worker (text-mode stdout/stderr pipes) and return the JSON each printed after MARKER.

    A worker that exits non-zero or prints no result raises RuntimeError with the end of its stderr; any worker
    still running then is killed, so a failed group never leaves processes behind."""
    out = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=timeout)
            lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
            if worker.returncode != 0 or not lines:
                raise RuntimeError(f"worker failed (rc {worker.returncode}):\n{stderr[-4000:]}")
            out.append(json.loads(lines[-1][len(MARKER):]))
        return out
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
