"""The flow import against a bare XML parse, counted in callgrind instructions.

Wall-clock ratios on a busy machine vary by a tenth or more from run to run; instruction counts
repeat within about 0.2%. This counts, with `valgrind --tool=callgrind` and PYTHONHASHSEED=0,
three processes that do the same set-up (Django, a copy of a prepared SQLite database whose
tenant holds the benchmark's keystore, a warm-up of 10 other files imported and parsed) and then:

* `none`: nothing more;
* `import`: `import_flow_exports` of the benchmark's first 100 flows (bench/scenarios/whereused);
* `parse`: the bare parse of the same files (`bare_parse`: open each ZIP, ElementTree each .iflw).

The files are written as one commit group of 100, as at full speed (see `child`).

Each timed part starts from a collected heap, as in the benchmark. The import costs `import - none`
instructions, the bare parse `parse - none`; their quotient is the ratio the benchmark's 1.5x
target is about (docs/performance.md, "The flow import: one write path through the ORM").

    .venv/bin/python bench/callgrind_flow_import.py prepare /tmp/cg   # once: database and files
    .venv/bin/python bench/callgrind_flow_import.py measure /tmp/cg   # three callgrind runs
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOWS = 100
WARM_UP = 10
MODES = ("none", "import", "parse")


def _environment(database: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_DATABASE_URL"] = f"sqlite:///{database}"
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    env["PYTHONHASHSEED"] = "0"
    # Fixed, so that both sides and every run see the same settings (the values are throwaway).
    env["DJANGO_SECRET_KEY"] = "callgrind-flow-import-" + "x" * 40
    env["KEYSTORE_KEK"] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _paths(workdir: Path) -> list[Path]:
    return sorted((workdir / "flows").glob("flow-*.zip"))


def prepare(workdir: Path) -> None:
    """Migrate the template database, add the keystore tenant, write the flow files."""
    workdir.mkdir(parents=True, exist_ok=True)
    template = workdir / "template.sqlite3"
    template.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, __file__, "setup", str(workdir)],
        env=_environment(template),
        check=True,
    )


def _setup_child(workdir: Path) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from bench.scenarios import whereused

    call_command("migrate", verbosity=0, interactive=False)
    whereused._tenant_with_keystore("measured")
    whereused._tenant_with_keystore("warm-up")
    directory = workdir / "flows"
    directory.mkdir(exist_ok=True)
    for number in range(FLOWS + WARM_UP):
        (directory / f"flow-{number:05d}.zip").write_bytes(whereused.flow_export(number))


def child(workdir: Path, mode: str) -> None:
    """One measured process (run under callgrind by `measure`)."""
    import gc

    import django

    django.setup()
    from bench.scenarios.whereused import bare_parse
    from keystore.models import Tenant
    from renewals.whereused import importing
    from renewals.whereused.importing import import_flow_exports

    # Under callgrind the import runs some 50 times slower, so the one second that bounds a
    # commit group would cut the 100 files into groups of a few files each, how many depending
    # on the machine's speed; at full speed they are one group (reading them takes well under
    # a second). Grouping by count alone keeps the count of instructions that of a real run
    # and repeatable.
    importing.STORE_GROUP_SECONDS = float("inf")

    paths = _paths(workdir)
    measured, warm_up = paths[:FLOWS], paths[FLOWS : FLOWS + WARM_UP]
    contents = [path.read_bytes() for path in paths]  # the files in the page cache for both
    del contents
    tenant = Tenant.objects.get(slug="measured")
    bare_parse(warm_up)
    outcomes = import_flow_exports(
        Tenant.objects.get(slug="warm-up"), ((p.name, p) for p in warm_up)
    )
    assert all(o.ok for o in outcomes), outcomes
    gc.collect()
    if mode == "import":
        outcomes = import_flow_exports(tenant, ((p.name, p) for p in measured))
        assert len(outcomes) == FLOWS and all(o.ok for o in outcomes), outcomes
    elif mode == "parse":
        bare_parse(measured)
    gc.collect()


def _callgrind(workdir: Path, mode: str) -> int:
    database = workdir / f"run-{ROOT.name}-{mode}.sqlite3"
    shutil.copyfile(workdir / "template.sqlite3", database)
    out = workdir / f"callgrind.{ROOT.name}.{mode}.out"
    try:
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "child",
                str(workdir),
                "--mode",
                mode,
            ],
            env=_environment(database),
            check=True,
            capture_output=True,
        )
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    match = re.search(r"^summary:\s*(\d+)", out.read_text(), re.MULTILINE)
    assert match, f"no summary in {out}"
    return int(match.group(1))


def measure(workdir: Path, jobs: int) -> None:
    with ThreadPoolExecutor(jobs) as pool:
        counts = dict(zip(MODES, pool.map(lambda m: _callgrind(workdir, m), MODES), strict=True))
    imported = counts["import"] - counts["none"]
    parsed = counts["parse"] - counts["none"]
    for mode in MODES:
        print(f"{mode:>7}: {counts[mode]:>15,} instructions")
    print(f"import: {imported / 1e6:,.1f} M, bare parse: {parsed / 1e6:,.1f} M")
    print(f"ratio: {imported / parsed:.3f}x")


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("prepare", "measure", "setup", "child"))
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--mode", choices=MODES, default="none")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.command == "prepare":
        prepare(workdir)
    elif args.command == "measure":
        measure(workdir, args.jobs)
    elif args.command == "setup":
        _setup_child(workdir)
    else:
        child(workdir, args.mode)


if __name__ == "__main__":
    main()
