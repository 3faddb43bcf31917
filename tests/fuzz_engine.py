"""Hostile-input fuzzing of the simulated kernel (issue 16): random sequences of system calls
with hostile integers, over every kernel option, each in a fresh kernel with ``check()``
after every call. Every failure must be an ``OSError`` with an errno, a ``ValueError`` or a
``TypeError`` — never a crash, a hang, a ``KernelPanic`` or a host ``MemoryError``.

Driven by a seed (``run_seed``), so a failure is replayed exactly: ``tests/test_fuzz.py`` runs
a bounded number of seeds through hypothesis; ``benchmarks/fuzz_long.py`` runs many more.
"""

from __future__ import annotations

import errno
import mmap
import os
import random
from collections.abc import Callable
from typing import Any

import spawnfd
from spawnfd.sim.builder import Builder

PAGE = 4096
TASK_SIZE = 0x7FFFFFFFF000
HOSTILE = [0, 1, 2, 4095, 4096, 4097, 8192, (1 << 21) - PAGE, 1 << 21, (1 << 21) + PAGE,
           1 << 30, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**46, TASK_SIZE - PAGE,
           TASK_SIZE, 2**47, 2**48, 2**52, 2**56, 2**63 - PAGE, 2**63 - 1, 2**63,
           2**64 - PAGE, 2**64 - 1, 2**64, -1, -PAGE, -2**31, -2**63, -2**63 - 1]
HOSTILE_INT = [0, 1, 2, 3, -1, -2, 2**31 - 1, -2**31, 2**31, 2**32 - 1, 2**32, 1000, 1 << 20,
               2**63, -2**63, 2**64]
MEMORIES = ["256K", "1M", "4M", "16M", "64M", "1G"]
FORK_MODES = ["copy", "cow-pt", "cow-pt-eager"]
PATHS = ["/tmp/a", "/tmp/b", "/tmp/a", "/tmp", "/dev/null", "/dev/zero", "/bin/true",
         os.fsdecode(b"/tmp/caf\xe9"), "/nonexistent/x", "", "rel", "/tmp/" + "n" * 300,
         "/tmp/a\0b", b"/tmp/a"]
MAP_NORESERVE, MAP_GROWSDOWN, MAP_SHARED_VALIDATE = 0x4000, 0x100, 0x3
ADVICES = [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
           25, 100, 102, 102, 103, -1, 2**31 - 1]
OK_EXCEPTIONS = (OSError, ValueError, TypeError)


class Bug(AssertionError):
    """A failure the fuzzer exists to find."""


