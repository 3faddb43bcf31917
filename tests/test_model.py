"""Random sequences of memory calls against a small pure-Python model of what they must do.

The model is a dict ``page -> Page`` (protection, backing, fork flags, private bytes) per
process (:class:`Space`) plus the bytes of every shared object (:class:`Shared`): the tmpfs file
(what ``pread`` returns, and what shared mappings and not-yet-copied private mappings show) and
each shared anonymous region. Every read must equal the model byte for byte; every access the
model says faults must raise ``EFAULT``; every call the model says is invalid must raise its
errno; after every step the kernel recomputes its truth (``check()``) and ``maps()`` must equal
the model's mappings, merged as Linux merges them.

``mprotect``, ``madvise`` and ``populate`` go page by page as Linux goes vma by vma: they stop
at the first page they refuse (a hole, ``EACCES``, ``EINVAL``, past the end of the file) and
what came before keeps the change (``madvise`` skips holes and ends in ``ENOMEM``).

maps() is compared with adjacent lines that look alike coalesced, on both sides: which
anonymous vmas merge depends on their anon_vmas and commit charge, which
``test_vma_merge_linux.py`` compares with the real kernel; this model checks what maps shows.

This machine drives one process; ``test_model_fork.py`` extends it to a tree of processes
(its rules pick the process through :meth:`MemoryModel.pick`). :class:`ThpMemoryModel` runs it
on kernels with transparent huge pages (``thp``/``thp_cow`` drawn), mapping and aiming at whole
2 MiB chunks so that huge pages appear and get split, protected, advised and unmapped: they
must change no byte and no line of maps(). ``MADV_HUGEPAGE``/``MADV_NOHUGEPAGE`` are flags the
model tracks (they keep vmas apart).
"""

from __future__ import annotations

import dataclasses
import errno
import mmap
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import spawnfd

from .helpers import examples

T = TypeVar("T")
PAGE = 4096
WINDOW = 0x20000000 // PAGE          # first page of the window where mappings collide
WINDOW_PAGES = 64
CHUNK = 512                          # pages per 2 MiB: one last-level table, one huge page
MMAP_BASE = 0x7FFFF7FFF000 // PAGE   # top-down placement starts below this page
MMAP_MIN = 0x10000 // PAGE
FILE = "/tmp/model"
FILE_PAGES = 6                       # pages that exist in the file (the last one partly)
FILE_SIZE = FILE_PAGES * PAGE - 1000
R, W, X = mmap.PROT_READ, mmap.PROT_WRITE, mmap.PROT_EXEC
PROTS = [0, R, R | W, W, X, R | X, R | W | X]
PROTS_WEIGHTED = PROTS + [R | W] * 4          # mostly writable, so writes have somewhere to go
ADVICE = {"DONTNEED": mmap.MADV_DONTNEED, "DONTFORK": mmap.MADV_DONTFORK,
          "DOFORK": mmap.MADV_DOFORK, "WIPEONFORK": spawnfd.MADV_WIPEONFORK,
          "KEEPONFORK": spawnfd.MADV_KEEPONFORK, "HUGEPAGE": mmap.MADV_HUGEPAGE,
          "NOHUGEPAGE": mmap.MADV_NOHUGEPAGE}
KINDS = ["anon-private", "anon-shared", "file-private", "file-shared", "file-shared-rdonly"]
KINDS_WEIGHTED = KINDS + ["anon-private", "file-private", "file-private"]
ZERO = bytes(PAGE)
MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+ *(.*)$")


@dataclasses.dataclass
class Page:
    """One mapped page: what its vma says, and its private bytes (None: not private yet)."""

    prot: int
    shared: bool
    obj: int              # -1 private anonymous, 0 the file, > 0 a shared anonymous region
    idx: int              # page index inside obj (file offset / PAGE); 0 for private anon
    maywrite: bool
    dontfork: bool = False
    wipe: bool = False
    data: bytearray | None = None
    account: bool = False  # VM_ACCOUNT: private and writable once; never dropped
    thp: str = ""          # the last of MADV_HUGEPAGE / MADV_NOHUGEPAGE given, if any

    def __post_init__(self) -> None:
        self.charge()

    def charge(self) -> None:
        """Linux charges private memory when it becomes writable (accountable_mapping(),
        mprotect_fixup()) and keeps the charge when write goes away again."""
        if self.prot & W and not self.shared:
            self.account = True

    def vma_key(self) -> tuple[object, ...]:
        """What must be equal for two adjacent pages to be one vma."""
        return (self.prot, self.shared, self.obj, self.maywrite, self.dontfork, self.wipe,
                self.account, self.thp)

    def forked(self) -> Page | None:
        """The child's page after fork: none under DONTFORK; WIPEONFORK (private anonymous
        only) starts empty and keeps the flag; private bytes are the child's own copy."""
        if self.dontfork:
            return None
        child = Page.__new__(Page)     # dataclasses.replace(self, data=...), without its
        child.__dict__.update(self.__dict__)   # per-field introspection (hot: every fork)
        child.data = None if self.wipe or self.data is None else bytearray(self.data)
        child.__post_init__()
        return child


