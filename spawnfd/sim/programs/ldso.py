"""The simulated ld.so: what glibc's dynamic loader does to a freshly exec'd process's memory.

The simulated CPU cannot run x86 code, so the loader is Python that works on simulated memory
the way ``ld-linux-x86-64.so.2`` does: it reads argc, argv, envp and auxv back off the initial
stack, finds the program through ``AT_PHDR`` (mapping it itself when started as
``ld.so /path/prog``), reads each object's ``PT_DYNAMIC`` for its ``DT_NEEDED`` libraries, maps
every library as glibc's ``_dl_map_segments()`` does (reserve the whole span with the first
segment, ``PROT_NONE`` over the holes, each further segment ``MAP_FIXED``, the bss page cleared
and the rest anonymous), and after "relocating" makes each object's ``PT_GNU_RELRO`` read-only
(``_dl_protect_relro()``). ELF structures are parsed by :mod:`spawnfd.elf`, from the
simulated files and memory, reading only the headers and the dynamic section.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ... import elf
from ...elf import (DT_NEEDED, DT_SONAME, DT_STRTAB, PHDR_SIZE, PT_DYNAMIC, PT_GNU_RELRO,
                   PT_LOAD, PT_PHDR, Phdr)

if TYPE_CHECKING:
    from ..kernel import Process

__all__ = ["InitialStack", "LoadedObject", "read_initial_stack", "load_program", "program_path",
           "map_object",
           "SEARCH_PATH"]

PAGE: Final = 4096
SEARCH_PATH: Final = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                      "/usr/lib64", "/lib", "/usr/lib")
AT_NULL, AT_PHDR, AT_PHNUM, AT_BASE, AT_ENTRY, AT_EXECFN = 0, 3, 5, 7, 9, 31


def _page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


@dataclasses.dataclass(frozen=True)
class InitialStack:
    """What the kernel left on the stack: ``argc``, ``argv``, ``envp`` and the auxv."""

    argv: list[bytes]
    envp: list[bytes]
    auxv: dict[int, int]


@dataclasses.dataclass
class LoadedObject:
    """One object in the process: its name, load bias, program headers and needed libraries."""

    path: str
    bias: int
    phdrs: list[Any]
    needed: list[str]
    soname: str | None = None


class _Memory:
    """Reads of one process's memory, a page per C call, each page read once: what ld.so
    reads at start-up (the stack's vectors and strings, dynamic sections) is a handful of
    pages, so the whole walk costs a few calls instead of one per word."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self._pages: dict[int, bytes] = {}

    def _page(self, base: int) -> bytes:
        page = self._pages.get(base)
        if page is None:
            page = self._pages[base] = self._proc.mm.read(base, PAGE)
        return page

    def read(self, addr: int, n: int) -> bytes:
        out = b""
        while n > 0:
            base, off = addr & ~(PAGE - 1), addr & (PAGE - 1)
            chunk = self._page(base)[off: off + n]
            out += chunk
            addr += len(chunk)
            n -= len(chunk)
        return out

    def word(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def cstring(self, addr: int, limit: int = 4096) -> bytes:
        out = b""
        while len(out) < limit:
            base, off = addr & ~(PAGE - 1), addr & (PAGE - 1)
            page = self._page(base)
            end = page.find(b"\0", off)
            if end >= 0:
                return out + page[off:end]
            out += page[off:]
            addr = base + PAGE
        raise OSError(7, "string too long")  # E2BIG


def _cstring(proc: Process, addr: int, limit: int = 4096) -> bytes:
    return _Memory(proc).cstring(addr, limit)


def read_initial_stack(proc: Process, mem: _Memory | None = None) -> InitialStack:
    """Read argc, argv, envp and auxv back out of simulated memory at the start ``rsp``."""
    mem = _Memory(proc) if mem is None else mem
    _, sp = proc.registers
    argc = mem.word(sp)
    words = sp + 8
    # The vectors usually lie in the page of sp: decode them from that page in bulk.
    head = mem.read(words, PAGE - (words & (PAGE - 1)))
    bulk = struct.unpack_from(f"<{len(head) // 8}Q", head)

    def vector() -> list[int]:
        nonlocal words
        out: list[int] = []
        while True:
            i = (words - sp - 8) // 8
            w = bulk[i] if i < len(bulk) else mem.word(words)
            words += 8
            if not w:
                return out
            out.append(w)

    argv = [mem.cstring(a) for a in vector()]
    if len(argv) != argc:
        raise OSError(22, f"argc says {argc}, argv has {len(argv)}")
    envp = [mem.cstring(a) for a in vector()]
    auxv: dict[int, int] = {}
    while True:
        i = (words - sp - 8) // 8
        if i + 1 < len(bulk):
            key, val = bulk[i], bulk[i + 1]
        else:
            key, val = mem.word(words), mem.word(words + 8)
        words += 16
        if key == AT_NULL:
            return InitialStack(argv, envp, auxv)
        auxv[key] = val


def map_object(proc: Process, path: str, fd: int | None = None) -> LoadedObject:
    """Map a shared object into ``proc`` as glibc's ``_dl_map_segments()`` does (``fd``: the
    object already open, as ld.so's library search leaves it; it is closed).

    Raises:
        OSError: from open (``ENOENT``…) or the mappings; ``ENOEXEC`` for a non-ELF.
    """
    if fd is None:
        fd = proc.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        phdrs = elf.read_headers(lambda n, off: proc.pread(fd, n, off), path).phdrs
        loads = [ph for ph in phdrs if ph.p_type == PT_LOAD]
        if not loads:
            raise OSError(8, f"{os.strerror(8)} (no PT_LOAD)", path)
        first, last = loads[0], loads[-1]
        mapstart = _page_down(first.p_vaddr)
        maplength = last.p_vaddr + last.p_memsz - mapstart
        start = proc.mm.mmap(maplength, elf.prot(first.p_flags), mmap.MAP_PRIVATE, fd,
                             _page_down(first.p_offset))
        bias = start - mapstart
        contiguous = all(_page_up(a.p_vaddr + a.p_filesz) == _page_down(b.p_vaddr)
                         for a, b in zip(loads, loads[1:]))
        if not contiguous:
            hole = _page_up(first.p_vaddr + first.p_filesz)
            proc.mm.mprotect(bias + hole, _page_down(last.p_vaddr) - hole, 0)
        for i, c in enumerate(loads):
            if i:
                proc.mm.mmap(_page_up(c.p_vaddr + c.p_filesz) - _page_down(c.p_vaddr),
                             elf.prot(c.p_flags), mmap.MAP_PRIVATE | 0x10, fd,
                             _page_down(c.p_offset), addr=bias + _page_down(c.p_vaddr))
            _zero_bss(proc, bias, c)
    except OSError as e:  # every error mapping it is about this file
        raise elf.named(e, path) from None
    finally:
        proc.close(fd)
    # The dynamic section is read where it is mapped (l_ld), as ld.so reads it.
    obj = _dynamic_from_memory(_Memory(proc), path, bias, list(phdrs))
    return obj


def _zero_bss(proc: Process, bias: int, c: Any) -> None:
    # compare _dl_postprocess_loadcmd(): clear the tail of the last file page, map the rest.
    if c.p_memsz <= c.p_filesz:
        return
    zero, zeroend = bias + c.p_vaddr + c.p_filesz, bias + c.p_vaddr + c.p_memsz
    zeropage = min(_page_up(zero), zeroend)
    if zeropage > zero and elf.prot(c.p_flags) & mmap.PROT_WRITE:
        proc.mm.write(zero, bytes(zeropage - zero))
    if zeroend > zeropage:
        proc.mm.mmap(zeroend - zeropage, elf.prot(c.p_flags),
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x10, addr=zeropage)


def _dynamic_from_memory(mem: _Memory, path: str, bias: int, phdrs: list[Phdr]
                         ) -> LoadedObject:
    """An object's DT_NEEDED and DT_SONAME, read from its mapped PT_DYNAMIC."""
    needed: list[str] = []
    soname = None
    dyn = next((p for p in phdrs if p.p_type == PT_DYNAMIC), None)
    if dyn is not None:  # the whole dynamic section in one read, as ld.so walks it
        entries = elf.dynamic_entries(mem.read(bias + dyn.p_vaddr, dyn.p_memsz))
        strtab = next((val for tag, val in entries if tag == DT_STRTAB), None)
        if strtab is not None:
            needed = [os.fsdecode(mem.cstring(bias + strtab + val))
                      for tag, val in entries if tag == DT_NEEDED]
            soname = next((os.fsdecode(mem.cstring(bias + strtab + val))
                           for tag, val in entries if tag == DT_SONAME), None)
    return LoadedObject(path, bias, phdrs, needed, soname)


def _object_from_memory(mem: _Memory, phdr_addr: int, phnum: int, path: str,
                        bias: int | None = None) -> LoadedObject:
    """An object the kernel mapped: headers and PT_DYNAMIC read from memory. Without a bias,
    it is found from PT_PHDR, as ld.so does for the program."""
    phdrs = list(elf.parse_phdrs(mem.read(phdr_addr, phnum * PHDR_SIZE)))
    if bias is None:
        self_ph = next((p for p in phdrs if p.p_type == PT_PHDR), None)
        bias = phdr_addr - self_ph.p_vaddr if self_ph is not None else 0
    obj = _dynamic_from_memory(mem, path, bias, phdrs)
    obj.soname = None
    return obj


def search_path(proc: Any, name: str, dirs: Iterable[str]) -> str | None:
    """The first ``dir/name`` that ``proc`` (a Process or Sys) can open, or None. Names with
    a slash are not searched. Shared by ld.so (libraries) and sh (programs)."""
    if "/" in name:
        return name
    for d in dirs:
        path = f"{d or '.'}/{name}"
        try:
            proc.close(proc.open(path, os.O_RDONLY))
            return path
        except OSError:
            continue
    return None


def _open_library(proc: Process, name: str, env: list[bytes]) -> tuple[str, int]:
    """Search and open a DT_NEEDED library as ld.so's open_path() does: the first directory
    where it opens wins, and the descriptor is the one mapped."""
    dirs: list[str] = []
    for e in env:
        if e.startswith(b"LD_LIBRARY_PATH="):
            dirs += [d for d in os.fsdecode(e[16:]).split(":") if d]
    for d in ([""] if "/" in name else [*dirs, *SEARCH_PATH]):
        path = f"{d}/{name}" if d else name
        try:
            return path, proc.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
    raise FileNotFoundError(2, f"{name}: cannot open shared object file", name)


def _protect_relro(proc: Process, obj: LoadedObject) -> None:
    # compare _dl_protect_relro(): whole pages only.
    for ph in obj.phdrs:
        if ph.p_type == PT_GNU_RELRO:
            start = _page_down(obj.bias + ph.p_vaddr)
            end = _page_down(obj.bias + ph.p_vaddr + ph.p_memsz)
            if end > start:
                proc.mm.mprotect(start, end - start, mmap.PROT_READ)


def program_path(proc: Process) -> str:
    """The program the start registers lead to, found as :func:`load_program` finds it but
    without mapping anything: ``AT_EXECFN`` when the kernel mapped the program beside ld.so,
    ``argv[1]`` when ld.so was started as a program (``ld.so /path/prog``)."""
    mem = _Memory(proc)
    stack = read_initial_stack(proc, mem)
    aux = stack.auxv
    rip, _ = proc.registers
    execfn = os.fsdecode(mem.cstring(aux[AT_EXECFN])) if AT_EXECFN in aux else ""
    if aux.get(AT_BASE, 0) and aux.get(AT_ENTRY) != rip:
        return execfn
    if len(stack.argv) >= 2 and os.path.basename(os.path.realpath(execfn)).startswith("ld-"):
        return os.fsdecode(stack.argv[1])
    return execfn


def load_program(proc: Process) -> tuple[InitialStack, list[LoadedObject]]:
    """Do what ld.so does before calling the program's entry point.

    Returns the initial stack it read and the objects in load order: the program, ld.so
    itself, then the libraries breadth-first. When started as ``ld.so /path/prog args`` (the
    program not mapped by the kernel: ``AT_ENTRY`` is ld.so's own entry) it maps the program
    from ``argv[1]`` first, as ``ld.so`` does.
    """
    mem = _Memory(proc)  # read-only walk first: stack, program and ld.so headers
    stack = read_initial_stack(proc, mem)
    aux = stack.auxv
    rip, _ = proc.registers
    interp_base = aux.get(AT_BASE, 0)
    if interp_base and aux.get(AT_ENTRY) != rip:
        program = _object_from_memory(mem, aux[AT_PHDR], aux[AT_PHNUM],
                                      os.fsdecode(mem.cstring(aux[AT_EXECFN])))
    else:  # ld.so was executed directly: the program is argv[1]
        if len(stack.argv) < 2:
            raise OSError(22, "ld.so needs a program to run")
        program = map_object(proc, os.fsdecode(stack.argv[1]))
        # compare _dl_start_user(): the program sees argv without ld.so's own name
        stack = InitialStack(stack.argv[1:], stack.envp, stack.auxv)
    ldso = None
    if interp_base:  # ld.so's own ELF header is mapped at its base
        phoff, = struct.unpack("<Q", mem.read(interp_base + 32, 8))
        phnum, = struct.unpack("<H", mem.read(interp_base + 56, 2))
        ldso = LoadedObject("ld.so", interp_base,
                            list(elf.parse_phdrs(mem.read(interp_base + phoff, phnum * PHDR_SIZE))),
                            [])
    objects = [program] + ([ldso] if ldso else [])
    loaded = {"ld-linux-x86-64.so.2"} if ldso else set()
    queue = list(program.needed)
    while queue:
        name = queue.pop(0)
        if os.path.basename(name) in loaded:
            continue
        obj = map_object(proc, *_open_library(proc, name, stack.envp))
        loaded.add(os.path.basename(name))
        objects.append(obj)
        queue += obj.needed
    for obj in objects:  # "relocation" done: RELRO becomes read-only
        _protect_relro(proc, obj)
    return stack, objects
