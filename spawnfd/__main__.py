"""The ``spawnfd`` command line (also ``python -m spawnfd``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="spawnfd",
        description="fd-based process creation, COW and shared page tables, measured.")
    sub = ap.add_subparsers(dest="command", required=True)
    demo_cmd = sub.add_parser("demo",
                              help='system("true") four ways, the fd model, (--tour) the mm')
    demo_cmd.add_argument("--tour", action="store_true", help="also tour the memory manager")
    bench = sub.add_parser("bench", help="benchmarks", add_help=False)
    bench.add_argument("scenario", choices=["mm", "fork", "system", "zygote"],
                       help="mm: the memory manager; fork: fork policies and shared tables; "
                            "system: system(\"true\") by fork+exec, vfork+exec and spawnfd; "
                            "zygote: a template starting apps, fork vs huge pages vs map_cow")
    args, rest = ap.parse_known_args(argv)
    if args.command == "demo":
        from . import demo

        demo.run(tour=args.tour)
        return 0
    if args.command == "bench":
        from .bench import fork, mm, system, zygote

        {"mm": mm.main, "fork": fork.main, "system": system.main,
         "zygote": zygote.main}[args.scenario](rest)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