def _perms(prot: int, shared: bool) -> str:
    return ("r" if prot & R else "-") + ("w" if prot & W else "-") + \
        ("x" if prot & X else "-") + ("s" if shared else "p")


class Shared:
    """What every process sees alike: the file's bytes (its page cache: FILE_PAGES pages;
    bytes past FILE_SIZE only through mappings) and each shared anonymous region's pages."""

    def __init__(self, content: bytes) -> None:
        self.file = bytearray(content + bytes(FILE_PAGES * PAGE - len(content)))
        self.shm: dict[int, dict[int, bytearray]] = {}
        self.next_obj = 1

    def new_region(self) -> int:
        obj, self.next_obj = self.next_obj, self.next_obj + 1
        self.shm[obj] = {}
        return obj


class Space:
    """One process as the model sees it: its handle, its two descriptors of the file (read-write
    and read-only) and its mapped pages."""

    def __init__(self, proc: spawnfd.Process, shared: Shared, rw: int, ro: int,
                 pages: dict[int, Page] | None = None) -> None:
        self.p = proc
        self.mm = proc.mm
        self.shared = shared
        self.rw, self.ro = rw, ro
        self.pages: dict[int, Page] = {} if pages is None else pages

    def forked(self, child: spawnfd.Process) -> Space:
        """The child's model: the same descriptors, a copy of every page fork keeps."""
        pages = {pg: c for pg, m in self.pages.items() if (c := m.forked()) is not None}
        return Space(child, self.shared, self.rw, self.ro, pages)

    def content(self, pg: int) -> bytes:
        """The bytes page pg must read as (the caller checked that it is readable)."""
        m = self.pages[pg]
        if m.obj < 0:
            return bytes(m.data) if m.data is not None else ZERO
        if m.data is not None:
            return bytes(m.data)
        return bytes(self.backing(m))

    def backing(self, m: Page) -> bytearray | memoryview:
        """The shared bytes behind a file or shared anonymous page (writable in place)."""
        if m.obj == 0:
            return memoryview(self.shared.file)[m.idx * PAGE:(m.idx + 1) * PAGE]
        return self.shared.shm[m.obj].setdefault(m.idx, bytearray(PAGE))

    def denied(self, pg: int, write: bool) -> bool:
        """Whether pg is unmapped or its protection forbids the access."""
        m = self.pages.get(pg)
        if m is None:
            return True
        if write:
            return not m.prot & W
        return not m.prot & (R | W | X)   # x86: w or x implies readable

    def past_eof(self, pg: int) -> bool:
        """Whether pg maps a page of the file that does not exist (SIGBUS)."""
        m = self.pages.get(pg)
        return m is not None and m.obj == 0 and m.idx >= FILE_PAGES

    def fault(self, pg: int, write: bool) -> bool:
        """Whether an access to pg faults: unmapped, against protection, or past EOF."""
        return self.denied(pg, write) or self.past_eof(pg)

    def store(self, pg: int, off: int, data: bytes) -> None:
        """A write the model allows: private pages get (or keep) their own copy."""
        m = self.pages[pg]
        if m.shared:
            self.backing(m)[off:off + len(data)] = data
            return
        if m.data is None:
            m.data = bytearray(self.content(pg))
        m.data[off:off + len(data)] = data

    def free(self, first: int, n: int) -> bool:
        return all(pg not in self.pages for pg in range(first, first + n))

    def topdown(self, n: int, align: int = 1) -> int:
        """Where a non-fixed mapping of n pages goes when its hint is taken (Linux
        unmapped_area_topdown below mmap_base), its first page a multiple of align."""
        end = MMAP_BASE
        for pg in sorted(self.pages, reverse=True):
            if pg >= end:
                continue
            if (end - n) // align * align >= pg + 1:
                return (end - n) // align * align
            end = pg
        assert (end - n) // align * align >= MMAP_MIN
        return (end - n) // align * align

    def check_pages(self, pages: Iterable[int]) -> None:
        """Each page reads as the model says, or faults (EFAULT) where the model says so.
        Consecutive readable pages are read in one call (:meth:`check_readable`)."""
        run: list[int] = []
        for pg in pages:
            if self.fault(pg, False):
                self.check_readable(run)
                run = []
                try:
                    self.mm.read(pg * PAGE, 1)
                except OSError as e:
                    assert e.errno == errno.EFAULT, (hex(pg * PAGE), e)
                else:
                    raise AssertionError(f"{pg * PAGE:#x}: read, want EFAULT")
            else:
                if run and run[-1] + 1 != pg:
                    self.check_readable(run)
                    run = []
                run.append(pg)
        self.check_readable(run)

    def check_readable(self, run: list[int]) -> None:
        """Consecutive pages the model says are readable read as the model says: one read of
        the whole run (the same bytes as a read per page, one C call instead of one per page);
        a mismatch names its first page."""
        if not run:
            return
        got = self.mm.read(run[0] * PAGE, len(run) * PAGE)
        want = b"".join([self.content(pg) for pg in run])
        if got != want:
            for i, pg in enumerate(run):
                assert got[i * PAGE:(i + 1) * PAGE] == want[i * PAGE:(i + 1) * PAGE], \
                    hex(pg * PAGE)

    def expected_maps(self) -> list[tuple[int, int, str, int, str]]:
        """maps() as the model says: one line per run of compatible pages (Linux vma_merge)."""
        want: list[tuple[int, int, str, int, str]] = []
        first = end = idx = 0      # the current run: its pages, its first page's file index,
        key: tuple[object, ...] = ()   # its vma_key and its first page (locals: a hot loop)
        head: Page | None = None
        for pg, m in sorted(self.pages.items()):
            k = m.vma_key()
            if pg == end and k == key and (m.obj < 0 or idx + (pg - first) == m.idx):
                end = pg + 1
                continue
            if head is not None:
                want.append(_line([first, end, head.prot, head.shared, head.obj, key, idx]))
            first, end, key, idx, head = pg, pg + 1, k, m.idx, m
        if head is not None:
            want.append(_line([first, end, head.prot, head.shared, head.obj, key, idx]))
        return want

    def maps(self) -> list[tuple[int, int, str, int, str]]:
        """maps() as the kernel says, parsed."""
        got = []
        for line in self.mm.maps().splitlines():
            mt = MAPS_RE.match(line)
            assert mt, line
            got.append((int(mt[1], 16), int(mt[2], 16), mt[3], int(mt[4], 16), mt[5]))
        return got


