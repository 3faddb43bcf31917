"""The long hostile-input fuzz run (issue 16): seeds of tests/fuzz_engine.py, one fresh kernel
each, ``check()`` after every call, for a given time. Prints the calls made, the seeds run and
every distinct failure with its seed and last calls (replay one with ``--seed N``).

    python benchmarks/fuzz_long.py --minutes 5 [--first 0] [--steps 80]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.fuzz_engine import Bug, run_seed  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--steps", type=int, default=80, help="calls per sequence (about)")
    ap.add_argument("--seed", type=int, default=None, help="replay one seed")
    ap.add_argument("--hang", type=int, default=60, help="seconds before a seed is a hang")
    args = ap.parse_args()

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError("hang")
    signal.signal(signal.SIGALRM, hang)

    seeds = [args.seed] if args.seed is not None else None
    stop = time.monotonic() + args.minutes * 60
    calls = ran = 0
    failures: dict[str, str] = {}
    seed = args.first
    while (seeds is None and time.monotonic() < stop) or (seeds is not None and seeds):
        s = seeds.pop() if seeds is not None else seed
        signal.alarm(args.hang)
        try:
            calls += run_seed(s, args.steps)
        except Bug as e:
            key = str(e).split("\n")[0].split("): ", 1)[-1][:100]
            if key not in failures:
                failures[key] = str(e)
                print(str(e), "\n----", flush=True)
        except TimeoutError:
            failures.setdefault(f"hang {s}", f"seed {s}: no progress in {args.hang} s")
            print(f"seed {s}: HANG", flush=True)
        finally:
            signal.alarm(0)
        ran += 1
        seed += 1
    print(f"{calls} calls over {ran} seeds (from {args.first}), "
          f"{len(failures)} distinct failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
