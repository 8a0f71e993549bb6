"""Run the whole demo with one command: migrate, seed, then the web server and the task cluster.

The server and `qcluster` run as child processes side by side. Ctrl-C or SIGTERM stops both;
if one of them dies, the other is stopped too and the command fails, so a half-running demo
never looks healthy.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from keystore import demo

POLL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 10


class Command(BaseCommand):
    help = (
        "Migrate the database, seed the demo, then run the web server on 127.0.0.1:PORT and "
        "the django-q2 cluster (for the daily jobs) until Ctrl-C."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-qcluster", action="store_true", help="do not start the task cluster"
        )

    def handle(self, *args, **options) -> None:
        port = options["port"]
        if not 0 < port < 65536:
            raise CommandError(f"The port {port} is not between 1 and 65535.")
        call_command(
            "migrate", interactive=False, verbosity=options["verbosity"], stdout=self.stdout
        )
        result = demo.seed()
        logins = demo.login_table(result.logins, f"http://127.0.0.1:{port}/admin/")

        printed = []

        def print_logins() -> None:
            self.stdout.write(logins)
            self.stdout.flush()
            printed.append(True)

        # The logins come last: once the server listens, after its start-up lines (or when the
        # demo ends before it ever listened).
        code = run_side_by_side(
            self.children(port, with_qcluster=not options["no_qcluster"]),
            when_listening=(port, print_logins),
        )
        if not printed:
            print_logins()
        if code:
            raise CommandError(code)

    def children(self, port: int, *, with_qcluster: bool) -> dict[str, list[str]]:
        manage = str(settings.BASE_DIR / "manage.py")
        commands = {
            "runserver": [sys.executable, manage, "runserver", f"127.0.0.1:{port}", "--noreload"]
        }
        if with_qcluster:
            commands["qcluster"] = [sys.executable, manage, "qcluster"]
        return commands


class _Stop(Exception):
    pass


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=POLL_SECONDS):
            return True
    except OSError:
        return False


def run_side_by_side(
    commands: dict[str, list[str]],
    *,
    when_listening: tuple[int, Callable[[], None]] | None = None,
) -> str:
    """Run the commands until one ends or we are told to stop; stop the rest. With
    `when_listening` (port, callback), the callback runs once 127.0.0.1:port accepts a
    connection.

    Returns "" after Ctrl-C/SIGTERM, else a sentence naming the child that ended first.
    """
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for sig in previous:
            signal.signal(sig, _raise_stop)
        for name, argv in commands.items():
            processes[name] = subprocess.Popen(argv)
        while True:
            for name, process in processes.items():
                code = process.poll()
                if code is not None:
                    return f"{name} stopped with exit code {code}; the demo was shut down."
            if when_listening is not None and _listening(when_listening[0]):
                when_listening[1]()
                when_listening = None
            time.sleep(POLL_SECONDS)
    except (_Stop, KeyboardInterrupt):
        return ""
    finally:
        # Ignore a second Ctrl-C while the children are being stopped.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            _stop_all(processes.values())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _stop_all(processes) -> None:
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
