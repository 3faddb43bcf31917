"""ELF reading, the one reader both worlds use.

The simulator's user-space loader (`spawnfd.Builder.load_elf`), its stand-in ld.so
(:mod:`spawnfd.sim.programs.ldso`) and the host builder (`spawnfd.host.ProcessBuilder`) all
read executables through :func:`read_headers`: the ELF header, the program headers and the
``PT_INTERP`` name, read the way glibc's ``open_verify()`` reads them (one 832-byte read,
more only when the headers do not fit) from any ``pread``-like callable, so the same code
serves a simulated descriptor and a host one. Record layouts and numbers come from
pyelftools' tables; the hot path (every spawn) unpacks with :mod:`struct`.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import struct
from collections.abc import Callable
from typing import Final, NamedTuple

from elftools.elf.constants import P_FLAGS
from elftools.elf.enums import ENUM_D_TAG, ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_P_TYPE_BASE
from elftools.elf.structs import ELFStructs

__all__ = ["Phdr", "ElfHeaders", "read_headers", "parse_phdrs", "dynamic_entries", "prot",
           "PT_LOAD", "PT_DYNAMIC", "PT_INTERP", "PT_PHDR", "PT_GNU_RELRO", "DT_NULL",
           "DT_NEEDED", "DT_STRTAB", "DT_SONAME", "ET_EXEC", "ET_DYN", "EM_X86_64",
           "PHDR_SIZE", "FIRST_READ", "named"]

_STRUCTS = ELFStructs(little_endian=True, elfclass=64)
_STRUCTS.create_basic_structs()
_STRUCTS.create_advanced_structs(e_type="ET_DYN", e_machine="EM_X86_64",
                                 e_ident_osabi="ELFOSABI_SYSV")
PHDR_SIZE: Final = _STRUCTS.Elf_Phdr.sizeof()
EHDR_SIZE: Final = _STRUCTS.Elf_Ehdr.sizeof()
#: glibc's ld.so reads this much of a file first (``open_verify``); so do exec and the loaders.
FIRST_READ: Final = 832

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR = (
    ENUM_P_TYPE_BASE[n] for n in ("PT_LOAD", "PT_DYNAMIC", "PT_INTERP", "PT_PHDR"))
PT_GNU_RELRO: Final = ENUM_P_TYPE_BASE["PT_GNU_RELRO"]
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = (
    ENUM_D_TAG[n] for n in ("DT_NULL", "DT_NEEDED", "DT_STRTAB", "DT_SONAME"))
ET_EXEC, ET_DYN = ENUM_E_TYPE["ET_EXEC"], ENUM_E_TYPE["ET_DYN"]
EM_X86_64: Final = ENUM_E_MACHINE["EM_X86_64"]

_PHDR = struct.Struct("<IIQQQQQQ")
# Elf64_Ehdr after e_ident: e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags,
# e_ehsize, e_phentsize, e_phnum (the offsets pyelftools' Elf_Ehdr gives).
_EHDR = struct.Struct("<HHIQQQIHHH")
assert _PHDR.size == PHDR_SIZE and EHDR_SIZE == 64 and _EHDR.size + 16 == 58


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


class ElfHeaders(NamedTuple):
    """What a loader needs of an ELF file, read by :func:`read_headers`.

    Attributes:
        e_type: ``ET_EXEC``, ``ET_DYN``, … (not checked here: loaders decide).
        e_machine: ``EM_X86_64`` unless the reader was told to accept any machine.
        e_entry: The entry point, relative to the load bias for ``ET_DYN``.
        e_phoff: The file offset of the program headers.
        phdrs: The program headers.
        interpreter: The ``PT_INTERP`` path without its NUL, or None.
    """

    e_type: int
    e_machine: int
    e_entry: int
    e_phoff: int
    phdrs: tuple[Phdr, ...]
    interpreter: bytes | None


Pread = Callable[[int, int], bytes]
"""``pread(length, offset) -> bytes``: short at end of file, as ``os.pread``."""


def named(exc: OSError, name: object) -> OSError:
    """``exc`` about the file ``name``: itself if it names a file already, else the same
    errno and message with ``filename`` set (the same OSError subclass)."""
    if exc.filename is not None:
        return exc
    new = OSError(exc.errno, exc.strerror, name)
    new.__traceback__ = exc.__traceback__
    return new


def _noexec(name: object, why: str | None = None) -> OSError:
    msg = os.strerror(errno.ENOEXEC) if why is None else f"{os.strerror(errno.ENOEXEC)} ({why})"
    return OSError(errno.ENOEXEC, msg, name)


@functools.lru_cache(maxsize=256)
def parse_phdrs(raw: bytes) -> tuple[Phdr, ...]:
    """The program headers packed in ``raw`` (whole entries only)."""
    return tuple(Phdr(*t) for t in _PHDR.iter_unpack(raw[: len(raw) // PHDR_SIZE * PHDR_SIZE]))


@functools.lru_cache(maxsize=256)
def dynamic_entries(raw: bytes) -> tuple[tuple[int, int], ...]:
    """The ``(d_tag, d_val)`` pairs of a ``PT_DYNAMIC`` segment, up to ``DT_NULL``."""
    out = []
    for tag, val in struct.iter_unpack("<qQ", raw[: len(raw) // 16 * 16]):
        if tag == DT_NULL:
            break
        out.append((tag, val))
    return tuple(out)


def prot(p_flags: int) -> int:
    """The ``PROT_*`` bits of a segment's ``p_flags``."""
    return ((mmap.PROT_READ if p_flags & P_FLAGS.PF_R else 0)
            | (mmap.PROT_WRITE if p_flags & P_FLAGS.PF_W else 0)
            | (mmap.PROT_EXEC if p_flags & P_FLAGS.PF_X else 0))


