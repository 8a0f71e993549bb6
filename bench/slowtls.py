"""Slow TLS backends for the plan-probe benchmark: servers on 127.0.0.1 that wait before they
complete the TLS handshake, as a backend far away or under load does.

The servers run in a process of their own (`python -m bench.slowtls`), so their handshakes do not
compete with the probing process for its interpreter lock: the backends of a real plan are other
machines. Each accepted connection waits `delay` seconds before it reads the ClientHello, then
completes the handshake (requiring a client certificate issued under the given CAs), waits for
the client to close, and closes. Pure standard library; the parent writes the certificate files.

The server process prints one JSON line with its ports once every server listens, and stops when
its standard input closes, so it never outlives the benchmark that started it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
# Bounds on one connection after the delay, so a broken client cannot hold the server.
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 10.0
START_TIMEOUT = 30.0


def _context(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=directory / "client_cas.pem")
    return context


def _serve_connection(raw: socket.socket, delay: float, context: ssl.SSLContext) -> None:
    # The ClientHello waits in the kernel's buffer meanwhile, as with a slow server.
    time.sleep(delay)
    raw.settimeout(HANDSHAKE_TIMEOUT)
    try:
        with context.wrap_socket(raw, server_side=True) as tls:
            tls.settimeout(IDLE_TIMEOUT)
            # The probe sends nothing; its close (or the idle timeout) ends the connection.
            tls.recv(1)
    except (OSError, ssl.SSLError):
        pass
    finally:
        raw.close()


def _serve(count: int, delay: float, context: ssl.SSLContext) -> None:
    listeners = []
    with selectors.DefaultSelector() as selector:
        for _ in range(count):
            listener = socket.socket()
            listener.bind((HOST, 0))
            listener.listen(64)
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ, data=listener)
            listeners.append(listener)
        ports = [listener.getsockname()[1] for listener in listeners]
        print(json.dumps({"ports": ports}), flush=True)

        stop = threading.Event()

        def wait_for_parent() -> None:
            sys.stdin.read()  # returns when the parent closes our standard input (or dies)
            stop.set()

        threading.Thread(target=wait_for_parent, daemon=True).start()
        while not stop.is_set():
            for key, _events in selector.select(timeout=0.2):
                try:
                    raw, _address = key.data.accept()
                except BlockingIOError:
                    continue
                raw.setblocking(True)
                threading.Thread(
                    target=_serve_connection, args=(raw, delay, context), daemon=True
                ).start()
    for listener in listeners:
        listener.close()


@contextlib.contextmanager
def slow_servers(
    count: int, delay: float, *, chain_pem: bytes, key_pem: bytes, client_cas_pem: bytes
) -> Iterator[list[int]]:
    """Start `count` slow TLS servers in a child process; yields their ports on 127.0.0.1."""
    with tempfile.TemporaryDirectory(prefix="bench-slowtls-") as name:
        directory = Path(name)
        for filename, data in (
            ("chain.pem", chain_pem),
            ("key.pem", key_pem),
            ("client_cas.pem", client_cas_pem),
        ):
            path = directory / filename
            path.write_bytes(data)
            path.chmod(0o600)
        # A file, not a pipe: nobody reads the server's complaints while it runs, and a full
        # pipe would stall it.
        errors = directory / "stderr.txt"
        with errors.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.slowtls", str(count), str(delay), str(directory)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,  # -m finds bench from here
            )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "" when the process died before listening
            if not line:
                process.wait(timeout=START_TIMEOUT)
                error = errors.read_text().strip()[-500:]
                raise RuntimeError(f"the slow TLS servers did not start: {error}")
            yield json.loads(line)["ports"]
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("delay", type=float, help="seconds before each handshake")
    parser.add_argument("directory", help="chain.pem, key.pem and client_cas.pem")
    args = parser.parse_args(argv)
    _serve(args.count, args.delay, _context(Path(args.directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
