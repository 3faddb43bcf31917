"""The simulated ld.so: what glibc's dynamic loader does to a freshly exec'd process's memory.

The simulated CPU cannot run x86 code, so the loader is Python that works on simulated memory
the way ``ld-linux-x86-64.so.2`` does: it reads argc, argv, envp and auxv back off the initial
stack, finds the program through ``AT_PHDR`` (mapping it itself when started as
``ld.so /path/prog``), reads each object's ``PT_DYNAMIC`` for its ``DT_NEEDED`` libraries, maps
every library as glibc's ``_dl_map_segments()`` does (reserve the whole span with the first
segment, ``PROT_NONE`` over the holes, each further segment ``MAP_FIXED``, the bss page cleared
and the rest anonymous), and after "relocating" makes each object's ``PT_GNU_RELRO`` read-only
(``_dl_protect_relro()``). ELF structures are parsed with pyelftools' struct definitions, from
the simulated files and memory, reading only the headers and the dynamic section.
"""

from __future__ import annotations

import dataclasses
import functools
import mmap
import os
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from elftools.elf.constants import P_FLAGS
from elftools.elf.enums import ENUM_D_TAG, ENUM_E_MACHINE, ENUM_P_TYPE_BASE
from elftools.elf.structs import ELFStructs

if TYPE_CHECKING:
    from .._core import Process

__all__ = ["InitialStack", "LoadedObject", "read_initial_stack", "load_program", "map_object",
           "SEARCH_PATH"]

PAGE: Final = 4096
SEARCH_PATH: Final = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                      "/usr/lib64", "/lib", "/usr/lib")
AT_NULL, AT_PHDR, AT_PHNUM, AT_BASE, AT_ENTRY, AT_EXECFN = 0, 3, 5, 7, 9, 31
_STRUCTS = ELFStructs(little_endian=True, elfclass=64)
_STRUCTS.create_basic_structs()
_STRUCTS.create_advanced_structs(e_type="ET_DYN", e_machine="EM_X86_64", e_ident_osabi="ELFOSABI_SYSV")
PHDR_SIZE: Final = _STRUCTS.Elf_Phdr.sizeof()
DYN_SIZE: Final = _STRUCTS.Elf_Dyn.sizeof()
# Program headers and dynamic entries are parsed in bulk with struct (the hot path of every
# exec); their numbers come from pyelftools' tables.
PT_LOAD, PT_DYNAMIC, PT_PHDR = (ENUM_P_TYPE_BASE[n] for n in ("PT_LOAD", "PT_DYNAMIC", "PT_PHDR"))
PT_GNU_RELRO = ENUM_P_TYPE_BASE["PT_GNU_RELRO"]
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = (
    ENUM_D_TAG[n] for n in ("DT_NULL", "DT_NEEDED", "DT_STRTAB", "DT_SONAME"))
_PHDR = struct.Struct("<IIQQQQQQ")
EM_X86_64: Final = ENUM_E_MACHINE["EM_X86_64"]
assert _PHDR.size == PHDR_SIZE and DYN_SIZE == 16


class Phdr(NamedTuple):
    """One Elf64_Phdr."""

    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@functools.lru_cache(maxsize=256)
