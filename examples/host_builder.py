"""The host builder: a real child set up step by step, with errors that say which step.

Run it: ``python examples/host_builder.py``

1. A child is built with `spawnfd.host.create_process()`: run through the dynamic loader
   (``load_elf`` of ld.so), with its own working directory, a file opened straight into its
   fd 0, our pipe as its fd 1, and nothing else in its descriptor table. It is held by a pidfd
   and awaited with trio.
2. The error story. ``os.posix_spawn`` asked to join a process group we may not join (pgid 1)
   returns one errno for the whole launch, and Python pins it on the program:
   ``PermissionError: ... '/bin/true'``. The builder raises ``FileNotFoundError`` naming a
   missing directory at the ``chdir`` call, before any process exists; a step only the kernel
   can refuse in the child (joining that process group) comes back as the exact exception with
   a note naming the step; and what Linux cannot do before exec says so.
"""

from __future__ import annotations

import os
import tempfile

import trio

import spawnfd.host

LD_SO = "/lib64/ld-linux-x86-64.so.2"


async def build_a_child(workdir: str) -> None:
    with open(os.path.join(workdir, "greeting.txt"), "w") as f:
        f.write("hello from a file opened into the child\n")
    r, w = os.pipe()
    async with spawnfd.host.create_process() as child:
        ld = await child.load_elf(LD_SO)  # "map ld.so": here, run it with the program
        await child.chdir(workdir)
        await child.open("greeting.txt", os.O_RDONLY, fd=0)  # relative to the child's cwd
        await child.install_fd(1, w)
        await child.setup_stack(
            ["sh", "-c", 'cat; echo "cwd=$(pwd) argv0=$0"; ls /proc/self/fd | tr "\\n" " "'],
            env={"PATH": "/usr/bin:/bin"},
            executable="/bin/sh",
            interpreter=ld,
        )
    os.close(w)  # the child has its own copy now
    async with trio.lowlevel.FdStream(r) as out:
        text = b""
        while chunk := await out.receive_some():
            text += chunk
    status = await child.wait()  # waitid(P_PIDFD) after the pidfd became readable
    print(text.decode().rstrip())
    print(f"  (fd 0: the file, 1: our pipe, 2: ls's own directory: nothing else was inherited)")
    print(f"  pid {child.pid}, wait status {status}")


def posix_spawn_story() -> None:
    print("\nos.posix_spawn with a process group we may not join:")
    try:
        os.posix_spawn("/bin/true", ["true"], os.environ, setpgroup=1)
    except OSError as e:
        print(f"  {type(e).__name__}: {e}   <- blames the program; the group was the problem")


async def builder_story() -> None:
    print("\nthe builder, same mistakes:")
    try:
        async with spawnfd.host.create_process() as child:
            await child.setup_stack(["/bin/true"])
            await child.chdir("/no/such/dir")
    except FileNotFoundError as e:
        print(f"  at the chdir() call, before any process exists: {type(e).__name__}: {e}")
    try:
        async with spawnfd.host.create_process() as child:
            await child.setup_stack(["/bin/true"])
            await child.setpgroup(1)
    except PermissionError as e:
        notes = "; ".join(getattr(e, "__notes__", []))
        print(f"  at launch, in the child: {type(e).__name__}: {e} [{notes}]")
    try:
        async with spawnfd.host.create_process() as child:
            await child.mmap(0x10000, 4096)
    except NotImplementedError as e:
        print(f"  and what Linux cannot do before exec: NotImplementedError: {str(e)[:90]}...")


async def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        await build_a_child(workdir)
    posix_spawn_story()
    await builder_story()


if __name__ == "__main__":
    trio.run(main)
