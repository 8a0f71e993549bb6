"""Fixtures of the channel tests: a real HTTP receiver on 127.0.0.1 for apprise's JSON webhook
kind (json://), which answers with the statuses a test gives it, and channels pointing at it.

No test fakes apprise or its HTTP: the messages travel through apprise, requests and a socket
to the receiver, which records what arrived.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# A token in the webhook's path: what must never show up in a page, a command's output or a log.
SECRET = "s3cr3t-T0KEN-9f8e7d6c5b4a"


@dataclass
class Receiver:
    """What arrived (decoded JSON bodies, paths) and what to answer next."""

    port: int
    received: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    # Statuses to answer, in order; when empty, 200.
    statuses: list[int] = field(default_factory=list)
    redirect_to: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = f"/hook/{SECRET}", scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def messages(self, path: str | None = None) -> list[dict]:
        with self.lock:
            return [
                body
                for body, seen in zip(self.received, self.paths, strict=True)
                if path is None or seen == path
            ]


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status < 300:
                    receiver.received.append(json.loads(raw or b"{}"))
                    receiver.paths.append(self.path)
            self.send_response(status)
            if 300 <= status < 400 and receiver.redirect_to:
                self.send_header("Location", receiver.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # the test output stays quiet
            pass

    return Handler


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


def _serving() -> Iterator[Receiver]:
    made, server = start_receiver()
    try:
        yield made
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(allow_test_servers) -> Iterator[Receiver]:
    """A webhook on 127.0.0.1 (allowed by CONNECTIVITY_ALLOWED_NETWORKS for the test)."""
    yield from _serving()


@pytest.fixture
def second_receiver(allow_test_servers) -> Iterator[Receiver]:
    yield from _serving()


@pytest.fixture
def site_url(settings) -> str:
    settings.RENEWALS_SITE_URL = "https://keystore.example.test"
    return settings.RENEWALS_SITE_URL


@pytest.fixture
def add_channel(tenant):
    """add_channel(name, url, events="all", tenant=tenant) through the service."""
    from renewals.channels import services

    def add(name: str, url: str, events: str = "all", on=None):
        return services.add_channel(on or tenant, name, url, events)

    return add
