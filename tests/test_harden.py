"""Hostile input (issue 16): no crash, hang, corruption or host-memory balloon; a clear errno
and nothing lost. Each test ends with ``k.check()``."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import spawnfd

PAGE = 4096


# ---- 1. map_cow with shared page tables ----

def _db(k: spawnfd.Kernel) -> tuple[spawnfd.Process, int]:
    p = k.init
    fd = p.open("/tmp/db", os.O_RDWR | os.O_CREAT, 0o644)
    p.ftruncate(fd, 4 << 20)
    a = p.mm.mmap(4 << 20, 3, mmap.MAP_SHARED, fd, 0)
    p.mm.populate(a, 4 << 20, True, stamp=0x1111)
    return p, a


def test_map_cow_partial_chunk_keeps_embryo_table() -> None:
    k = spawnfd.Kernel("64M", share_pagetables=True)
    p, a = _db(k)
    b = p.process_create()
    x = b.mmap(4096, 3, 0x22 | spawnfd.MAP_FIXED, addr=a + (1 << 20))
    b.write(x, b"mine")
    b.map_cow(p, a + 8192, 4096)
    assert b.read(x, 4) == b"mine"
    assert b.read(a + 8192, 2) == b"\x11\x11"
    k.check()
    b.abort()
    k.check()


def test_map_cow_one_page_of_shared_chunk() -> None:
    k = spawnfd.Kernel("64M", share_pagetables=True)
    p, a = _db(k)
    b = p.process_create()
    b.map_cow(p, a, 4096)
    k.check()
    assert b.read(a, 4) == b"\x11\x11\x00\x00"
    with pytest.raises(OSError) as e:
        b.read(a + 4096, 1)
    assert e.value.errno == errno.EFAULT
    k.check()
    # a whole chunk still shares, and the embryo reads the file's bytes
    b.map_cow(p, a + (2 << 20), 2 << 20)
    assert b.read(a + (3 << 20), 2) == b"\x11\x11"
    k.check()
    b.abort()
    k.check()


# ---- 2. close_range with huge descriptors ----

@pytest.mark.parametrize("first,last", [(2**31, 2**32 - 1), (2**32 - 1, 2**32 - 1),
                                        (2**31 - 1, 2**31), (1000, 2**32 - 1)])
def test_close_range_huge_first_closes_nothing(first: int, last: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    p.close_range(first, last)
    assert p.write(fd, b"ok") == 2
    k.check()


@pytest.mark.parametrize("first,last", [(-1, 5), (0, -1), (2**32, 2**32), (0, 2**64)])
def test_close_range_out_of_range_is_einval(first: int, last: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    with pytest.raises(OSError) as e:
        p.close_range(first, last)
    assert e.value.errno == errno.EINVAL
    assert p.write(fd, b"ok") == 2
    k.check()


# ---- 3. touch with a stride that wraps ----

@pytest.mark.parametrize("every", [2**52, 2**52 + 1, 2**63, 2**64 - 1])
def test_touch_huge_stride_touches_first_page(every: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    a = p.mm.mmap(8192, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert p.mm.touch(a, 8192, every=every) == 1
    assert p.mm.statistics().rss_anon_bytes == PAGE
    k.check()


def test_touch_stride_near_end_of_address_space() -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    a = p.mm.mmap(3 * PAGE, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert p.mm.touch(a, 3 * PAGE, every=2) == 2
    for bad in (0, -1, 2**64):
        with pytest.raises(OSError) as e:
            p.mm.touch(a, PAGE, every=bad)
        assert e.value.errno == errno.EINVAL
    k.check()


# ---- 4. a sparse page cache and shared-table registry ----

def _host_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_byte_far_into_tmpfs_file_costs_little_host_memory() -> None:
    import time
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/far", os.O_RDWR | os.O_CREAT, 0o644)
    before = _host_rss()
    p.lseek(fd, 2**40, os.SEEK_SET)
    assert p.write(fd, b"x") == 1
    assert p.pread(fd, 1, 2**40) == b"x"
    assert p.pread(fd, 2, 2**40 - 1) == b"\0x"
    t = time.perf_counter()
    k.check()
    assert time.perf_counter() - t < 0.5
    assert _host_rss() - before < 8 << 20
    p.ftruncate(fd, 2**40 - 4096 * 3)  # truncate drops from an index up
    assert p.pread(fd, 1, 2**40) == b""
    p.ftruncate(fd, 2**40 + 1)
    assert p.pread(fd, 1, 2**40) == b"\0"
    k.check()


def test_page_at_end_of_4tib_shared_mapping_costs_little_host_memory() -> None:
    import time
    k = spawnfd.Kernel("16M", share_pagetables=True)
    p = k.init
    fd = p.open("/tmp/huge", os.O_RDWR | os.O_CREAT, 0o644)
    size = 4 << 40
    p.ftruncate(fd, size)
    before = _host_rss()
    a = p.mm.mmap(size, 3, mmap.MAP_SHARED, fd, 0)
    p.mm.write(a + size - PAGE, b"end")
    child = p.fork()
    assert child.mm.read(a + size - PAGE, 3) == b"end"
    child.mm.write(a + size - 2 * PAGE, b"kid")
    assert p.mm.read(a + size - 2 * PAGE, 3) == b"kid"
    t = time.perf_counter()
    k.check()
    assert time.perf_counter() - t < 0.5
    assert _host_rss() - before < 8 << 20
    assert p.pread(fd, 3, size - PAGE) == b"end"
    p.mm.munmap(a, size)
    child.exit(0)
    k.check()


def test_scattered_pages_truncate_in_index_order() -> None:
    import random
    rnd = random.Random(16)
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/scatter", os.O_RDWR | os.O_CREAT, 0o644)
    offs = sorted({rnd.randrange(0, 2**43 - 8192) & ~0xFFF for _ in range(200)} | {0, 2**43 - 4096})
    for i, off in enumerate(offs):
        p.lseek(fd, off, os.SEEK_SET)
        p.write(fd, i.to_bytes(4, "little"))
    k.check()
    mid = offs[len(offs) // 2] + 2
    p.ftruncate(fd, mid)
    k.check()
    for i, off in enumerate(offs):
        want = i.to_bytes(4, "little")
        if off + 4 <= mid:
            assert p.pread(fd, 4, off) == want
        elif off < mid:
            assert p.pread(fd, 4, off) == want[:mid - off]
        else:
            assert p.pread(fd, 4, off) == b""
    p.ftruncate(fd, 0)
    k.check()


# ---- 5. no stack arrays sized by argc ----

def test_initial_stack_with_many_arguments_is_exact() -> None:
    from spawnfd.sim.programs import ldso
    k = spawnfd.Kernel("64M")
    argv = ["true"] + [f"a{i}" for i in range(3000)]
    env = [f"E{i}={i}".encode() for i in range(2000)]
    c = k.init.fork()
    c.execve("/bin/true", argv, env)
    st = ldso.read_initial_stack(c)
    assert st.argv == [a.encode() for a in argv]
    assert st.envp == env
    assert ldso._cstring(c, st.auxv[31]) == b"/bin/true"  # AT_EXECFN
    k.check()


_BIG_ARGC = r"""
import sys, threading, spawnfd
threading.stack_size(1 << 20)
out = []
def run():
    k = spawnfd.Kernel("64M")
    c = k.init.fork()
    c.execve("/bin/true", ["true"] + ["x"] * 200000, {})
    k.check()
    out.append("ok")
