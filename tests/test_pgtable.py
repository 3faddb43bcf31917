"""Page tables: x86-64 entry bits, table accounting, freeing emptied tables."""

from __future__ import annotations

import mmap

import spawnfd

from .helpers import ANON, PAGE, PTE_A, PTE_D, PTE_NX, PTE_P, PTE_U, PTE_W, RW, pte_pfn

GIB = 1 << 30
FIXED = ANON | spawnfd.MAP_FIXED


def test_anon_write_pte_bits(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(PAGE, RW, ANON)
    assert p.mm.translate(a) == 0
    p.mm.write(a, b"x")
    pte = p.mm.translate(a)
    assert pte & (PTE_P | PTE_W | PTE_U | PTE_A | PTE_D | PTE_NX) == (
        PTE_P | PTE_W | PTE_U | PTE_A | PTE_D | PTE_NX)
    assert pte & ~(0x000FFFFFFFFFF000 | 0xFFF | PTE_NX) == 0  # nothing outside bits 0-51, 63
    assert kernel.frame_info(pte_pfn(pte)) == (1, "anon")


def test_anon_read_maps_zero_page_readonly(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(2 * PAGE, RW, ANON)
    assert p.mm.read(a, 2 * PAGE) == bytes(2 * PAGE)
    ptes = [p.mm.translate(a), p.mm.translate(a + PAGE)]
    assert pte_pfn(ptes[0]) == pte_pfn(ptes[1])
    assert kernel.frame_info(pte_pfn(ptes[0]))[1] == "zero"
    assert all(pte & PTE_P and not pte & PTE_W for pte in ptes)
    st = kernel.statistics()
    assert st.zero_page_maps == 2 and st.anon_frames == 0
    assert p.mm.statistics().rss_bytes == 0  # the zero page is not rss, as in Linux


def test_exec_mapping_clears_nx(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(PAGE, mmap.PROT_READ | mmap.PROT_EXEC, ANON)
    p.mm.read(a, 1)
    assert not p.mm.translate(a) & PTE_NX
    p.mm.mprotect(a, PAGE, mmap.PROT_READ)
    assert p.mm.translate(a) & PTE_NX


def test_one_gib_costs_515_tables_and_munmap_frees_them() -> None:
    # A 1 GiB-aligned GiB: pgd + pud + pmd + 512 pte tables = 515 frames, 2060 KiB
    # (the 2022 RFC quoted ~2 MB of page tables per populated GiB).
    kernel = spawnfd.Kernel("2G")
    p = kernel.init
    base = p.mm.statistics().pagetable_bytes
    assert base == PAGE  # the pgd
    a = p.mm.mmap(GIB, RW, FIXED, addr=4 * GIB)
    p.mm.populate(a, GIB, write=True)
    assert p.mm.statistics().pagetable_bytes == 515 * PAGE
    assert kernel.statistics().pagetable_frames == 515
    p.mm.munmap(a, GIB)
    assert p.mm.statistics().pagetable_bytes == PAGE
    st = kernel.statistics()
    assert st.pagetable_frames == 1 and st.tables_freed == 514
    kernel.check()
    kernel.close()


def test_partial_munmap_keeps_tables_still_in_use(kernel: spawnfd.Kernel) -> None:
    # What if only half a pte table's range is unmapped: is the table kept for the other half?
    p = kernel.init
    a = p.mm.mmap(2 << 20, RW, FIXED, addr=8 * GIB)
    p.mm.populate(a, 2 << 20, write=True, stamp=7)
    p.mm.munmap(a, 1 << 20)
    assert p.mm.statistics().pagetable_bytes == 4 * PAGE
    assert p.mm.read(a + (1 << 20), 8) == (7).to_bytes(8, "little")
    p.mm.munmap(a + (1 << 20), 1 << 20)
    assert p.mm.statistics().pagetable_bytes == PAGE


def test_mprotect_readonly_clears_w_and_write_after_rw_reuses(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(4 * PAGE, RW, ANON)
    p.mm.populate(a, 4 * PAGE, write=True, stamp=5)
    p.mm.mprotect(a, 4 * PAGE, mmap.PROT_READ)
    assert all(not p.mm.translate(a + i * PAGE) & PTE_W for i in range(4))
    p.mm.mprotect(a, 4 * PAGE, RW)
    assert not p.mm.translate(a) & PTE_W  # private: W comes back through a fault
    before = kernel.statistics()
    p.mm.write(a, b"!")
    after = kernel.statistics()
    assert after.faults.wp_reuse == before.faults.wp_reuse + 1
    assert after.frames_allocated == before.frames_allocated
    assert p.mm.translate(a) & PTE_W


def test_tables_spread_over_pgd_entries(kernel: spawnfd.Kernel) -> None:
    # Two mappings 512 GiB apart need separate pud tables; unmapping one keeps the other's.
    p = kernel.init
    a = p.mm.mmap(PAGE, RW, FIXED, addr=1 << 39)
    b = p.mm.mmap(PAGE, RW, FIXED, addr=2 << 39)
    p.mm.write(a, b"a")
    p.mm.write(b, b"b")
    assert p.mm.statistics().pagetable_bytes == (1 + 3 + 3) * PAGE
    p.mm.munmap(a, PAGE)
    assert p.mm.statistics().pagetable_bytes == (1 + 3) * PAGE
    assert p.mm.read(b, 1) == b"b"
