"""Built-in behaviours: what the simulated CPU "runs" for real program paths.

Each is ``async def main(sys, argv, env) -> int`` and does its I/O through ``sys`` (fds 0, 1
and 2 as inherited), so pipes, EOF and SIGPIPE behave as for the real programs.
"""

from __future__ import annotations

import re
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


_HEAD_NUMBER = re.compile(r"([-+]?)([0-9]+)\Z")


async def _head_usage(sys: Any, message: str) -> int:
    await sys.write(2, f"head: {message}\nTry 'head --help' for more information.\n".encode())
    return 1


async def head_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    """GNU head: ``-N``, ``-n N``/``-nN``/``--lines=N``, ``-c N``/``--bytes=N`` (``-N``: all
    but the last N), ``-q``/``-v``, files (``-`` is stdin) with ``==> name <==`` headers when
    there are several. Stops reading once it has its lines, so a writer before it in a
    pipeline gets SIGPIPE as with the real head."""
    count, lines, but_last, header = 10, True, False, None
    files: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        value = None
        if a == "--":
            files += args[i:]
            break
        if a == "-" or not a.startswith("-"):
            files.append(a)
            continue
        if a[1:].isdigit():
            if i != 1:  # the obsolete -N form is only the first argument
                return await _head_usage(sys, f"invalid trailing option -- {a[1]}")
            value, lines = a[1:], True
        elif a.startswith(("--lines=", "--bytes=")):
            value, lines = a.split("=", 1)[1], a.startswith("--lines=")
        elif a[:2] in ("-n", "-c") or a in ("--lines", "--bytes"):
            lines = a[:2] == "-n" or a == "--lines"
            if len(a) > 2 and not a.startswith("--"):
                value = a[2:]
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                return await _head_usage(sys, f"option requires an argument -- '{a[1]}'")
        elif a in ("-q", "--quiet", "--silent"):
            header = False
            continue
        elif a in ("-v", "--verbose"):
            header = True
            continue
        else:
            bad = a if a.startswith("--") else a[1]
            return await _head_usage(sys, f"unrecognized option '{bad}'" if a.startswith("--")
                                     else f"invalid option -- '{bad}'")
        m = _HEAD_NUMBER.match(value)
        if m is None:
            what = "lines" if lines else "bytes"
            await sys.write(2, f"head: invalid number of {what}: '{value}'\n".encode())
            return 1
        count, but_last = int(m.group(2)), m.group(1) == "-"
    files = files or ["-"]
    if header is None:
        header = len(files) > 1
    status = 0
    first = True
    for name in files:
        try:
            fd = 0 if name == "-" else sys.open(name, 0)
        except OSError as e:
            await sys.write(2, f"head: cannot open '{name}' for reading: {e.strerror}\n".encode())
            status = 1
            continue
        if header:
            label = "standard input" if name == "-" else name
            await sys.write(1, f"{'' if first else chr(10)}==> {label} <==\n".encode())
        first = False
        await _head_one(sys, fd, count, lines, but_last)
        if fd:
            sys.close(fd)
    return status


async def _head_one(sys: Any, fd: int, count: int, lines: bool, but_last: bool) -> None:
    if but_last:  # everything but the last `count` lines or bytes: it must all be read
        chunks = []
        while data := await sys.read(fd, 65536):
            chunks.append(data)
        data = b"".join(chunks)
        if lines:
            total = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
            keep = max(0, total - count)
            if keep == total:
                await sys.write(1, data)
            else:
                pos = 0
                for _ in range(keep):
                    pos = data.index(b"\n", pos) + 1
                await sys.write(1, data[:pos])
        else:
            await sys.write(1, data[:max(0, len(data) - count)])
        return
    left = count
    while left > 0:
        data = await sys.read(fd, 65536 if lines else min(left, 65536))
        if not data:
            return
        if not lines:
            left -= len(data)
            await sys.write(1, data)
            continue
        n = data.count(b"\n")
        if n >= left:
            pos = -1
            for _ in range(left):
                pos = data.index(b"\n", pos + 1)
            await sys.write(1, data[:pos + 1])
            return
        left -= n
        await sys.write(1, data)


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
    """GNU yes: its arguments (or ``y``) a line at a time until SIGPIPE; ``--`` ends the
    options, an option before it is refused as GNU's getopt does (``--help`` and
    ``--version`` too: the stand-in has no text for them)."""
    args = argv[1:]
    end = args.index("--") if "--" in args else len(args)
    for a in args[:end]:  # getopt permutes: an option anywhere before "--"
        if a.startswith("-") and a != "-":
            bad = (f"unrecognized option '{a}'" if a.startswith("--")
                   else f"invalid option -- '{a[1]}'")
            await sys.write(2, f"yes: {bad}\nTry 'yes --help' for more information.\n"
                            .encode())
            return 1
    args = args[:end] + args[end + 1:]
    line = ((" ".join(args) if args else "y") + "\n").encode()
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
