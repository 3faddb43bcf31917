"""Memory-manager benchmark: populate speed, host memory per simulated GiB, boot time.

Each size runs in a fresh subprocess so host RSS is measured cleanly. Figures are wall time
of single C calls (populate of the whole range is one call). Usage:

    spawnfd bench mm                      # 1, 8 and 64 GiB
    spawnfd bench mm --sizes 1 8          # GiB
    spawnfd bench mm --json out.json
"""

from __future__ import annotations

import argparse
import json
import mmap
import subprocess
import sys
import time

GIB = 1 << 30
PAGE = 4096


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_size(gib: int) -> dict[str, float]:
    """Populate ``gib`` GiB of private anonymous memory in a fresh kernel; measure."""
    import spawnfd

    rss0 = rss_kib()
    t = time.perf_counter()
    k = spawnfd.Kernel(f"{gib + gib // 8 + 1}G")
    boot_s = time.perf_counter() - t
    p = k.init
    size = gib * GIB
    a = p.mm.mmap(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    rss1 = rss_kib()
    t = time.perf_counter()
    p.mm.populate(a, size, write=True)
    populate_s = time.perf_counter() - t
    rss2 = rss_kib()
    t = time.perf_counter()
    p.mm.populate(a, size, write=True, stamp=0x5EED)
    stamp_s = time.perf_counter() - t
    assert p.mm.read(a + size - 8, 8) == (0x5EED).to_bytes(8, "little")
    st = p.mm.statistics()
    t = time.perf_counter()
    p.mm.munmap(a, size)
    munmap_s = time.perf_counter() - t
    k.check()
    pages = size // PAGE
    return {
        "gib": gib,
        "pages": pages,
        "boot_s": boot_s,
        "populate_s": populate_s,
        "populate_pages_per_s": pages / populate_s,
        "stamp_pages_per_s": pages / stamp_s,
        "munmap_pages_per_s": pages / munmap_s,
        "pagetable_bytes": st.pagetable_bytes,
        "host_rss_mib": (rss2 - rss0) / 1024,
        "host_rss_mib_per_gib": (rss2 - rss1) / 1024 / gib,
    }


def boot_terabyte() -> dict[str, float]:
    import spawnfd

    rss0 = rss_kib()
    t = time.perf_counter()
    k = spawnfd.Kernel("1T")
    boot = time.perf_counter() - t
    rss1 = rss_kib()
    k.close()
    return {"boot_1t_s": boot, "boot_1t_host_rss_mib": (rss1 - rss0) / 1024}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench mm", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 8, 64], help="GiB")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--boot", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(one_size(args.child)))
        return
    if args.boot:
        print(json.dumps(boot_terabyte()))
        return

    def run(*extra: str) -> dict[str, float]:
        out = subprocess.run([sys.executable, "-m", "spawnfd.bench.mm", *extra], check=True,
                             capture_output=True, text=True).stdout
        result: dict[str, float] = json.loads(out)
        return result

    boot = run("--boot")
    rows = [run("--child", str(g)) for g in args.sizes]
    print(f"Kernel(memory='1T') boots in {boot['boot_1t_s'] * 1e3:.2f} ms, "
          f"host RSS +{boot['boot_1t_host_rss_mib']:.1f} MiB")
    hdr = ("GiB", "populate Mpages/s", "stamp Mpages/s", "munmap Mpages/s", "page tables MiB",
           "host RSS MiB", "host MiB per sim GiB")
    print(" | ".join(hdr))
    for r in rows:
        print(" | ".join([
            f"{r['gib']:>3}", f"{r['populate_pages_per_s'] / 1e6:17.1f}",
            f"{r['stamp_pages_per_s'] / 1e6:14.1f}", f"{r['munmap_pages_per_s'] / 1e6:15.1f}",
            f"{r['pagetable_bytes'] / 2**20:15.1f}", f"{r['host_rss_mib']:12.0f}",
            f"{r['host_rss_mib_per_gib']:20.2f}"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"boot": boot, "sizes": rows}, f, indent=2)


if __name__ == "__main__":
    main()
