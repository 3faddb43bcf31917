"""spawnfd.host.run_process as a drop-in for trio.run_process, from a parent holding memory.

Run it: ``python examples/host_run_process.py [GiB]`` (default 1)

The parent first touches GiB of memory. Then the same calls go through `trio.run_process` and
`spawnfd.host.run_process`: captured output, a failing command (`CalledProcessError` with the
output), a cancelled sleeper (SIGTERM, reaped before `Cancelled` propagates), and 200 concurrent
children. Last, the spawn latency of both next to a plain `os.fork()`, which has to copy the
parent's page tables and grows with the memory held.
"""

from __future__ import annotations

import mmap
import os
import statistics
import subprocess
import sys
import time

import trio

import spawnfd.host


async def tour(run: object, name: str) -> None:
    run_process = run  # trio.run_process or spawnfd.host.run_process
    r = await run_process(["sh", "-c", "echo out; echo err >&2"], capture_stdout=True, capture_stderr=True)  # type: ignore[operator]
    print(f"{name:9} stdout={r.stdout!r} stderr={r.stderr!r}")
    try:
        await run_process(["sh", "-c", "echo partial; exit 3"], capture_stdout=True)  # type: ignore[operator]
    except subprocess.CalledProcessError as e:
        print(f"{name:9} CalledProcessError(returncode={e.returncode}, stdout={e.stdout!r})")
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(run_process, ["sleep", "30"])
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    print(f"{name:9} cancelled sleeper: returncode={proc.returncode}, /proc/{proc.pid} exists: {os.path.exists(f'/proc/{proc.pid}')}")
    codes = []

    async def one(i: int) -> None:
        codes.append((await run_process(["sh", "-c", f"exit {i % 7}"], check=False)).returncode)  # type: ignore[operator]

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, i)
    print(f"{name:9} 200 concurrent children in {time.perf_counter() - t0:.2f} s, exit codes sum {sum(codes)}")


def fork_exec() -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


async def latency(gib: float) -> None:
    async def median_ms(fn: object, n: int = 20) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            result = fn()  # type: ignore[operator]
            if result is not None:
                await result
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    print(f"\nspawn + reap /bin/true with {gib:g} GiB touched (median ms):")
    print(f"  os.fork+execv              {await median_ms(fork_exec, 5):8.2f}")
    print(f"  trio.run_process           {await median_ms(lambda: trio.run_process(['/bin/true'])):8.2f}")
    print(f"  spawnfd.host.run_process   {await median_ms(lambda: spawnfd.host.run_process(['/bin/true'])):8.2f}")


async def main(gib: float) -> None:
    held = mmap.mmap(-1, int(gib * (1 << 30)), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) if gib else None
    if held is not None:
        held.madvise(mmap.MADV_NOHUGEPAGE)
        view = memoryview(held)
        view[::4096] = b"\x01" * (len(held) // 4096)
        view.release()
    await tour(trio.run_process, "trio")
    await tour(spawnfd.host.run_process, "spawnfd")
    await latency(gib)


if __name__ == "__main__":
    trio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