def _phdrs_cached(raw: bytes) -> tuple[Phdr, ...]:
    return tuple(Phdr(*t) for t in _PHDR.iter_unpack(raw[: len(raw) // PHDR_SIZE * PHDR_SIZE]))


def _phdrs(raw: bytes) -> list[Phdr]:
    return list(_phdrs_cached(raw))


@functools.lru_cache(maxsize=256)
def _dyn_entries(raw: bytes) -> tuple[tuple[int, int], ...]:
    return tuple(_dyn_entries_uncached(raw))


def _dyn_entries_uncached(raw: bytes) -> list[tuple[int, int]]:
    out = []
    for tag, val in struct.iter_unpack("<qQ", raw[: len(raw) // 16 * 16]):
        if tag == DT_NULL:
            break
        out.append((tag, val))
    return out


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


def _prot(flags: int) -> int:
    return ((mmap.PROT_READ if flags & P_FLAGS.PF_R else 0)
            | (mmap.PROT_WRITE if flags & P_FLAGS.PF_W else 0)
            | (mmap.PROT_EXEC if flags & P_FLAGS.PF_X else 0))


def read_elf(proc: Process, fd: int, path: str) -> tuple[bytes, list[Phdr]]:
    """The first bytes of the file (its ELF header, at least 64) and its program headers,
    read as glibc's ``open_verify()`` does (one 832-byte read, more only if the headers do
    not fit).
    ``ENOEXEC`` if it is not an x86-64 ELF."""
    raw = proc.pread(fd, 832, 0)
    if len(raw) < 64 or raw[:4] != b"\x7fELF" or raw[4] != 2 or raw[5] != 1:
        raise OSError(8, f"{os.strerror(8)}: {path}")
    # Elf64_Ehdr fields (offsets from pyelftools' Elf_Ehdr): e_machine at 18, e_phoff at 32,
    # e_phentsize and e_phnum at 54; unpacked directly, this runs on every spawn.
    (e_machine,) = struct.unpack_from("<H", raw, 18)
    (e_phoff,) = struct.unpack_from("<Q", raw, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", raw, 54)
    if e_machine != EM_X86_64 or e_phentsize != PHDR_SIZE:
        raise OSError(8, f"{os.strerror(8)}: {path}")
    end = e_phoff + e_phnum * PHDR_SIZE
    table = raw[e_phoff:end] if end <= len(raw) else proc.pread(fd, e_phnum * PHDR_SIZE, e_phoff)
    return raw, _phdrs(table)


def _read_headers(proc: Process, fd: int, path: str) -> list[Phdr]:
    """The program headers of the ELF file open at fd (ENOEXEC if it is not x86-64 ELF)."""
    return read_elf(proc, fd, path)[1]


def map_object(proc: Process, path: str, fd: int | None = None) -> LoadedObject:
    """Map a shared object into ``proc`` as glibc's ``_dl_map_segments()`` does (``fd``: the
    object already open, as ld.so's library search leaves it; it is closed).

    Raises:
        OSError: from open (``ENOENT``…) or the mappings; ``ENOEXEC`` for a non-ELF.
    """
    if fd is None:
        fd = proc.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        phdrs = _read_headers(proc, fd, path)
        loads = [ph for ph in phdrs if ph.p_type == PT_LOAD]
        if not loads:
            raise OSError(8, f"{os.strerror(8)}: no PT_LOAD in {path}")
        first, last = loads[0], loads[-1]
        mapstart = _page_down(first.p_vaddr)
        maplength = last.p_vaddr + last.p_memsz - mapstart
        start = proc.mm.mmap(maplength, _prot(first.p_flags), mmap.MAP_PRIVATE, fd,
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
                             _prot(c.p_flags), mmap.MAP_PRIVATE | 0x10, fd,
                             _page_down(c.p_offset), addr=bias + _page_down(c.p_vaddr))
            _zero_bss(proc, bias, c)
    finally:
        proc.close(fd)
    # The dynamic section is read where it is mapped (l_ld), as ld.so reads it.
    obj = _dynamic_from_memory(_Memory(proc), path, bias, phdrs)
    return obj


def _zero_bss(proc: Process, bias: int, c: Any) -> None:
    # compare _dl_postprocess_loadcmd(): clear the tail of the last file page, map the rest.
    if c.p_memsz <= c.p_filesz:
        return
    zero, zeroend = bias + c.p_vaddr + c.p_filesz, bias + c.p_vaddr + c.p_memsz
    zeropage = min(_page_up(zero), zeroend)
    if zeropage > zero and c.p_flags & P_FLAGS.PF_W:
        proc.mm.write(zero, bytes(zeropage - zero))
    if zeroend > zeropage:
        proc.mm.mmap(zeroend - zeropage, _prot(c.p_flags),
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x10, addr=zeropage)


def _dynamic_from_memory(mem: _Memory, path: str, bias: int, phdrs: list[Phdr]
                         ) -> LoadedObject:
    """An object's DT_NEEDED and DT_SONAME, read from its mapped PT_DYNAMIC."""
    needed: list[str] = []
    soname = None
    dyn = next((p for p in phdrs if p.p_type == PT_DYNAMIC), None)
    if dyn is not None:  # the whole dynamic section in one read, as ld.so walks it
        entries = _dyn_entries(mem.read(bias + dyn.p_vaddr, dyn.p_memsz))
        strtab = next((val for tag, val in entries if tag == DT_STRTAB), None)
        if strtab is not None:
            needed = [mem.cstring(bias + strtab + val).decode()
                      for tag, val in entries if tag == DT_NEEDED]
            soname = next((mem.cstring(bias + strtab + val).decode()
                           for tag, val in entries if tag == DT_SONAME), None)
    return LoadedObject(path, bias, phdrs, needed, soname)


def _object_from_memory(mem: _Memory, phdr_addr: int, phnum: int, path: str,
                        bias: int | None = None) -> LoadedObject:
    """An object the kernel mapped: headers and PT_DYNAMIC read from memory. Without a bias,
    it is found from PT_PHDR, as ld.so does for the program."""
    phdrs = _phdrs(mem.read(phdr_addr, phnum * PHDR_SIZE))
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
            dirs += [d for d in e[16:].decode().split(":") if d]
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
                                      mem.cstring(aux[AT_EXECFN]).decode())
    else:  # ld.so was executed directly: the program is argv[1]
        if len(stack.argv) < 2:
            raise OSError(22, "ld.so needs a program to run")
        program = map_object(proc, stack.argv[1].decode())
        # compare _dl_start_user(): the program sees argv without ld.so's own name
        stack = InitialStack(stack.argv[1:], stack.envp, stack.auxv)
    ldso = None
    if interp_base:  # ld.so's own ELF header is mapped at its base
        phoff, = struct.unpack("<Q", mem.read(interp_base + 32, 8))
        phnum, = struct.unpack("<H", mem.read(interp_base + 56, 2))
        ldso = LoadedObject("ld.so", interp_base,
                            _phdrs(mem.read(interp_base + phoff, phnum * PHDR_SIZE)), [])
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
