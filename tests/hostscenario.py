"""Run fork scenarios on the host Linux kernel: the oracle of ``test_fork_differential.py``.

Run as a script in a fresh interpreter (``python -I hostscenario.py``), never imported by pytest
code that forks: it reads a pickled list of scenarios (each a list of ops, see
``test_fork_differential.py``) on stdin and writes a pickled list of results on stdout, one per
scenario: ``("ok", [value per op])`` or ``("error", message)``.

For each scenario the coordinator (this process) forks a root host process; every host process
runs a loop that reads one command from its own socket, performs it with the ``mmap`` module
(mappings), ``ctypes`` (mprotect, madvise, munmap, raw loads/stores, ``process_vm_readv``/
``writev`` probes) and ``os.fork``/``os.waitpid``, and answers on the same socket. A fork command
carries the child's socket (``SCM_RIGHTS``), so every process holds exactly its own socket.
Robustness: every wait of the coordinator has a deadline; the coordinator is a child subreaper
and every host process dies with its parent (``PR_SET_PDEATHSIG``) and on EOF of its socket;
whatever happens, every host process is killed and reaped before the next scenario.
"""

from __future__ import annotations

import array
import ctypes
import errno
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import zlib
from typing import Any

PAGE = 4096
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
OP_TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_VM_RW_ARGS: list[Any] = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                          ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]
_libc.process_vm_readv.argtypes = _VM_RW_ARGS
_libc.process_vm_writev.argtypes = _VM_RW_ARGS
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_writev.restype = ctypes.c_ssize_t


class HostError(Exception):
    pass


def _zipped(data: bytes) -> tuple[str, bytes]:
    """Bytes read, as ``("zlib", compressed)``: final reads of big, mostly-zero mappings stay
    small, so the coordinator stays small and its forks stay cheap (fork copies the forker's
    page tables), and so does what goes back to pytest."""
    return ("zlib", zlib.compress(data, 1))


# ---------------------------------------------------------------- framing (length + pickle)

def _send(sock: socket.socket, obj: Any, fds: tuple[int, ...] = ()) -> None:
    data = pickle.dumps(obj)
    msg = struct.pack("!I", len(data)) + data
    if fds:
        sent = sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     array.array("i", fds))])
        msg = msg[sent:]
    if msg:
        sock.sendall(msg)