def coalesce(lines: list[tuple[int, int, str, int, str]]) -> list[tuple[int, int, str, int, str]]:
    """Adjacent lines with the same permissions and name at contiguous offsets as one."""
    out: list[tuple[int, int, str, int, str]] = []
    for lo, hi, perms, off, name in lines:
        if out:
            plo, phi, pperms, poff, pname = out[-1]
            if phi == lo and pperms == perms and pname == name and (
                    not name or poff + (phi - plo) == off):
                out[-1] = (plo, hi, perms, poff, name)
                continue
        out.append((lo, hi, perms, off, name))
    return out


def _line(run: list[Any]) -> tuple[int, int, str, int, str]:
    first, end, prot, shared, obj, _, idx = run
    name = "" if obj < 0 else FILE if obj == 0 else "/dev/zero (deleted)"
    return (first * PAGE, end * PAGE, _perms(prot, shared), idx * PAGE if obj >= 0 else 0, name)


class MemoryModel(RuleBasedStateMachine):
    """One process, one tmpfs file, a 64-page window; the model predicts every result.

    Every rule acts on the process :meth:`pick` returns and checks what :meth:`spaces` holds;
    a subclass with more processes overrides those two (and :meth:`draw_at`, where mappings go).
    """

    k: spawnfd.Kernel | None = None
    thp = "never"

    def boot(self, memory: str = "64M", fork_mode: str = "copy", thp: str = "never",
             thp_cow: str = "split") -> Space:
        """The kernel, the file (written through init) and init's model."""
        self.k = spawnfd.Kernel(memory, fork_mode=fork_mode, thp=thp, thp_cow=thp_cow)
        self.thp = thp
        p = self.k.init
        rw = p.open(FILE, os.O_RDWR | os.O_CREAT, 0o600)
        ro = p.open(FILE, os.O_RDONLY)
        content = bytes((i * 31 + i // PAGE * 7 + 3) & 0xFF for i in range(FILE_SIZE))
        assert p.write(rw, content) == FILE_SIZE
        self.shared = Shared(content)
        self.s = Space(p, self.shared, rw, ro)
        return self.s

    def teardown(self) -> None:
        if self.k is not None:
            self.k.close()

    # ---- where the rules act ----

    def pick(self, data: st.DataObject) -> Space:
        """The process the next call is made by."""
        return self.s

    def spaces(self) -> list[Space]:
        """Every live process."""
        return [self.s]

    def draw_at(self, data: st.DataObject, npages: int) -> tuple[int, int]:
        """Where a new mapping of npages goes (the first page), and its size."""
        return data.draw(st.integers(WINDOW, WINDOW + WINDOW_PAGES - 1), label="at"), npages

    def windows(self) -> list[range]:
        """The pages where mappings are made."""
        return [range(WINDOW, WINDOW + WINDOW_PAGES)]

    # ---- the model's helpers ----

    def candidates(self, s: Space) -> list[int]:
        """Pages worth aiming at: the window, every mapped page, and the pages around them."""
        out = {pg for w in self.windows() for pg in range(w.start - 1, w.stop + 1)}
        for pg in s.pages:
            out.update((pg - 1, pg, pg + 1))
        return sorted(out)

    def draw_page(self, data: st.DataObject, s: Space, writing: bool = False) -> int:
        """Mostly a mapped page (calls that succeed), often an interesting one (writable when
        writing; else one whose bytes a mistake would show: a private copy or a file page),
        else any page near the mappings."""
        mapped = sorted(s.pages)
        if writing:
            good = [pg for pg in mapped if not s.fault(pg, True)]
        else:
            good = [pg for pg in mapped if s.pages[pg].data is not None or
                    (s.pages[pg].obj == 0 and not s.fault(pg, False))]
        aim = data.draw(st.integers(0, 5), label="aim")
        if good and aim >= 4:
            return data.draw(st.sampled_from(good), label="page")
        if mapped and aim > 0:
            return data.draw(st.sampled_from(mapped), label="page")
        return data.draw(st.sampled_from(self.candidates(s)), label="page")

    def draw_range(self, data: st.DataObject, s: Space) -> tuple[int, int]:
        """A start page and a length: often all mapped, sometimes running over holes."""
        start = self.draw_page(data, s)
        run = 0
        while start + run in s.pages:
            run += 1
        sizes = st.integers(1, 12)
        if run:
            sizes = st.one_of(st.integers(1, run), sizes)
        return start, data.draw(sizes, label="n")

    def verify(self, data: st.DataObject, s: Space, first: int, n: int) -> None:
        """Sometimes (so that unfaulted states survive too) read back the pages around a
        range just changed, as the model says they read."""
        if not data.draw(st.booleans(), label="verify"):
            return
        for pg in range(first - 1, first + n + 1):
            if not s.fault(pg, False):
                assert s.mm.read(pg * PAGE, PAGE) == s.content(pg), hex(pg * PAGE)

    def file_write(self, s: Space, off: int, payload: bytes) -> None:
        """write(2) at off, cut to the file's size (the model's file never grows)."""
        payload = payload[:FILE_SIZE - off]
        assert s.p.lseek(s.rw, off, os.SEEK_SET) == off
        assert s.p.write(s.rw, payload) == len(payload)
        self.shared.file[off:off + len(payload)] = payload

    def expect(self, err: int | None, fn: Callable[[], T]) -> T | None:
        """Run fn; it must succeed when err is None, else raise exactly that errno."""
        caller = sys._getframe(1).f_code.co_name
        event(f"{caller}: {errno.errorcode[err] if err else 'ok'}")
        if err is None:
            return fn()
        try:
            result = fn()
        except OSError as e:
            want = type(OSError(err, "x"))
            assert (e.errno, type(e)) == (err, want), (
                f"got {errno.errorcode.get(e.errno or 0)}, want {errno.errorcode[err]}")
            return None
        raise AssertionError(f"expected {errno.errorcode[err]}, got success: {result!r}")

    # ---- the rules ----

    @initialize(data=st.data(), count=st.integers(2, 6))
    def fill_window(self, data: st.DataObject, count: int) -> None:
        """Start with a few mappings in the window, so that later calls collide."""
        self.boot()
        self.fill(data, count)

    def fill(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.mmap(data=data, kind=data.draw(st.sampled_from(KINDS_WEIGHTED)),
                      prot=data.draw(st.sampled_from(PROTS_WEIGHTED)), placement="fixed",
                      npages=data.draw(st.integers(1, 16)),
                      file_page=data.draw(st.integers(0, FILE_PAGES + 2)),
                      populate=data.draw(st.sampled_from([False, False, False, True])))

    @rule(data=st.data(), kind=st.sampled_from(KINDS_WEIGHTED),
          prot=st.sampled_from(PROTS_WEIGHTED),
          placement=st.sampled_from(["fixed", "noreplace", "hint"]),
          npages=st.integers(1, 16),
          file_page=st.one_of(st.integers(0, FILE_PAGES - 2), st.integers(0, FILE_PAGES + 2)),
          populate=st.sampled_from([False, False, False, True]))
    def mmap(self, data: st.DataObject, kind: str, prot: int, placement: str, npages: int,
             file_page: int, populate: bool) -> None:
        s = self.pick(data)
        first, npages = self.draw_at(data, npages)
        shared = kind.endswith(("shared", "rdonly"))
        flags = (mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE) | \
            {"fixed": spawnfd.MAP_FIXED, "noreplace": spawnfd.MAP_FIXED_NOREPLACE,
             "hint": 0}[placement] | (mmap.MAP_POPULATE if populate else 0)
        fd, offset, maywrite = -1, 0, True
        if kind.startswith("anon"):
            flags |= mmap.MAP_ANONYMOUS
        else:
            fd = s.ro if kind == "file-shared-rdonly" else s.rw
            offset = file_page * PAGE
            maywrite = kind != "file-shared-rdonly"
        err = None   # Linux do_mmap(): the placement (EEXIST) before the file's checks
        if placement == "noreplace" and not s.free(first, npages):
            err = errno.EEXIST
        elif not maywrite and prot & W:
            err = errno.EACCES
        addr = self.expect(err, lambda: s.mm.mmap(npages * PAGE, prot, flags, fd, offset,
                                                   first * PAGE))
        if err is not None:
            return
        if placement == "hint" and not s.free(first, npages):
            # a big private anonymous mapping goes on a 2 MiB boundary when THP is on
            big = kind == "anon-private" and npages >= CHUNK and self.thp != "never"
            first = s.topdown(npages, CHUNK if big else 1)
        assert addr == first * PAGE
        for pg in range(first, first + npages):
            s.pages.pop(pg, None)
        if kind == "anon-shared":
            obj = self.shared.new_region()
        for i, pg in enumerate(range(first, first + npages)):
            if kind == "anon-private":
                s.pages[pg] = Page(prot, False, -1, 0, True)
            elif kind == "anon-shared":
                s.pages[pg] = Page(prot, True, obj, i, True)
            else:
                s.pages[pg] = Page(prot, shared, 0, file_page + i, maywrite)
        if populate and kind == "file-private" and prot & W:
            # MAP_POPULATE write-faults a private writable mapping: the pages are copied now,
            # up to the first page past the end of the file.
            for pg in range(first, first + npages):
                if s.fault(pg, True):
                    break
                s.store(pg, 0, b"")
        self.verify(data, s, first, npages)

    @rule(data=st.data())
    def munmap(self, data: st.DataObject) -> None:
        s = self.pick(data)
        start, n = self.draw_range(data, s)
        s.mm.munmap(start * PAGE, n * PAGE)
        for pg in range(start, start + n):
            s.pages.pop(pg, None)

    @rule(data=st.data(), prot=st.sampled_from(PROTS_WEIGHTED))
    def mprotect(self, data: st.DataObject, prot: int) -> None:
        s = self.pick(data)
        start, n = self.draw_range(data, s)
        rng = range(start, start + n)
        err = None
        for pg in rng:  # Linux goes vma by vma and stops at the first it refuses
            if pg not in s.pages:
                err = errno.ENOMEM
            elif prot & W and not s.pages[pg].maywrite:
                err = errno.EACCES
            if err:
                break
            s.pages[pg].prot = prot
            s.pages[pg].charge()
        self.expect(err, lambda: s.mm.mprotect(start * PAGE, n * PAGE, prot))
        self.verify(data, s, start, n)

    @rule(data=st.data(), advice=st.sampled_from(sorted(ADVICE) + ["DONTNEED"] * 3))
    def madvise(self, data: st.DataObject, advice: str) -> None:
        s = self.pick(data)
        start, n = self.draw_range(data, s)
        mapped = [s.pages[pg] for pg in range(start, start + n) if pg in s.pages]
        err = None
        if advice == "WIPEONFORK" and any(m.obj >= 0 for m in mapped):
            err = errno.EINVAL   # after marking the mapped pages before the refused one
            mapped = mapped[:next(i for i, m in enumerate(mapped) if m.obj >= 0)]
        elif len(mapped) < n:
            err = errno.ENOMEM   # after applying the advice to what is mapped, as Linux does
        self.expect(err, lambda: s.mm.madvise(start * PAGE, n * PAGE, ADVICE[advice]))
        for m in mapped:
            if advice == "DONTNEED" and m.data is not None and m.obj == 0:
                event("madvise: DONTNEED drops a private copy of a file page")
            if advice == "DONTNEED":
                m.data = None    # private: zero or the file again; shared: unchanged
            elif advice in ("DONTFORK", "DOFORK"):
                m.dontfork = advice == "DONTFORK"
            elif advice in ("HUGEPAGE", "NOHUGEPAGE"):
                m.thp = advice   # a flag only: huge pages already there stay
            else:
                m.wipe = advice == "WIPEONFORK"
        self.verify(data, s, start, n)

    @rule(data=st.data(), mode=st.sampled_from(["read", "write", "stamp"] * 3 + ["read-stamp"]),
          stamp=st.integers(0, 2**64 - 1))
    def populate(self, data: st.DataObject, mode: str, stamp: int | None) -> None:
        s = self.pick(data)
        write = mode in ("write", "stamp")
        if mode in ("read", "write"):
            stamp = None
        start, n = self.draw_range(data, s)
        rng = range(start, start + n)
        if stamp is not None and not write:
            self.expect(errno.EINVAL, lambda: s.mm.populate(start * PAGE, n * PAGE, False,
                                                            stamp))
            return
        # Page by page: a hole is ENOMEM, a page without PROT_READ (read) or PROT_WRITE
        # (write) EINVAL, a page past the end of the file SIGBUS (EFAULT); the pages before
        # the failure stay populated (and stamped).
        err, eof = None, None
        for pg in rng:
            if pg not in s.pages:
                err = errno.ENOMEM
            elif not s.pages[pg].prot & (W if write else R):
                err = errno.EINVAL
            elif s.past_eof(pg):
                err = errno.EFAULT
            if err:
                eof = pg
                break
        self.expect(err, lambda: s.mm.populate(start * PAGE, n * PAGE, write, stamp))
        for pg in rng:
            if pg == eof:
                break
            if write and not s.pages[pg].shared:
                s.store(pg, 0, b"")              # a private copy, taken now
            if stamp is not None:
                s.store(pg, 0, stamp.to_bytes(8, "little") * (PAGE // 8))
        private = [pg for pg in rng if pg in s.pages and s.pages[pg].obj == 0 and not s.pages[pg].shared
                   and not s.past_eof(pg)]
        if err is None and write and private and data.draw(st.booleans(), label="then change the file"):
            # Was the copy really taken now? The file changes under it; the page must not.
            pg = data.draw(st.sampled_from(private), label="file page")
            self.file_write(s, s.pages[pg].idx * PAGE, b"\xa5" * 64)
            assert s.mm.read(pg * PAGE, PAGE) == s.content(pg)
        self.verify(data, s, start, n)

    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=300))
    def write(self, data: st.DataObject, payload: bytes) -> None:
        s = self.pick(data)
        pg = self.draw_page(data, s, writing=True)
        off = data.draw(st.one_of(st.integers(0, PAGE - 1), st.integers(PAGE - 64, PAGE - 1)),
                        label="offset")
        addr = pg * PAGE + off
        # byte by page: the part before a faulting page is written, then EFAULT
        err, done = None, 0
        while done < len(payload):
            a = addr + done
            chunk = min(PAGE - a % PAGE, len(payload) - done)
            if s.fault(a // PAGE, True):
                err = errno.EFAULT
                break
            done += chunk
        self.expect(err, lambda: s.mm.write(addr, payload))
        done = 0
        while done < len(payload):
            a = addr + done
            if s.fault(a // PAGE, True):
                break
            chunk = min(PAGE - a % PAGE, len(payload) - done)
            s.store(a // PAGE, a % PAGE, payload[done:done + chunk])
            done += chunk
        self.verify(data, s, addr // PAGE, (len(payload) + PAGE - 1) // PAGE + 1)

    @rule(data=st.data(), n=st.one_of(st.integers(1, 300), st.integers(1, 3 * PAGE)))
    def read(self, data: st.DataObject, n: int) -> None:
        s = self.pick(data)
        pg = self.draw_page(data, s)
        off = data.draw(st.one_of(st.integers(0, PAGE - 1), st.integers(PAGE - 64, PAGE - 1)),
                        label="offset")
        addr = pg * PAGE + off
        pages = range(addr // PAGE, (addr + n - 1) // PAGE + 1)
        if any(s.fault(p, False) for p in pages):
            self.expect(errno.EFAULT, lambda: s.mm.read(addr, n))
            return
        event("read: ok")
        want = b"".join(s.content(p) for p in pages)[off:off + n]
        assert s.mm.read(addr, n) == want

    @rule(data=st.data())
    def read_range(self, data: st.DataObject) -> None:
        """Whole pages of a range, the way a process would scan a buffer."""
        s = self.pick(data)
        start, n = self.draw_range(data, s)
        rng = range(start, start + n)
        if any(s.fault(pg, False) for pg in rng):
            self.expect(errno.EFAULT, lambda: s.mm.read(start * PAGE, n * PAGE))
        else:
            self.expect(None, lambda: None)
            assert s.mm.read(start * PAGE, n * PAGE) == b"".join(map(s.content, rng))

    @rule(data=st.data(), off=st.integers(0, FILE_SIZE - 1),
          payload=st.one_of(st.binary(min_size=1, max_size=300),
                            st.binary(min_size=PAGE, max_size=2 * PAGE)))
    def write_file(self, data: st.DataObject, off: int, payload: bytes) -> None:
        """write(2) to the file, inside its size: shared and not-yet-copied pages see it."""
        s = self.pick(data)
        private = sorted({m.idx for t in self.spaces() for m in t.pages.values()
                          if m.obj == 0 and not m.shared and m.idx < FILE_PAGES})
        aim: bool = data.draw(st.booleans(), label="aim at a privately mapped page")
        if private and aim:
            off = min(data.draw(st.sampled_from(private)) * PAGE + off % PAGE, FILE_SIZE - 1)
        self.file_write(s, off, payload)
        if data.draw(st.booleans(), label="verify"):
            # every file page of every process: shared and not-yet-copied private ones show
            # the new bytes, private copies keep theirs
            for t in self.spaces():
                t.check_pages(pg for pg, m in sorted(t.pages.items())
                              if m.obj == 0 and not t.fault(pg, False))

    @rule(data=st.data())
    def read_everything(self, data: st.DataObject) -> None:
        """Every readable page reads as the model says, and the file as pread says."""
        s = self.pick(data)
        s.check_pages(sorted(s.pages))
        assert s.p.pread(s.ro, 2 * FILE_SIZE, 0) == bytes(self.shared.file[:FILE_SIZE])

    # ---- after every step ----

    @invariant()
    def kernel_is_consistent(self) -> None:
        assert self.k is not None
        self.k.check()

    @invariant()
    def maps_match_the_model(self) -> None:
        """maps() lists exactly the model's mappings, adjacent compatible pages merged."""
        for s in self.spaces():
            assert coalesce(s.maps()) == coalesce(s.expected_maps()), f"pid {s.p.pid}"


# 300 examples of up to 50 steps (about 12 s): with the suggested 50 x 40, planted mistakes in
# the model (a DONTNEED that does not revert a private file copy, a populate that takes no
# copy, ...) went unnoticed; with these, every one tried was caught.
MemoryModel.TestCase.settings = settings(
    max_examples=examples(300), stateful_step_count=50, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestMemoryModel = MemoryModel.TestCase


# ---- the same machine with transparent huge pages ----------------------------------------

HUGE_AT = 0x40000000 // PAGE          # where big mappings go: four 2 MiB chunks from 1 GiB
THP_DRAWS = [(thp, cow) for thp in ("always", "never", "always", "madvise", "always")
             for cow in ("split", "copy-huge")]   # kernel modes: mostly huge pages on


class ThpMemoryModel(MemoryModel):
    """The machine above on a kernel with huge pages (``thp`` and ``thp_cow`` drawn), plus
    mappings of whole 2 MiB chunks (sometimes with ragged ends) and ranges aimed at chunks, so
    that huge pages appear, are split, copied, protected, advised and unmapped whole or in
    part. THP must be invisible: every read still equals the model, maps() too."""

    @initialize(data=st.data(), count=st.integers(2, 6), thp=st.sampled_from(THP_DRAWS))
    def fill_window(self, data: st.DataObject, count: int, thp: tuple[str, str]) -> None:
        self.boot(thp=thp[0], thp_cow=thp[1])
        event(f"thp={thp[0]} thp_cow={thp[1]}")
        self.fill(data, count)

    def fill(self, data: st.DataObject, count: int) -> None:
        """The window's mappings, and mostly whole chunks touched at once (map_huge)."""
        super().fill(data, count)
        if data.draw(st.sampled_from([True, True, True, False]), label="huge at start"):
            self.map_huge(data=data, at=data.draw(st.integers(0, 1)),
                          nchunks=data.draw(st.integers(1, 2)), advise=data.draw(st.booleans()),
                          touch=data.draw(st.sampled_from(["write", "stamp", "read"])),
                          payload=data.draw(st.binary(min_size=1, max_size=64)))

    @rule(data=st.data(), at=st.integers(0, 1), nchunks=st.integers(1, 2),
          advise=st.booleans(), touch=st.sampled_from(["write", "write", "stamp", "read"]),
          payload=st.binary(min_size=1, max_size=64))
    def map_huge(self, data: st.DataObject, at: int, nchunks: int, advise: bool, touch: str,
                 payload: bytes) -> None:
        """Map whole chunks read-write (MADV_HUGEPAGE too, sometimes) and touch each at
        once: huge pages, where the kernel's thp mode allows them."""
        s = self.pick(data)
        first, n = HUGE_AT + at * CHUNK, nchunks * CHUNK
        s.mm.mmap(n * PAGE, R | W, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | spawnfd.MAP_FIXED,
                  addr=first * PAGE)
        for pg in range(first, first + n):
            s.pages[pg] = Page(R | W, False, -1, 0, True, thp="HUGEPAGE" if advise else "")
        if advise:
            s.mm.madvise(first * PAGE, n * PAGE, mmap.MADV_HUGEPAGE)
        for c in range(first, first + n, CHUNK):
            pg = c + data.draw(st.integers(0, CHUNK - 1), label="page")
            if touch == "write":
                off = data.draw(st.integers(0, PAGE - len(payload)), label="offset")
                s.mm.write(pg * PAGE + off, payload)
                s.store(pg, off, payload)
            elif touch == "stamp":
                stamp = int.from_bytes(payload[:8].ljust(8, b"\0"), "little")
                s.mm.populate(c * PAGE, CHUNK * PAGE, True, stamp)
                for p in range(c, c + CHUNK):
                    s.store(p, 0, stamp.to_bytes(8, "little") * (PAGE // 8))
            else:
                assert s.mm.read(pg * PAGE, PAGE) == ZERO
        if self.thp == "always" or (self.thp == "madvise" and advise):
            assert s.mm.statistics().anon_huge_bytes >= n * PAGE

    def windows(self) -> list[range]:
        return super().windows() + [range(HUGE_AT + i * CHUNK - 2, HUGE_AT + i * CHUNK + 2)
                                    for i in range(4)]

    def draw_at(self, data: st.DataObject, npages: int) -> tuple[int, int]:
        """Often one or two whole chunks (sometimes a few pages more or less at either end),
        sometimes a small mapping among them, else the small window."""
        how = data.draw(st.sampled_from(["window", "chunks", "chunks", "ragged", "among"]),
                        label="where")
        if how == "window":
            return super().draw_at(data, npages)
        first = HUGE_AT + data.draw(st.integers(0, 1), label="chunk") * CHUNK
        n = data.draw(st.integers(1, 2), label="chunks") * CHUNK
        if how == "chunks":
            return first, n
        if how == "ragged":
            lo = data.draw(st.integers(-3, 3), label="lo")
            return first + lo, n - lo + data.draw(st.integers(-3, 3), label="hi")
        return data.draw(st.integers(HUGE_AT, HUGE_AT + 3 * CHUNK), label="at"), npages

    def draw_range(self, data: st.DataObject, s: Space) -> tuple[int, int]:
        """Sometimes a whole chunk, part of one, or a few pages across a chunk boundary."""
        how = data.draw(st.sampled_from(["any", "any", "whole", "part", "across"]),
                        label="range")
        if how == "any":
            return super().draw_range(data, s)
        first = HUGE_AT + data.draw(st.integers(0, 2), label="chunk") * CHUNK
        if how == "whole":
            return first, CHUNK * data.draw(st.integers(1, 2), label="chunks")
        if how == "part":
            off = data.draw(st.integers(0, CHUNK - 1), label="off")
            return first + off, data.draw(st.integers(1, CHUNK - off), label="n")
        return first + CHUNK - data.draw(st.integers(1, 8), label="before"), \
            data.draw(st.integers(2, 16), label="n")

    @invariant()
    def huge_pages_only_where_allowed(self) -> None:
        """No huge page without THP; AnonHugePages is whole 2 MiB pages, inside rss."""
        for s in self.spaces():
            st_ = s.mm.statistics()
            if st_.anon_huge_bytes:
                event("huge pages mapped")
            assert st_.anon_huge_bytes % (CHUNK * PAGE) == 0
            assert st_.anon_huge_bytes <= st_.rss_anon_bytes
            if self.thp == "never":
                assert st_.anon_huge_bytes == 0


# Fewer examples than the machine without huge pages: the kernel paths below a huge page
# are few, and each example maps thousands of pages (about 6 s). A planted mistake (a partial
# munmap that unmaps the whole huge page) was caught.
ThpMemoryModel.TestCase.settings = settings(
    max_examples=examples(100), stateful_step_count=50, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestThpMemoryModel = ThpMemoryModel.TestCase
