"""Spawn-and-reap latency on the host: this script is now `spawnfd.bench.host`.

Usage: python benchmarks/bench_host.py [--sizes 0,1,4,8] [--repeats 30] [--cpu N] [--quick] [--json F]
(the same as `python -m spawnfd.bench.host`; `spawnfd bench host` runs it as one scenario).
"""

from spawnfd.bench.host import cli

if __name__ == "__main__":
    cli()