def _recv_exact(sock: socket.socket, n: int, fds: list[int]) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data, anc, _flags, _addr = sock.recvmsg(n - len(buf), socket.CMSG_SPACE(4 * 4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                fds.extend(a)
        if not data:
            raise EOFError
        buf += data
    return bytes(buf)


def _recv(sock: socket.socket) -> tuple[Any, list[int]]:
    fds: list[int] = []
    (n,) = struct.unpack("!I", _recv_exact(sock, 4, fds))
    return pickle.loads(_recv_exact(sock, n, fds)), fds


# ---------------------------------------------------------------- host process

def _errname(e: int) -> str:
    return errno.errorcode.get(e, str(e))


def _check(rc: int) -> None:
    if rc != 0:
        raise OSError(ctypes.get_errno(), "")


def _vm_rw(write: bool, addr: int, data: bytes | None, n: int) -> bytes | None:
    """Access own memory through process_vm_{readv,writev}: EFAULT instead of SIGSEGV."""
    buf = ctypes.create_string_buffer(data if data is not None else n, n)
    local = _IOVec(ctypes.addressof(buf), n)
    remote = _IOVec(addr, n)
    fn = _libc.process_vm_writev if write else _libc.process_vm_readv
    got = fn(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got < 0:
        raise OSError(ctypes.get_errno(), "")
    if got != n:
        return b"PARTIAL:%d" % got
    return None if write else buf.raw[:n]


def _serve(sock: socket.socket, addrs: dict[int, int], keep: list[Any]) -> None:
    """The loop of one host process; never returns normally (os._exit)."""
    while True:
        try:
            cmd, fds = _recv(sock)
        except (EOFError, OSError):
            os._exit(3)
        op = cmd[0]
        if op == "exit":
            os._exit(cmd[1])
        ppid = os.getpid()
        try:
            if op == "mmap":
                _, mid, npages, shared = cmd
                flags = mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE
                m = mmap.mmap(-1, npages * PAGE, flags=flags,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE)
                anchor = ctypes.c_char.from_buffer(m)
                keep.append((m, anchor))
                addrs[mid] = ctypes.addressof(anchor)
                value: Any = None
            elif op == "write":
                _, mid, off, data = cmd
                ctypes.memmove(addrs[mid] + off, data, len(data))
                value = None
            elif op == "read":
                _, mid, off, n = cmd
                value = _zipped(ctypes.string_at(addrs[mid] + off, n))
            elif op == "probe_read":
                _, mid, off, n = cmd
                value = _vm_rw(False, addrs[mid] + off, None, n)
                value = _zipped(value) if isinstance(value, bytes) else value
            elif op == "probe_write":
                _, mid, off, data = cmd
                value = _vm_rw(True, addrs[mid] + off, data, len(data))
            elif op == "mprotect":
                _, mid, lo, hi, prot = cmd
                _check(_libc.mprotect(addrs[mid] + lo * PAGE, (hi - lo) * PAGE, prot))
                value = None
            elif op == "madvise":
                _, mid, lo, hi, advice = cmd
                _check(_libc.madvise(addrs[mid] + lo * PAGE, (hi - lo) * PAGE, advice))
                value = None
            elif op == "populate":
                _, mid, lo, hi, write = cmd
                advice = MADV_POPULATE_WRITE if write else MADV_POPULATE_READ
                _check(_libc.madvise(addrs[mid] + lo * PAGE, (hi - lo) * PAGE, advice))
                value = None
            elif op == "munmap":
                _, mid, lo, hi = cmd
                _check(_libc.munmap(addrs[mid] + lo * PAGE, (hi - lo) * PAGE))
                value = None
            elif op == "sleep":                 # for the runner's own timeout test
                time.sleep(cmd[1])
                value = None
            elif op == "wait":
                _, pid = cmd
                value = os.waitpid(pid, 0)[1]
            elif op == "fork":
                if len(fds) != 1:
                    raise HostError(f"fork without its socket: {fds}")
                pid = os.fork()
                if pid == 0:
                    try:
                        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                        if os.getppid() != ppid:
                            os._exit(4)
                        sock.close()
                        sock = socket.socket(fileno=fds.pop())
                    except BaseException:
                        os._exit(5)
                    continue
                value = pid
            else:
                raise HostError(f"unknown op {op!r}")
            reply: tuple[str, Any] = ("ok", value)
        except OSError as e:
            reply = ("errno", _errname(e.errno or 0))
        except Exception as e:  # a bug of the runner: report it, do not die silently
            reply = ("exc", repr(e))
        finally:
            for fd in fds:
                os.close(fd)
        try:
            _send(sock, reply)
        except OSError:
            os._exit(6)


def _host_main(sock: socket.socket) -> None:
    """The root host process: fresh stdio, die with the coordinator, serve."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        _serve(sock, {}, [])
    finally:
        os._exit(7)


# ---------------------------------------------------------------- coordinator

class _Coordinator:
    def __init__(self) -> None:
        self.socks: dict[int, socket.socket] = {}   # scenario process -> socket
        self.pids: dict[int, int] = {}              # scenario process -> host pid (alive)

    def spawn_root(self) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            a.close()
            _host_main(b)
        b.close()
        self.socks[0], self.pids[0] = a, pid

    def call(self, proc: int, cmd: tuple[Any, ...], fds: tuple[int, ...] = ()) -> Any:
        sock = self.socks[proc]
        sock.settimeout(OP_TIMEOUT)
        try:
            _send(sock, cmd, fds)
            reply, extra = _recv(sock)
        except socket.timeout:
            raise HostError(f"host process {proc} timed out on {cmd[0]}") from None
        except (EOFError, OSError) as e:
            raise HostError(f"host process {proc} died on {cmd[0]}: {e!r}") from None
        for fd in extra:
            os.close(fd)
        kind, value = reply
        if kind == "exc":
            raise HostError(f"host process {proc} raised {value} on {cmd[0]}")
        return value  # ("errno", "EFAULT") gives the errno's name: a result like any other

    def run(self, ops: list[tuple[Any, ...]]) -> list[Any]:
        self.spawn_root()
        parent: dict[int, int] = {}
        results: list[Any] = []
        for op in ops:
            kind, proc = op[0], op[1]
            if kind == "fork":
                child = op[2]
                a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    pid = self.call(proc, ("fork",), (b.fileno(),))
                finally:
                    b.close()
                if not isinstance(pid, int):
                    a.close()
                    raise HostError(f"fork failed: {pid}")
                self.socks[child], self.pids[child] = a, pid
                parent[child] = proc
                results.append(pid)
            elif kind == "exit":
                sock = self.socks.pop(proc)
                pid = self.pids[proc]
                try:
                    _send(sock, ("exit", 0))
                finally:
                    sock.close()
                status = self.call(parent[proc], ("wait", pid))
                del self.pids[proc]
                results.append(status)
            else:
                results.append(self.call(proc, (kind,) + tuple(op[2:])))
        # tear down: processes the scenario left alive exit leaves first (a child's id is
        # greater than its parent's), unrecorded; the root exits last, the coordinator reaps it
        for proc in sorted(self.socks, reverse=True):
            if proc != 0:
                sock = self.socks.pop(proc)
                _send(sock, ("exit", 0))
                sock.close()
                self.call(parent[proc], ("wait", self.pids.pop(proc)))
        sock = self.socks.pop(0)
        pid = self.pids.pop(0)
        _send(sock, ("exit", 0))
        sock.close()
        deadline = time.monotonic() + OP_TIMEOUT
        while True:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                if status != 0:
                    raise HostError(f"root exited with status {status:#x}")
                break
            if time.monotonic() > deadline:
                self.pids[0] = pid
                raise HostError("root did not exit")
            time.sleep(0.001)
        return results

    def cleanup(self) -> None:
        for sock in self.socks.values():
            sock.close()
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.socks.clear()
        self.pids.clear()
        # Orphans reparent to us (subreaper) and die with their parents (PDEATHSIG): reap all.
        deadline = time.monotonic() + OP_TIMEOUT
        while True:
            try:
                got, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if got == 0:
                if time.monotonic() > deadline:
                    raise HostError("could not reap every host process")
                select.select([], [], [], 0.001)


def run_scenario(ops: list[tuple[Any, ...]]) -> tuple[str, Any]:
    c = _Coordinator()
    try:
        return ("ok", c.run(ops))
    except Exception as e:
        return ("error", f"{type(e).__name__}: {e}")
    finally:
        c.cleanup()


def _open_fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"), key=int)


def main() -> None:
    """stdin: pickled ``{"scenarios": [ops, ...], "op_timeout": seconds}``; stdout: pickled
    ``{"results": [...], "fds_before": [...], "fds_after": [...], "children_left": n}``."""
    global OP_TIMEOUT
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    request = pickle.load(sys.stdin.buffer)
    OP_TIMEOUT = float(request.get("op_timeout", OP_TIMEOUT))
    fds_before = _open_fds()
    out = [run_scenario(ops) for ops in request["scenarios"]]
    fds_after = _open_fds()
    children_left = 0
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            children_left += 1
        children_left += 1      # one still running
    except ChildProcessError:
        pass
    sys.stdout.buffer.write(pickle.dumps({"results": out, "fds_before": fds_before,
                                          "fds_after": fds_after,
                                          "children_left": children_left}))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
