"""Run the benchmarks: `python bench/run.py [--quick] [--check] [--json FILE] [--only A,B]`.

Each scenario (or part of one) runs in its own child process on its own throwaway database, so
its peak memory (resident set size) is its own. The databases are copies of one migrated
template: a temporary SQLite file by default, or uniquely named PostgreSQL databases with
`--postgres` or a PostgreSQL DATABASE_URL. The activation-under-load scenario always runs on
PostgreSQL (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres) and is
skipped with a note when no server answers. Everything made is removed at the end.

The table is printed, the results are written as JSON (default bench/results/latest.json), and
with --check the exit code is 1 when any target is missed.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Run order; where-used last, the table follows the numbering.
SCENARIOS = (
    "changelist",
    "keystore_import",
    "scan",
    "activation_load",
    "whereused",
    "api_list",
    "plan_probe",
)
TABLE_ORDER = (
    "changelist",
    "keystore_import",
    "whereused",
    "scan",
    "activation_load",
    "api_list",
    "plan_probe",
)
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def scenario_module(name: str):
    return importlib.import_module(f"bench.scenarios.{name}")


# -- databases -------------------------------------------------------------------------------


def _child_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_DATABASE_URL"] = database_url
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, str(Path(__file__)), "--migrate"],
        env=_child_env(database_url),
        check=True,
    )


class SqliteDatabases:
    """A migrated template file, copied for each part."""

    vendor = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.sqlite3"

    def prepare(self) -> None:
        migrate(f"sqlite:///{self.template}")

    def fresh(self, name: str) -> str:
        path = self.directory / f"{name}.sqlite3"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def discard(self, url: str) -> None:
        path = Path(urlsplit(url).path)
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    def cleanup(self) -> None:
        pass


class PostgresDatabases:
    """Databases named bench_<pid>_<name> on one server, made from a migrated template."""

    vendor = "postgresql"

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        self.server_url = server_url
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))
        self.prefix = f"bench_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []

    def _url(self, database: str) -> str:
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{database}"))

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(sql)

    def reachable(self) -> str:
        """ "" when the server answers, else why not."""
        try:
            self._execute("SELECT 1")
        except Exception as error:  # any failure to connect means: skip, with the reason
            return " ".join(str(error).split())[:200]
        return ""

    def _create(self, database: str, template: str | None = None) -> str:
        suffix = f" TEMPLATE {template}" if template else ""
        self._execute(f'CREATE DATABASE "{database}"{suffix}')
        self.created.append(database)
        return self._url(database)

    def prepare(self) -> None:
        migrate(self._create(self.template))

    def fresh(self, name: str) -> str:
        safe = re.sub(r"[^a-z0-9_]", "_", name.lower())
        return self._create(f"{self.prefix}_{safe}", self.template)

    def discard(self, url: str) -> None:
        database = urlsplit(url).path.lstrip("/")
        if database in self.created:
            self._execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            self.created.remove(database)

    def cleanup(self) -> None:
        for database in list(self.created):
            self._execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            self.created.remove(database)


# -- the child side --------------------------------------------------------------------------


def child_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()


def child_migrate() -> int:
    child_setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return 0


def child_run(name: str, part: str, sizes: dict, workdir: Path, out: Path) -> int:
    from bench.common import peak_rss_mb

    child_setup()
    module = scenario_module(name)
    started = time.perf_counter()
    if part == "prepare":
        module.prepare(sizes, workdir)
        result = None
    else:
        result = (
            module.run_part(part, sizes, workdir) if part != "main" else module.run(sizes, workdir)
        )
        result.seconds = time.perf_counter() - started
        result.peak_rss_mb = peak_rss_mb()
    out.write_text(json.dumps(result.as_dict() if result else {}, default=str))
    return 0


# -- the parent side -------------------------------------------------------------------------


def parts_of(module, sizes: dict) -> list[str]:
    return module.parts(sizes) if hasattr(module, "parts") else ["main"]


def run_child(name: str, part: str, sizes: dict, workdir: Path, database_url: str) -> dict:
    out = workdir / f"{name}-{part}.json"
    command = [
        sys.executable,
        str(Path(__file__)),
        "--child",
        name,
        "--part",
        part,
        "--sizes",
        json.dumps(sizes),
        "--workdir",
        str(workdir),
        "--out",
        str(out),
    ]
    completed = subprocess.run(
        command, env=_child_env(database_url), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-15:]
        raise RuntimeError(f"{name}/{part} failed:\n" + "\n".join(tail))
    return json.loads(out.read_text())


def error_result(name: str, sizes: dict, message: str) -> dict:
    return {
        "scenario": name,
        "sizes": sizes,
        "rows": [
            {
                "scenario": name,
                "metric": "scenario ran",
                "value": "error",
                "unit": "",
                "baseline": None,
                "ratio": None,
                "target": "runs",
                "passed": False,
                "note": message.splitlines()[0][:200] if message else "",
            }
        ],
        "seconds": 0,
        "peak_rss_mb": None,
        "skipped": "",
        "error": message,
    }


def run_scenario(name: str, mode: str, databases, postgres, workdir: Path) -> dict:
    module = scenario_module(name)
    sizes = dict(module.SIZES[mode])
    started = time.perf_counter()
    if getattr(module, "NEEDS_POSTGRES", False) and databases.vendor != "postgresql":
        why = postgres.reachable() if postgres else "no PostgreSQL server configured"
        if why:
            skipped = {
                "scenario": name,
                "sizes": sizes,
                "rows": [],
                "seconds": 0,
                "peak_rss_mb": None,
                "skipped": f"PostgreSQL is not reachable ({why}); scenario skipped",
            }
            return skipped
        databases = postgres
        if not databases.created:
            databases.prepare()
    scenario_dir = workdir / name
    scenario_dir.mkdir(exist_ok=True)
    try:
        if hasattr(module, "prepare"):
            url = databases.fresh(f"{name}_prepare")
            try:
                run_child(name, "prepare", sizes, scenario_dir, url)
            finally:
                databases.discard(url)
        parts = {}
        for part in parts_of(module, sizes):
            url = databases.fresh(f"{name}_{part}")
            try:
                parts[part] = run_child(name, part, sizes, scenario_dir, url)
            finally:
                databases.discard(url)
    except Exception as error:
        return error_result(name, sizes, str(error))
    finally:
        shutil.rmtree(scenario_dir, ignore_errors=True)
    single = list(parts) == ["main"]
    result = parts["main"] if single else module.combine(sizes, parts).as_dict()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: list[dict]) -> str:
    header = ("scenario", "metric", "value", "baseline", "ratio", "target", "result")
    lines: list[tuple[str, ...]] = []
    for result in results:
        name = result["scenario"]
        if result.get("skipped"):
            lines.append((name, result["skipped"], "", "", "", "", "skipped"))
            continue
        for row in result["rows"]:
            unit = f" {row['unit']}" if row["unit"] else ""
            verdict = {True: "pass", False: "FAIL", None: ""}[row["passed"]]
            lines.append(
                (
                    name,
                    row["metric"],
                    _cell(row["value"]) + unit,
                    _cell(row["baseline"]),
                    "" if row["ratio"] is None else f"{row['ratio']:.2f}x",
                    row["target"],
                    verdict,
                )
            )
        if result.get("peak_rss_mb") is not None:
            rss = f"{result['peak_rss_mb']} MB"
            lines.append((name, "peak RSS (whole scenario)", rss, "", "", "", ""))
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    previous = None
    for line in lines:
        shown = ("" if line[0] == previous else line[0], *line[1:])
        previous = line[0]
        out.append("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
    return "\n".join(out)


def _postgres_url(args) -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if args.postgres or url.startswith(("postgres://", "postgresql://")):
        return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_POSTGRES
    return None


def main_parent(args) -> int:
    mode = "quick" if args.quick else "full"
    names = [name for name in SCENARIOS if not args.only or name in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(SCENARIOS) if args.only else set()
    if unknown:
        print(f"Unknown scenario(s): {', '.join(sorted(unknown))}; choose from {SCENARIOS}")
        return 2
    # One key-encryption key and secret for the whole run (children inherit the environment).
    os.environ.setdefault("KEYSTORE_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
    os.environ.setdefault("DJANGO_SECRET_KEY", base64.b64encode(os.urandom(30)).decode())
    workdir = Path(tempfile.mkdtemp(prefix="keystore-bench-"))
    server = _postgres_url(args)
    postgres_server = os.environ.get("BENCH_POSTGRES_URL", server or DEFAULT_POSTGRES)
    postgres = PostgresDatabases(postgres_server)
    databases = PostgresDatabases(server) if server else SqliteDatabases(workdir)
    if server:
        postgres = databases
    started = datetime.now(UTC)
    print(f"Benchmarks ({mode}) on {databases.vendor}; working in {workdir}", flush=True)
    results: list[dict] = []
    try:
        databases.prepare()
        for name in names:
            sizes = scenario_module(name).SIZES[mode]
            print(f"- {name}: {json.dumps(sizes)}", flush=True)
            result = run_scenario(name, mode, databases, postgres, workdir)
            if result.get("error"):
                print(f"  error: {result['error']}", flush=True)
            print(f"  done in {result.get('seconds', 0)} s", flush=True)
            results.append(result)
    finally:
        databases.cleanup()
        if postgres is not databases:
            postgres.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    results.sort(key=lambda result: TABLE_ORDER.index(result["scenario"]))
    print()
    print(table(results))
    missed = [
        f"{row['scenario']}: {row['metric']}"
        for result in results
        for row in result["rows"]
        if row["passed"] is False
    ]
    document = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "mode": mode,
        "database": databases.vendor,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scenarios": results,
        "missed": missed,
        "passed": not missed,
    }
    target = Path(args.json) if args.json else DEFAULT_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print()
    verdict = "All targets met." if not missed else f"{len(missed)} target(s) missed."
    print(f"{verdict} JSON: {target}")
    return 1 if (args.check and missed) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of the keystore site.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", metavar="FILE", help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--only", metavar="A,B", help=f"run only these of {', '.join(SCENARIOS)}")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run every scenario on PostgreSQL (DATABASE_URL or the local server)",
    )
    # Internal: the child processes.
    parser.add_argument("--migrate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--part", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.migrate:
        return child_migrate()
    if args.child:
        return child_run(
            args.child, args.part, json.loads(args.sizes), Path(args.workdir), Path(args.out)
        )
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