def read_headers(pread: Pread, name: object, *, machine: int | None = EM_X86_64,
                 first: bytes | None = None) -> ElfHeaders:
    """Read an ELF file's header, program headers and interpreter name.

    Args:
        pread: Reads the file: ``pread(length, offset)``.
        name: The file's name, for errors (``OSError.filename``).
        machine: The ``e_machine`` required (default x86-64); None accepts any.
        first: The first bytes of the file if the caller read them already (at least the
            64-byte header; :data:`FIRST_READ` is what glibc reads).

    Returns:
        The :class:`ElfHeaders`.

    Raises:
        OSError: ``ENOEXEC`` when the file is not a 64-bit little-endian ELF for
            ``machine``, or its ``PT_INTERP`` is not a NUL-terminated path; whatever
            ``pread`` raises.
    """
    raw = pread(FIRST_READ, 0) if first is None else first
    if len(raw) < EHDR_SIZE or raw[:4] != b"\x7fELF" or raw[4] != 2 or raw[5] != 1:
        raise _noexec(name)
    (e_type, e_machine, _, e_entry, e_phoff, _, _, _, e_phentsize,
     e_phnum) = _EHDR.unpack_from(raw, 16)
    if (machine is not None and e_machine != machine) or e_phentsize != PHDR_SIZE:
        raise _noexec(name)
    if not 0 < e_phnum * PHDR_SIZE <= 65536:  # compare Linux load_elf_phdrs()
        raise _noexec(name, "bad program header count")
    end = e_phoff + e_phnum * PHDR_SIZE
    table = raw[e_phoff:end] if end <= len(raw) else pread(e_phnum * PHDR_SIZE, e_phoff)
    phdrs = parse_phdrs(table)
    interp = None
    for ph in phdrs:
        if ph.p_type == PT_INTERP:  # usually inside the first read already
            stop = ph.p_offset + ph.p_filesz
            path = raw[ph.p_offset:stop] if stop <= len(raw) else pread(ph.p_filesz, ph.p_offset)
            if len(path) != ph.p_filesz or len(path) < 2 or path[-1:] != b"\0":
                raise _noexec(name, "bad PT_INTERP")
            interp = path[:path.index(b"\0")]  # the kernel opens it as a C string
            break
    return ElfHeaders(e_type, e_machine, e_entry, e_phoff, phdrs, interp)
