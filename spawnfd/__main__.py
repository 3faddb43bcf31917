"""The ``spawnfd`` command line (also ``python -m spawnfd``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys


def bench(rest: list[str]) -> None:
    """``spawnfd bench [SCENARIO...] [--quick] [--json F] [--plots D] ...`` (the suite); one
    scenario with options of its own script (``spawnfd bench fork --sizes 1 8``) runs that
    script."""
    from .bench import fork, mm, suite, system, zygote

    scripts = {"mm": mm.main, "fork": fork.main, "system": system.main, "zygote": zygote.main}
    suite_options = {"--quick", "--json", "--plots", "--markdown", "--max-gib", "-h", "--help"}
    options = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
    if rest and rest[0] in scripts and any(o not in suite_options for o in options):
        scripts[rest[0]](rest[1:])
    else:
        suite.main(rest)


def _broken_pipe(e: BaseException) -> bool:
    """Is ``e`` a BrokenPipeError, or a group (from a trio nursery) made only of them?"""
    if isinstance(e, BrokenPipeError):
        return True
    inner: tuple[BaseException, ...] = getattr(e, "exceptions", ())
    return bool(inner) and all(_broken_pipe(x) for x in inner)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a reader that goes away (``spawnfd demo | head -1``) ends it
    quietly, as it ends a Unix tool: no traceback, exit status 128 + SIGPIPE."""
    try:
        try:
            return _run(argv)
        finally:  # a closed pipe shows here if nothing was written since (or on --help)
            sys.stdout.flush()
    except BaseException as e:
        if not _broken_pipe(e):
            raise
        # Python flushes stdout again at exit: point it at /dev/null so that flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


def _run(argv: list[str] | None) -> int:
    from . import __version__

    ap = argparse.ArgumentParser(
        prog="spawnfd",
        description="fd-based process creation, COW and shared page tables, measured.")
    ap.add_argument("--version", action="version", version=f"spawnfd {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    demo_cmd = sub.add_parser("demo",
                              help='system("true") four ways, the fd model, (--tour) the mm')
    demo_cmd.add_argument("--tour", action="store_true", help="also tour the memory manager")
    sub.add_parser("bench", add_help=False,
                   help="the comparison scenarios: system, host, fork, database, zygote, "
                        "anchors, mm, cpu, realspawn, abi (tables, --json, --plots, --markdown); "
                        "see "
                        "spawnfd bench --help")
    sub.add_parser("calibrate", add_help=False,
                   help="measure this host's kernel, fit and store a cost model "
                        "([--quick] [--validate] [--out FILE] [--json]); see "
                        "spawnfd calibrate --help")
    args, rest = ap.parse_known_args(argv)
    if args.command == "demo":
        from . import demo

        demo.run(tour=args.tour)
        return 0
    if args.command == "bench":
        bench(rest)
        return 0
    if args.command == "calibrate":
        from .bench import calibrate

        return calibrate.main(rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