t = threading.Thread(target=run); t.start(); t.join()
print(out[0])
"""


def test_exec_with_argc_200000_on_a_small_thread_stack() -> None:
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", _BIG_ARGC], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


# ---- 6. a relative program with cwd= is the child's ----

@pytest.mark.parametrize("method", ["spawnfd", "fork-exec", "vfork-exec", "cow-pt"])
async def test_relative_program_with_cwd_runs_in_the_childs_cwd(method: str) -> None:
    async with spawnfd.open_kernel("256M") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        r = await spawnfd.run_process(["./echo", "hi"], cwd="/bin", capture_stdout=True,
                                      kernel=k, method=method)
        assert (r.returncode, r.stdout) == (0, b"hi\n")
        r = await spawnfd.run_process(["./false"], cwd="/bin", check=False, kernel=k,
                                      method=method)
        assert r.returncode == 1
        k.check()


# ---- 7. paths that are not UTF-8 ----

def _copy_in(p: spawnfd.Process, src: str, dst: bytes, patch: tuple[bytes, bytes] | None = None
             ) -> None:
    with open(src, "rb") as f:
        data = f.read()
    if patch is not None:
        assert data.count(patch[0]) == 1
        data = data.replace(*patch)
    fd = p.open(dst, os.O_RDWR | os.O_CREAT, 0o755)
    p.write(fd, data)
    p.close(fd)


def test_maps_with_a_file_name_that_is_not_utf8() -> None:
    k = spawnfd.Kernel("64M")
    p = k.init
    name = b"/tmp/caf\xe9"
    fd = p.open(name, os.O_RDWR | os.O_CREAT, 0o644)
    p.ftruncate(fd, PAGE)
    a = p.mm.mmap(PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    text = p.mm.maps()
    assert text.splitlines()[0].endswith(os.fsdecode(name))
    assert os.fsencode(text.splitlines()[0].split(None, 5)[5]) == name
    p.mm.munmap(a, PAGE)
    assert p.mm.maps() == ""
    k.check()


async def test_program_and_interpreter_paths_that_are_not_utf8() -> None:
    interp = b"/lib64/ld-linux-x86-64.so.2"
    bad_interp = interp[:-1] + b"\xff"
    async with spawnfd.open_kernel("256M") as k:
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        _copy_in(p, "/bin/true", b"/tmp/tr\xffue")
        _copy_in(p, "/bin/true", b"/tmp/badinterp", (interp + b"\0", bad_interp + b"\0"))
        # the fd model's loader: a clean ENOENT for the interpreter, like execve
        b = p.process_create()
        prog = b.load_elf("/tmp/badinterp")
        assert prog.interpreter is not None and os.fsencode(prog.interpreter) == bad_interp
        with pytest.raises(FileNotFoundError):
            b.load_elf(prog.interpreter)
        b.abort()
        c = p.fork()
        with pytest.raises(FileNotFoundError):
            c.execve("/tmp/badinterp", ["x"])
        c.exit(0)
        p.wait_pid(c.pid)
        # a program whose own name is not UTF-8 runs and shows in maps
        for method in ("spawnfd", "fork-exec", "vfork-exec"):
            r = await spawnfd.run_process([os.fsdecode(b"/tmp/tr\xffue")], kernel=k,
                                          method=method, check=False)
            assert r.returncode == 0, method  # the real /bin/true, under its odd name
        k.check()


# ---- 8. hostile 64-bit values: an errno, never a wrap ----

_PH = {"offset": 8, "vaddr": 16, "filesz": 32, "memsz": 40}


def _patched_true(which: int, field: str, value: int) -> bytes:
    import struct
    from spawnfd import elf
    with open("/bin/true", "rb") as f:
        data = bytearray(f.read())
    h = elf.read_headers(lambda n, off: bytes(data[off:off + n]), "true")
    i = [j for j, ph in enumerate(h.phdrs) if ph.p_type == elf.PT_LOAD][which]
    struct.pack_into("<Q", data, h.e_phoff + 56 * i + _PH[field], value % 2**64)
    return bytes(data)


@pytest.mark.parametrize("which", [0, -1])
@pytest.mark.parametrize("field,value", [
    ("memsz", 2**64 - 1), ("memsz", 2**64 - 4096), ("memsz", 2**63), ("filesz", 2**64 - 1),
    ("filesz", 2**64 - 4096), ("vaddr", 2**64 - 4096), ("vaddr", 2**63), ("offset", 1),
    ("offset", 2**64 - 1), ("offset", 0xfff)])
def test_exec_of_elf_with_hostile_segment_is_einval(which: int, field: str, value: int
                                                    ) -> None:
    k = spawnfd.Kernel("64M")
    p = k.init
    fd = p.open("/tmp/x", os.O_RDWR | os.O_CREAT, 0o755)
    p.write(fd, _patched_true(which, field, value))
    p.close(fd)
    c = p.fork()
    before = c.mm.maps()
    with pytest.raises(OSError) as e:
        c.execve("/tmp/x", ["x"])
    assert e.value.errno in (errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM)
    if field in ("memsz", "filesz", "vaddr") or value in (1, 0xfff):
        assert e.value.errno == errno.EINVAL
    assert c.mm.maps() == before
    k.check()


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, 2**64, -2**63 - 1])
def test_lseek_and_ftruncate_out_of_64_bits_are_einval(value: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    p.write(fd, b"abc")
    for call in (lambda: p.lseek(fd, value, os.SEEK_SET), lambda: p.ftruncate(fd, value)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EINVAL
    assert p.pread(fd, 3, 0) == b"abc" and p.lseek(fd, 0, os.SEEK_CUR) == 3
    k.check()


def test_huge_read_lengths_cost_no_host_memory() -> None:
    k = spawnfd.Kernel("64M")
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    data = bytes(range(256)) * 40000  # 10 MB: more than one host chunk
    p.write(fd, data)
    before = _host_rss()
    for n in (2**31, 2**40, 2**63, 2**64 - 1):
        assert p.pread(fd, n, 0) == data
        assert p.pread(fd, n, 5) == data[5:]
        p.lseek(fd, 7, os.SEEK_SET)
        assert p.read(fd, n) == data[7:]
    assert _host_rss() - before < 1 << 30  # not the gigabytes asked for (ASan keeps freed buffers)
    a = p.mm.mmap(8 * PAGE, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    p.mm.write(a, b"xyz")
    for n in (2**40, 2**47, 2**63, 2**64 - 1):
        with pytest.raises(OSError) as e:
            p.mm.read(a, n)
        assert e.value.errno == errno.EFAULT
    b = p.mm.mmap(2**40, 1, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)  # MAP_NORESERVE
    with pytest.raises(OSError) as e:
        p.mm.read(b + 2**40 - PAGE, 2**30)  # past the end of the mapping: EFAULT
    assert e.value.errno == errno.EFAULT
    assert _host_rss() - before < 1 << 30  # not the gigabytes asked for (ASan keeps freed buffers)
    assert p.mm.read(a, 3) == b"xyz"
    r, w = p.pipe()
    p.write(w, b"pipe")
    assert p.read(r, 2**63) == b"pipe"
    k.check()


def test_integers_that_do_not_fit_their_c_type_are_einval() -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    a = p.mm.mmap(PAGE, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    b = p.process_create()
    calls = [lambda: p.close(2**40), lambda: p.dup2(0, -2**63), lambda: p.read(2**31, 1),
             lambda: p.mm.mprotect(a, PAGE, 2**63), lambda: p.mm.madvise(a, PAGE, -2**40),
             lambda: p.open("/tmp/x", os.O_RDWR | os.O_CREAT, 2**40),
             lambda: b.mmap(-1, 3, 0x22), lambda: b.map_cow(p, -PAGE, PAGE),
             lambda: b.mprotect(0, PAGE, -1), lambda: p.exit(2**32)]
    for call in calls:
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EINVAL
    p.mm.write(a, b"ok")
    assert p.mm.read(a, 2) == b"ok"
    b.abort()
    k.check()


# ---- injected ENOMEM in the issue-16 advices: guard markers, holes, shmem ----

@pytest.mark.parametrize("mode", ["copy", "cow-pt", "cow-pt-eager"])
def test_injected_enomem_in_guards_and_holes_leaves_the_kernel_consistent(mode: str) -> None:
    # What if the n-th allocation fails inside MADV_GUARD_INSTALL (a table, a COW break),
    # MADV_GUARD_REMOVE (a COW break), MADV_REMOVE or a shared anonymous mmap, for every n
    # until each succeeds: only ENOMEM (ENOSPC for a tmpfs page), and check() passes?
    import itertools
    for n in itertools.count(1):
        k = spawnfd.Kernel("64M", fork_mode=mode, thp="always")
        p = k.init
        a = p.mm.mmap(4 << 20, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        p.mm.populate(a, 4 << 20, True, stamp=7)
        fd = p.open("/tmp/g", os.O_RDWR | os.O_CREAT, 0o600)
        p.ftruncate(fd, 1 << 20)
        f = p.mm.mmap(1 << 20, 3, mmap.MAP_SHARED, fd)
        c = p.fork()
        k.fail_nth_allocation(n)
        done = 0
        for op in (lambda: p.mm.madvise(a + PAGE, (2 << 20), spawnfd.MADV_GUARD_INSTALL),
                   lambda: c.mm.madvise(a, 4 << 20, spawnfd.MADV_GUARD_INSTALL),
                   lambda: c.mm.madvise(a, 4 << 20, spawnfd.MADV_GUARD_REMOVE),
                   lambda: p.mm.write(f, b"x" * 3 * PAGE),
                   lambda: p.mm.madvise(f, 2 * PAGE, mmap.MADV_REMOVE),
                   lambda: p.mm.mmap(1 << 20, 3, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)):
            try:
                op()
                done += 1
            except OSError as e:
                assert e.errno in (errno.ENOMEM, errno.EFAULT), e
            k.check()
        k.fail_nth_allocation(0)
        k.close()
        if done == 6:   # no allocation failed: every n has been tried
            assert n > 3
            break
