"""The fd model on the simulator: a child built step by step through its builder fd.

Run it: ``python examples/build_step_by_step.py``

1. ``k.init`` creates an embryo (zero threads, empty memory, empty descriptor table) and fills
   it step by step: it maps ld.so and ``/bin/echo`` with the user-space ELF loader
   (``load_elf``), writes the initial stack (``setup_stack(program=...)``), installs a pipe as
   the child's fd 1, opens ``/dev/null`` straight into its fd 0 and writes a page of data.
   The child's maps are printed before launch: only what the parent put there, no libc.
   Leaving the ``async with`` block closes the builder fd: the first thread starts, the
   simulated ld.so maps libc, ``echo`` writes into the pipe.
2. The same steps for a program of our own (``k.install_program``) that says "ready" and then
   blocks on stdin: its maps, read while it runs, show what ld.so added (marked ``+``); it
   prints the data page the parent wrote into it, once the parent closes its stdin.
3. The error story: a bad step raises the exact ``OSError`` at that step, while the child is
   still an embryo; the rules of the builder fd (dup refused, ``ESRCH`` after launch); and,
   for contrast, the vfork+exec path ``posix_spawn`` takes, where the parent learns only that
   the child exited with status 127.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import Any

import trio

import spawnfd

LD_SO = "/lib64/ld-linux-x86-64.so.2"
ENV = {"PATH": "/usr/bin:/bin"}
RW = mmap.PROT_READ | mmap.PROT_WRITE
ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS


def describe(status: int) -> str:
    if os.WIFEXITED(status):
        return f"wait status {status}: exited with {os.WEXITSTATUS(status)}"
    return f"wait status {status}: killed by signal {os.WTERMSIG(status)}"


def exc(e: OSError) -> str:
    return f"{type(e).__name__} [{errno.errorcode.get(e.errno or 0, e.errno)}] {e.strerror}" + (
        f": {e.filename!r}" if e.filename else "")


def indent(text: str, mark: set[str] | None = None) -> str:
    lines = text.rstrip("\n").splitlines()
    if mark is None:
        return "\n".join(f"    {line}" for line in lines)
    return "\n".join(f"  {'+' if line not in mark else ' '} {line}" for line in lines)


async def read_all(proc: spawnfd.Process, fd: int) -> bytes:
    out = b""
    while chunk := await proc.sys.read(fd, 4096):
        out += chunk
    return out


async def echo_step_by_step(k: spawnfd.Kernel) -> None:
    parent = k.init
    print("1. /bin/echo, built step by step")
    r, w = parent.pipe(os.O_CLOEXEC)  # the child's stdout; O_CLOEXEC matters to exec only
    async with parent.create_process() as child:
        print(f"   process_create      -> pid {child.pid}, builder fd {child.builder.fd}, "
              f"wait handle {child.builder.wait_fd}, state {child.builder.state()!r}")
        ld = await child.load_elf(LD_SO)
        print(f"   load_elf ld.so      -> base {ld.base:#x}, entry {ld.entry:#x}")
        echo = await child.load_elf("/bin/echo")
        print(f"   load_elf /bin/echo  -> base {echo.base:#x}, entry {echo.entry:#x}, "
              f"PT_INTERP {echo.interpreter}")
        sp = await child.setup_stack(["echo", "hello", "world"], ENV, interpreter=ld,
                                     program=echo)
        print(f"   setup_stack         -> rsp {sp:#x} (argv, envp, auxv AT_PHDR/AT_ENTRY/"
              f"AT_BASE); rip = ld.so's entry")
        print(f"   install_fd(1, pipe) -> {await child.install_fd(1, w)}")
        print(f"   open /dev/null      -> {await child.open('/dev/null', os.O_RDONLY, fd=0)}")
        data = await child.mmap(4096, RW, ANON)
        await child.write(data, b"a page written by the parent")
        print(f"   mmap + write        -> {data:#x}: {await child.read(data, 28)!r}")
        st = child.mm.statistics()
        print(f"   before launch: state {child.builder.state()!r}, 0 threads, "
              f"{st.vma_count} mappings, page tables {st.pagetable_bytes // 1024} KiB:")
        print(indent(child.mm.maps()))
    # Leaving the block closed the builder fd: the first thread runs ld.so, then echo.
    parent.close(w)
    out = await read_all(parent, r)
    parent.close(r)
    status = await child.wait()  # through the wait handle
    print(f"   launched: the pipe said {out!r}; {describe(status)}\n")


async def note_reader(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    """A program of our own: "ready", wait for EOF on stdin, then print the data page."""
    await sys.write(1, b"ready\n")
    while await sys.read(0, 4096):
        pass
    note = sys.read_memory(int(env["NOTE"], 16), 64).rstrip(b"\0")
    await sys.write(1, b"note: " + note + b"\n")
    return 0


async def maps_after_ld_so(k: spawnfd.Kernel) -> None:
    parent = k.init
    print("2. a running child's maps: what the simulated ld.so added")
    k.install_program("/tmp/note-reader", note_reader)  # a real ELF (/bin/true's bytes)
    in_r, in_w = parent.pipe(os.O_CLOEXEC)
    out_r, out_w = parent.pipe(os.O_CLOEXEC)
    async with parent.create_process() as child:
        ld = await child.load_elf(LD_SO)
        prog = await child.load_elf("/tmp/note-reader")
        data = await child.mmap(4096, RW, ANON)
        await child.write(data, b"written through the builder fd before launch")
        await child.setup_stack(["note-reader"], {**ENV, "NOTE": f"{data:#x}"},
                                interpreter=ld, program=prog)
        await child.install_fd(0, in_r)
        await child.install_fd(1, out_w)
        before = set(child.mm.maps().splitlines())
    parent.close(in_r)
    parent.close(out_w)
    ready = await parent.sys.read(out_r, 4096)  # ld.so has run once the program speaks
    print(f"   the child said {ready!r}; its maps now (+: mapped after launch):")
    print(indent(child.mm.maps(), mark=before))
    parent.close(in_w)  # EOF on its stdin
    out = await read_all(parent, out_r)
    parent.close(out_r)
    print(f"   then {out!r}; {describe(await child.wait())}\n")


async def error_story(k: spawnfd.Kernel) -> None:
    parent = k.init
    print("3. errors: the exact OSError at the failing step, before anything runs")
    try:
        async with parent.create_process() as child:
            await child.load_elf(LD_SO)
            try:
                await child.open("/no/such/file", os.O_RDONLY, fd=0)
            except OSError as e:
                print(f"   open into the child:  {exc(e)}")
            try:
                parent.dup(child.builder.fd)
            except OSError as e:
                print(f"   dup(builder fd):      {exc(e)}  (the one handle to the embryo)")
            print(f"   the embryo is untouched: state {child.builder.state()!r}, "
                  f"{child.mm.statistics().vma_count} mappings (ld.so's)")
            await child.load_elf("/etc/passwd")  # raises, and leaves the block with it
    except OSError as e:
        print(f"   load_elf /etc/passwd: {exc(e)}")
    # The exception left the block: the embryo was destroyed instead of launched.
    print(f"   the block raised, so the embryo was never launched: "
          f"{describe(child.builder.returncode or 0)}")

    async with parent.create_process() as child:
        ld = await child.load_elf(LD_SO)
        await child.setup_stack(["/bin/true"], ENV, interpreter=ld)  # "ld.so /bin/true"
    try:
        await child.write(0x10000, b"too late")
    except OSError as e:
        print(f"   a step after launch:  {exc(e)}")
    print(f"   ld.so /bin/true:      {describe(await child.wait())}")

    # posix_spawn (glibc: vfork + exec) cannot fail a step before the child exists; a child
    # whose exec fails can only report "it failed" after the fact -- with exit status 127
    # (older implementations, the shell) or one errno for the whole launch (glibc), never
    # which step. Here the simulator's vfork+exec child exits 127 on the failed exec.
    proc = await parent.vfork_exec("/etc/passwd", ["passwd"], ENV)
    print(f"   vfork+exec (posix_spawn's path) of /etc/passwd: pid {proc.pid} existed, "
          f"{describe(await proc.wait())}")


async def main() -> None:
    async with spawnfd.open_kernel(memory="1G") as k:
        for _ in range(3):  # init starts with an empty table: 0, 1, 2 on /dev/null
            k.init.open("/dev/null", os.O_RDWR)
        await echo_step_by_step(k)
        await maps_after_ld_so(k)
        await error_story(k)
        k.check()


if __name__ == "__main__":
    trio.run(main)
