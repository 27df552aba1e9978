"""Real ``actorq worker`` processes for the chaos tests, and the faults done to them.

A :class:`Fleet` starts worker processes (each its own node), sends them signals and records
every signal it sends, so the checks can tell a fault the test caused from one it did not. It
is a context manager that leaves no process behind: on exit (also after a failure) every
paused process is continued, every live one is terminated and, past a grace period, killed.
Each process also asks the kernel to kill it should the test process die first.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import attrs

REPO = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1
# A log record starts with its time and level (``actorq -v`` format); other lines continue it.
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>\S+): ")
# Warnings that may carry a traceback while the server is away: asyncpg's pool reporting that
# it will retry reconnecting. Anything else with a traceback is a crash.
_EXPECTED_TRACEBACKS = ("asyncpg.pool",)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@attrs.define
class WorkerProcess:
    """One ``actorq worker`` process and what the test did to it."""

    index: int
    node_id: str
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float
    killed_at: float | None = None  # when the test sent SIGKILL
    pauses: list[tuple[float, float]] = attrs.Factory(list)  # (SIGSTOP, SIGCONT) times
    paused_since: float | None = None
    terminated_at: float | None = None  # when the test sent SIGTERM (graceful stop)
    backend_kills: list[tuple[float, int]] = attrs.Factory(list)  # (time, backends terminated)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def usable(self) -> bool:
        """Running, not paused, not being stopped: a fair target for the next fault."""
        return (
            self.alive
            and self.killed_at is None
            and self.paused_since is None
            and self.terminated_at is None
        )

    def rss_kib(self) -> int | None:
        """Resident memory (VmRSS) in KiB, or None once the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def problems(self) -> list[str]:
        """Why this process did not end the way the test made it end (empty when it did)."""
        code = self.popen.returncode
        found: list[str] = []
        if code is None:
            found.append(f"{self.node_id} (pid {self.pid}) is still running")
        elif self.killed_at is not None:
            if code != -signal.SIGKILL:
                found.append(f"{self.node_id} was SIGKILLed but exited with {code}")
        elif self.terminated_at is not None:
            if code != 0:
                found.append(f"{self.node_id} exited with {code} after SIGTERM")
        else:
            found.append(f"{self.node_id} exited by itself with {code}")
        bad = bad_records(self.log.read_text(errors="replace"))
        if bad:
            found.append(
                f"{self.node_id} logged {len(bad)} error(s) or traceback(s); first:\n{bad[0]}"
            )
        return found

    def socket_ports(self) -> set[int]:
        """Local TCP ports of this process's sockets (to find its server backends)."""
        inodes: set[str] = set()
        try:
            for fd in os.listdir(f"/proc/{self.pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            return set()
        ports: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports


def bad_records(text: str) -> list[str]:
    """Log records (with their continuation lines) that a healthy worker never writes: an
    error or critical record, a traceback outside an expected warning, or output that is
    not a log record at all (an uncaught exception printed by the interpreter)."""
    records: list[list[str]] = []
    for line in text.splitlines():
        if _RECORD.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    bad = []
    for lines in records:
        head = _RECORD.match(lines[0])
        body = "\n".join(lines)
        expected = head is not None and head["logger"].startswith(_EXPECTED_TRACEBACKS)
        if (
            head is None
            or head["level"] in ("ERROR", "CRITICAL")
            or ("Traceback" in body and not expected)
        ):
            bad.append(body)
    return [b[:3000] for b in bad]


class Fleet:
    """Starts, signals and always cleans up ``actorq worker`` processes.

    Args:
        app: the APP_PATH of the workers.
        url: the transport URL.
        options: extra ``actorq worker`` options (lease TTL, concurrency, ...).
        logs: folder for the processes' output.
        env: extra environment for the processes.
    """

    def __init__(
        self,
        *,
        app: str,
        url: str,
        options: Sequence[str],
        logs: Path,
        env: dict[str, str],
        prefix: str = "w",
    ) -> None:
        self.app = app
        self.url = url
        self.options = list(options)
        self.logs = logs
        self.env = {**os.environ, **env}
        self.prefix = prefix
        self.processes: list[WorkerProcess] = []
        logs.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all(grace=15.0 if exc is None else 3.0)

    # --- starting ---------------------------------------------------------------------------

    def start(self, *, extra: Sequence[str] = ()) -> WorkerProcess:
        """Start one more worker process (its own node, named ``<prefix><n>``)."""
        index = len(self.processes) + 1
        node_id = f"{self.prefix}{index:03d}"
        log = self.logs / f"{node_id}.log"
        command = [
            sys.executable,
            "-c",
            "from actors.cli import main; main()",
            "worker",
            self.app,
            "--transport",
            self.url,
            "--node-id",
            node_id,
            *self.options,
            *extra,
        ]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        process = WorkerProcess(
            index=index, node_id=node_id, popen=popen, log=log, started_at=time.time()
        )
        self.processes.append(process)
        return process

    def wait_ready(self, processes: Sequence[WorkerProcess], timeout: float = 30.0) -> None:
        """Wait until each process has logged that its node runs.

        Raises:
            RuntimeError: a process exited or did not come up in time.
        """
        deadline = time.monotonic() + timeout
        for process in processes:
            while "running queues" not in process.log.read_text(errors="replace"):
                if not process.alive:
                    raise RuntimeError(
                        f"{process.node_id} exited at start:\n{process.log.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{process.node_id} did not start within {timeout}s")
                time.sleep(0.05)

    # --- faults -----------------------------------------------------------------------------

    def usable(self) -> list[WorkerProcess]:
        return [p for p in self.processes if p.usable]

    def live(self) -> list[WorkerProcess]:
        return [p for p in self.processes if p.alive and p.killed_at is None]

    def kill(self, process: WorkerProcess) -> float:
        """SIGKILL ``process`` (no cleanup of any kind); returns when it was sent."""
        process.killed_at = time.time()
        if process.paused_since is not None:
            process.pauses.append((process.paused_since, process.killed_at))
            process.paused_since = None
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait()
        return process.killed_at

    def pause(self, process: WorkerProcess) -> float:
        """SIGSTOP ``process``: it holds its leases but renews none."""
        process.paused_since = time.time()
        process.popen.send_signal(signal.SIGSTOP)
        return process.paused_since

    def resume(self, process: WorkerProcess) -> float:
        """SIGCONT a paused ``process``: a zombie that wakes up and tries to finish."""
        now = time.time()
        process.popen.send_signal(signal.SIGCONT)
        if process.paused_since is not None:
            process.pauses.append((process.paused_since, now))
            process.paused_since = None
        return now

    def unexpected_exits(self) -> Iterator[WorkerProcess]:
        """Processes that exited although the test neither killed nor stopped them."""
        for process in self.processes:
            if not process.alive and process.killed_at is None and process.terminated_at is None:
                yield process

    # --- stopping ---------------------------------------------------------------------------

    def terminate(self, processes: Sequence[WorkerProcess], *, grace: float) -> None:
        """SIGTERM (graceful shutdown) then wait; SIGKILL whatever outlives ``grace``."""
        now = time.time()
        for process in processes:
            if process.paused_since is not None:
                self.resume(process)
            if process.alive and process.killed_at is None:
                process.terminated_at = now
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()

    def stop_all(self, *, grace: float) -> None:
        """Stop every process still running (idempotent)."""
        self.terminate([p for p in self.processes if p.popen.returncode is None], grace=grace)