class World:
    """One fresh kernel and what the sequence has made in it."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.options = dict(fork_mode=rnd.choice(FORK_MODES),
                            share_pagetables=rnd.random() < 0.5,
                            thp=rnd.choice(["never", "madvise", "always"]),
                            thp_cow=rnd.choice(["split", "copy-huge"]))
        self.memory = rnd.choice(MEMORIES)
        self.k = spawnfd.Kernel(self.memory, **self.options)
        self.procs: list[spawnfd.Process] = [self.k.init]
        self.builders: list[Builder] = []
        self.addrs: list[int] = [0x10000000, 1 << 21, 0x7F0000000000]
        self.maps: list[tuple[int, int]] = []  # (start, length) of mmaps that succeeded
        self.fds: list[int] = [0, 1, 2, 3]
        self.pipe_fds: set[int] = set()  # a huge read of anything else may be gigabytes of
                                         # real bytes (/dev/zero, a sparse 1 TiB file)
        self.files: list[int] = []  # init's descriptors of tmpfs files, opened O_RDWR
        k = self.k.init
        for name in ("/tmp/a", "/tmp/b"):
            fd = k.open(name, os.O_RDWR | os.O_CREAT, 0o644)
            k.ftruncate(fd, rnd.choice([PAGE, 1 << 20, 4 << 20, 1 << 40, 0]))
            self.files.append(fd)
            self.fds.append(fd)
        self.calls = 0
        self.log: list[str] = []

    # ---- values ----
    def num(self) -> int:
        r = self.rnd.random()
        if r < 0.35:
            return self.rnd.choice(HOSTILE)
        if r < 0.8:
            n = self.rnd.randrange(0, 80) * PAGE
            return n + (self.rnd.choice([0, 0, 0, 1, PAGE - 1]) if self.rnd.random() < 0.2 else 0)
        if r < 0.9:
            return self.rnd.choice([1 << 21, 2 << 21, 4 << 21, 1 << 30])
        return self.rnd.getrandbits(self.rnd.choice([16, 32, 48, 64]))

    def length(self) -> int:
        r = self.rnd.random()
        if r < 0.55:
            return self.rnd.randrange(1, 64) * PAGE
        if r < 0.65:
            return self.rnd.randrange(1, 5) << 21
        return self.num()

    def addr(self) -> int:
        r = self.rnd.random()
        if self.maps and r < 0.75:  # in or next to something mapped
            start, n = self.rnd.choice(self.maps)
            return start + self.rnd.randrange(-1, n // PAGE + 2) * PAGE
        if r < 0.85:
            base = self.rnd.choice(self.addrs)
            return base + self.rnd.randrange(-4, 600) * PAGE * (1 if self.rnd.random() < 0.9 else 512)
        return self.num()

    def range(self) -> tuple[int, int]:
        """An (addr, length): inside something mapped most of the time, else anything."""
        if self.maps and self.rnd.random() < 0.6:
            start, n = self.rnd.choice(self.maps)
            pages = max(n // PAGE, 1)
            first = self.rnd.randrange(0, pages)
            return start + first * PAGE, self.rnd.randrange(1, pages - first + 1) * PAGE
        return self.addr(), self.length()

    def small_int(self, choices: list[int]) -> int:
        return self.rnd.choice(choices) if self.rnd.random() < 0.85 else self.rnd.choice(HOSTILE_INT)

    def fd(self) -> int:
        return self.rnd.choice(self.fds) if self.rnd.random() < 0.85 else self.rnd.choice(HOSTILE_INT)

    def prot(self) -> int:
        return self.small_int([0, 1, 3, 3, 5, 7, 4, 8, 0x1000000, 0x2000000])

    def map_flags(self) -> int:
        t = self.rnd.choice([mmap.MAP_PRIVATE, mmap.MAP_PRIVATE, mmap.MAP_SHARED,
                             MAP_SHARED_VALIDATE, spawnfd.MAP_DROPPABLE, 0])
        f = t
        for bit, p in ((mmap.MAP_ANONYMOUS, 0.6), (spawnfd.MAP_FIXED, 0.25),
                       (spawnfd.MAP_FIXED_NOREPLACE, 0.1), (MAP_NORESERVE, 0.2),
                       (mmap.MAP_POPULATE, 0.1), (MAP_GROWSDOWN, 0.05), (0x80000, 0.03)):
            if self.rnd.random() < p:
                f |= bit
        return f if self.rnd.random() < 0.95 else self.rnd.choice(HOSTILE_INT)

    def proc(self) -> spawnfd.Process:
        return self.procs[0] if self.rnd.random() < 0.4 else self.rnd.choice(self.procs)

    def path(self) -> Any:
        return self.rnd.choice(PATHS)

    def data(self) -> bytes:
        n = self.rnd.choice([0, 1, 3, 100, PAGE, PAGE + 1, 3 * PAGE])
        return bytes([self.rnd.randrange(256)]) * n

    # ---- one call ----
    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        self.calls += 1
        self.log.append(f"{what}{args!r}{kw!r}"[:300])
        try:
            result = fn(*args, **kw)
        except spawnfd.KernelPanic as e:
            raise Bug(f"KernelPanic in {what}: {e}") from e
        except OSError as e:
            if e.errno is None:
                raise Bug(f"OSError without errno in {what}: {e!r}") from e
            result = None
        except (ValueError, TypeError):
            result = None
        except MemoryError as e:
            raise Bug(f"host MemoryError in {what}") from e
        except Exception as e:
            raise Bug(f"{type(e).__name__} in {what}: {e}") from e
        try:
            self.k.check()
        except Exception as e:
            raise Bug(f"check() after {what}: {e}") from e
        return result

    # ---- the operations ----
    def op_mmap(self) -> None:
        p = self.proc()
        n = self.length()
        if self.rnd.random() < 0.5:  # a sane mapping, so the rest has memory to work on
            shared = self.rnd.random() < 0.4 and self.files
            flags = (mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if self.rnd.random() < 0.3:
                flags |= spawnfd.MAP_FIXED
            a = self.call("mmap", p.mm.mmap, n, self.rnd.choice([3, 3, 1, 0, 5]), flags,
                          self.rnd.choice(self.files) if shared else -1,
                          self.rnd.choice([0, 0, PAGE, 1 << 21]) if shared else 0,
                          addr=self.addr() if self.rnd.random() < 0.5 else 0)
        else:
            a = self.call("mmap", p.mm.mmap, n, self.prot(), self.map_flags(), self.fd(),
                          self.rnd.choice([0, 0, PAGE, 1, 2**63, 2**64 - PAGE, 1 << 40]),
                          addr=self.addr() if self.rnd.random() < 0.7 else 0)
        if a is not None:
            self.addrs.append(a)
            self.maps.append((a, n))

    def op_munmap(self) -> None:
        p = self.proc()
        self.call("munmap", p.mm.munmap, *self.range())

    def op_mprotect(self) -> None:
        p = self.proc()
        self.call("mprotect", p.mm.mprotect, *self.range(), self.prot())

    def op_madvise(self) -> None:
        p = self.proc()
        self.call("madvise", p.mm.madvise, *self.range(), self.rnd.choice(ADVICES))

    def op_mremap(self) -> None:
        p = self.proc()
        a, n = self.range()
        old = self.rnd.choice([n, n, 0, PAGE, self.length()])
        new = self.rnd.choice([n, 2 * n, n // 2 + PAGE, PAGE, 1 << 21, self.length()])
        flags = self.rnd.choice([0, 1, 1, 3, 3, 5, 7, 2, 8, self.rnd.randrange(-1, 16)])
        r = self.call("mremap", p.mm.mremap, a, old, new, flags,
                      self.addr() if flags & 6 or self.rnd.random() < 0.2 else 0)
        if r is not None:
            self.addrs.append(r)
            self.maps.append((r, max(PAGE, new & ~(PAGE - 1))))

    def op_populate(self) -> None:
        p = self.proc()
        write = self.rnd.random() < 0.5
        stamp = self.rnd.choice([None, 0x1111, 2**64 - 1, -1, 2**64]) if write else None
        self.call("populate", p.mm.populate, *self.range(), write, stamp=stamp)

    def op_mem(self) -> None:
        p = self.proc()
        if self.rnd.random() < 0.5:
            a, n = self.range()
            self.call("mm.read", p.mm.read, a, min(n, 1 << 22) if self.rnd.random() < 0.9 else n)
        else:
            self.call("mm.write", p.mm.write, self.addr(), self.data())

    def op_touch(self) -> None:
        p = self.proc()
        self.call("touch", p.mm.touch, *self.range(),
                  every=self.rnd.choice([1, 2, 512, 0, 2**52, 2**64 - 1, -1]),
                  write=self.rnd.random() < 0.5)

    def op_fork(self) -> None:
        p = self.proc()
        if self.rnd.random() < 0.15:
            c = self.call("vfork", p.vfork)
        else:
            c = self.call("fork", p.fork, self.rnd.choice([None, *FORK_MODES]))
        if c is not None:
            self.procs.append(c)

    def op_exit(self) -> None:
        if len(self.procs) > 1:
            p = self.rnd.choice(self.procs[1:])
            self.call("exit", p.exit, self.small_int([0, 1, 255]))

    def op_wait(self) -> None:
        p = self.proc()
        self.call("wait_pid", p.wait_pid, self.small_int([-1, -1, 2, 3]), nohang=True)

    def op_open(self) -> None:
        p = self.proc()
        flags = self.rnd.choice([os.O_RDONLY, os.O_RDWR | os.O_CREAT, os.O_WRONLY,
                                 os.O_RDWR | os.O_CREAT | os.O_TRUNC, os.O_PATH,
                                 os.O_RDWR | os.O_CREAT | os.O_EXCL, os.O_DIRECTORY])
        path = self.path()
        fd = self.call("open", p.open, path, self.small_int([flags]),
                       self.small_int([0o644, 0o755, 0]))
        if fd is not None:
            self.fds.append(fd)


    def op_file(self) -> None:
        p = self.proc()
        choice = self.rnd.randrange(6)
        fd = self.fd()
        n = self.length() if fd in self.pipe_fds else min(self.length(), 1 << 22)
        if choice == 0:
            self.call("pread", p.pread, fd, n, self.num())
        elif choice == 1:
            self.call("read", p.read, fd, n)
        elif choice == 2:
            self.call("write", p.write, fd, self.data())
        elif choice == 3:
            self.call("lseek", p.lseek, fd, self.num(), self.small_int([0, 1, 2, 3, 4]))
        elif choice == 4:
            self.call("ftruncate", p.ftruncate, fd, self.num())
        else:
            self.call("fstat", p.fstat, fd)

    def op_fds(self) -> None:
        p = self.proc()
        choice = self.rnd.randrange(5)
        if choice == 0:
            self.call("close", p.close, self.fd())
        elif choice == 1:
            self.call("close_range", p.close_range, self.small_int([0, 3, 5, 2**31]),
                      self.small_int([2**32 - 1, 4, 10, 2**31]))
        elif choice == 2:
            fd = self.call("dup2", p.dup2, self.fd(), self.small_int([0, 5, 9, 100, 1023]),
                           self.rnd.random() < 0.5)
            if fd is not None:
                self.fds.append(fd)
        elif choice == 3:
            fds = self.call("pipe", p.pipe, self.small_int([0, os.O_CLOEXEC, os.O_NONBLOCK]))
            if fds is not None:
                self.fds += list(fds)
                self.pipe_fds.update(fds)
        else:
            fd = self.call("dup", p.dup, self.fd())
            if fd is not None:
                self.fds.append(fd)

    def op_create(self) -> None:
        p = self.proc()
        b = self.call("process_create", p.process_create)
        if b is not None:
            self.builders.append(b)

    def op_builder(self) -> None:
        if not self.builders:
            return self.op_create()
        b = self.rnd.choice(self.builders)
        choice = self.rnd.randrange(10)
        if choice == 0:
            a = self.call("b.mmap", b.mmap, self.length(), self.prot(), self.map_flags(),
                          self.fd(), self.rnd.choice([0, PAGE, 1, 2**63]), addr=self.addr())
            if a is not None:
                self.addrs.append(a)
                self.maps.append((a, PAGE))
        elif choice == 1:
            self.call("b.munmap", b.munmap, *self.range())
        elif choice == 2:
            self.call("b.mprotect", b.mprotect, *self.range(), self.prot())
        elif choice == 3:
            self.call("b.write", b.write, self.addr(), self.data())
        elif choice == 4:
            a, n = self.range()
            self.call("b.read", b.read, a, min(n, 1 << 22))
        elif choice in (5, 6):
            self.call("b.map_cow", b.map_cow, self.proc(), *self.range())
        elif choice == 7:
            step = self.rnd.randrange(4)
            if step == 0:
                self.call("b.install_fd", b.install_fd, self.small_int([-1, 0, 1, 7]), self.fd())
            elif step == 1:
                self.call("b.open", b.open, self.path(), os.O_RDWR | os.O_CREAT, 0o644,
                          fd=self.small_int([-1, 0, 9]))
            elif step == 2:
                self.call("b.chdir", b.chdir, self.path())
            else:
                self.call("b.set_credentials", b.set_credentials,
                          uid=self.small_int([0, 1000, 2**32 - 1, -1]))
        elif choice == 8:
            self.call("b.launch", b.launch)
        else:
            self.call("b.abort", b.abort)

    def op_inject(self) -> None:
        """Fail the n-th frame allocation from now: ENOMEM in the middle of a later call."""
        self.call("fail_nth_allocation", self.k.fail_nth_allocation,
                  self.rnd.choice([0, 1, 2, 3, 5, 10, 50, 2**64 - 1, -1]))

    def op_execve(self) -> None:
        p = self.proc()
        self.call("execve", p.execve, self.rnd.choice(["/bin/true", "/tmp/a", "/bin/sh", "",
                                                        "/tmp", "/nonexistent"]),
                  self.rnd.choice([["x"], [], ["x"] * 1000, ["x" * 200000]]),
                  self.rnd.choice([None, {"A": "1"}, ["B=2"], ["C" * 100]]))

    OPS = [("op_inject", 1), ("op_execve", 1), ("op_mmap", 6), ("op_munmap", 2), ("op_mprotect", 2), ("op_madvise", 2),
           ("op_mremap", 3),
           ("op_populate", 3), ("op_mem", 3), ("op_touch", 1), ("op_fork", 2),
           ("op_exit", 1), ("op_wait", 1), ("op_open", 2), ("op_file", 3), ("op_fds", 2),
           ("op_create", 1), ("op_builder", 3)]

    def step(self) -> None:
        names, weights = zip(*self.OPS)
        getattr(self, self.rnd.choices(names, weights)[0])()

    def close(self) -> None:
        for b in self.builders:
            try:
                b.abort()
            except OK_EXCEPTIONS:
                pass
        self.k.check()
        self.k.close()


def run_seed(seed: int, steps: int) -> int:
    """Run one sequence; returns the number of calls made. Raises Bug with the call log."""
    w = World(random.Random(seed))
    try:
        for _ in range(steps):
            w.step()
        w.close()
    except Bug as e:
        tail = "\n  ".join(w.log[-12:])
        raise Bug(f"seed {seed} ({w.memory}, {w.options}): {e}\n  last calls:\n  {tail}"
                  ) from e
    return w.calls


__all__ = ["Bug", "run_seed", "errno"]
