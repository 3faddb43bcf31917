"""The ``spawnfd`` command line (also ``python -m spawnfd``)."""

from __future__ import annotations

import argparse
import sys


def bench(rest: list[str]) -> None:
    """``spawnfd bench [SCENARIO...] [--quick] [--json F] [--plots D]`` (the suite); one
    scenario with its own options (``spawnfd bench fork --sizes 1 8``) or ``mm`` runs that
    scenario's script."""
    from .bench import cpu, fork, mm, suite, system, zygote

    scripts = {"mm": mm.main, "fork": fork.main, "system": system.main, "zygote": zygote.main,
               "cpu": cpu.main}
    suite_options = {"--quick", "--json", "--plots", "--markdown", "-h", "--help"}
    options = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
    if rest and rest[0] in scripts and (rest[0] in ("mm", "cpu") or
                                        any(o not in suite_options for o in options)):
        scripts[rest[0]](rest[1:])
    else:
        suite.main(rest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="spawnfd",
        description="fd-based process creation, COW and shared page tables, measured.")
    sub = ap.add_subparsers(dest="command", required=True)
    demo_cmd = sub.add_parser("demo",
                              help='system("true") four ways, the fd model, (--tour) the mm')
    demo_cmd.add_argument("--tour", action="store_true", help="also tour the memory manager")
    sub.add_parser("bench", add_help=False,
                   help="the comparison scenarios: system, host, fork, database, zygote, "
                        "anchors (tables, --json, --plots); `spawnfd bench --help`")
    sub.add_parser("calibrate", add_help=False,
                   help="measure this host's kernel, fit and store a cost model "
                        "([--quick] [--validate] [--out FILE] [--json]); "
                        "`spawnfd calibrate --help`")
    args, rest = ap.parse_known_args(argv)
    if args.command == "demo":
        from . import demo

        demo.run(tour=args.tour)
        return 0
    if args.command == "bench":
        bench(rest)
        return 0
    if args.command == "calibrate":
        from .bench.calibrate import measure as calibrate

        return calibrate.main(rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
