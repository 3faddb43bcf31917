"""Built-in behaviours: what the simulated CPU "runs" for real program paths.

Each is ``async def main(sys, argv, env) -> int`` and does its I/O through ``sys`` (fds 0, 1
and 2 as inherited), so pipes, EOF and SIGPIPE behave as for the real programs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Main = Callable[[Any, list[str], dict[str, str]], Awaitable[int]]


async def true_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    return 0


async def false_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    return 1


async def echo_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    args, newline = argv[1:], True
    if args and args[0] == "-n":
        args, newline = args[1:], False
    await sys.write(1, (" ".join(args) + ("\n" if newline else "")).encode())
    return 0


async def cat_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    files = [a for a in argv[1:] if not a.startswith("-") or a == "-"] or ["-"]
    status = 0
    for name in files:
        try:
            fd = 0 if name == "-" else sys.open(name, 0)
        except OSError as e:
            await sys.write(2, f"cat: {name}: {e.strerror}\n".encode())
            status = 1
            continue
        while data := await sys.read(fd, 65536):
            await sys.write(1, data)
        if fd:
            sys.close(fd)
    return status


async def head_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    n = int(argv[argv.index("-n") + 1]) if "-n" in argv else 10
    buf = b""
    while buf.count(b"\n") < n:
        data = await sys.read(0, 65536)
        if not data:
            break
        buf += data
    lines = buf.split(b"\n")
    out = b"\n".join(lines[:n]) + (b"\n" if len(lines) > n else b"")
    await sys.write(1, out)
    return 0


async def wc_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    data = b""
    while chunk := await sys.read(0, 65536):
        data += chunk
    counts = {"-l": data.count(b"\n"), "-w": len(data.split()), "-c": len(data)}
    flags = [a for a in argv[1:] if a in counts] or ["-l", "-w", "-c"]
    width = 1 if len(flags) == 1 else 7
    await sys.write(1, (" ".join(f"{counts[f]:>{width}}" for f in flags) + "\n").encode())
    return 0


async def yes_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    line = ((" ".join(argv[1:]) if len(argv) > 1 else "y") + "\n").encode()
    block = line * max(1, 8192 // len(line))
    while True:  # until SIGPIPE
        await sys.write(1, block)


async def sleep_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    await trio.sleep(float(argv[1]) if len(argv) > 1 else 0)
    return 0


async def env_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    await sys.write(1, "".join(f"{k}={v}\n" for k, v in env.items()).encode())
    return 0


async def memload_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    """``memload MIB [--shared FILE] [--hold]``: map and touch MIB MiB of private memory,
    optionally map FILE shared and touch all of it, then (with --hold) read stdin until EOF
    so the parent decides when it exits. A workload for the benchmarks."""
    import mmap as _mmap

    size = int(float(argv[1]) * (1 << 20)) if len(argv) > 1 else 0
    if size:
        a = sys.mmap(size, _mmap.PROT_READ | _mmap.PROT_WRITE,
                     _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS)
        sys.proc.mm.populate(a, size, write=True)
    if "--shared" in argv:
        path = argv[argv.index("--shared") + 1]
        fd = sys.open(path, 2)  # O_RDWR
        length = sys.proc.fstat_size(fd)
        if length:
            b = sys.mmap(length, _mmap.PROT_READ | _mmap.PROT_WRITE, _mmap.MAP_SHARED, fd)
            sys.proc.mm.populate(b, length)
    if "--hold" in argv:
        while await sys.read(0, 4096):
            pass
    return 0
