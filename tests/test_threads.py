"""Threads on the CPU (issue 14, item 4): clone(CLONE_THREAD), futex, thread exit and
exit_group, thread-directed signals, per-thread masks, fork and execve from a thread. Every
program runs on the simulator and natively; stdout, stderr and exit status must be equal."""

from __future__ import annotations

import subprocess

import pytest
import trio
import trio.testing

import spawnfd

from .helpers import REAL_ENV as ENV
from .helpers import assert_same_run as same
from .helpers import boot_real, build_probe
from .helpers import run_native as native
from .helpers import run_simulated as simulated

@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "thread_probe", "-pthread")


@pytest.mark.parametrize("scenario", ["all", "mainexit", "groupexit", "exec", "segv"])
async def test_thread_probe_as_natively(probe: str, scenario: str) -> None:
    """tests/thread_probe.c: pthread mutexes, condition variables and joins; futex errors
    (EAGAIN, EINVAL, ETIMEDOUT, EFAULT, ENOSYS) and WAKE_OP, CMP_REQUEUE; a signal to one
    thread and one taken by the thread that does not block it; fork from a thread; the
    first thread exiting before the last; exit_group, execve and SIGSEGV from a thread."""
    async with spawnfd.open_kernel("1G") as k:
        boot_real(k)
        argv = [probe, scenario]
        sim = await simulated(k, argv)
        same(sim, native(argv))
        assert k._runtime.threads == {} and k._runtime.waits == {}
        k.check()
        st = k.statistics()
        assert st.syscalls_by_nr.get(435, 0) + st.syscalls_by_nr.get(56, 0) >= 1  # clone


PYTHON = [
    "import threading, queue\nq = queue.Queue()\n"
    "ts = [threading.Thread(target=lambda n=n: q.put(sum(range(n * 10000)))) for n in range(4)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]\n"
    "print(sorted(q.get() for _ in ts), threading.active_count())",
    "from concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(4) as ex: print(list(ex.map(pow, range(12), [3] * 12)))",
    "import threading, subprocess\n"
    "t = threading.Thread(target=lambda: print(subprocess.run(['echo', 'from a thread'],"
    " capture_output=True).stdout))\nt.start(); t.join()",
    "import threading, time\ne = threading.Event()\nt0 = time.monotonic()\n"
    "print(e.wait(0.05), time.monotonic() - t0 >= 0.05)\n"
    "threading.Timer(0.01, e.set).start(); print(e.wait(5))",
    "import os, signal, threading, time\n"
    "signal.signal(signal.SIGUSR1, lambda *a: print('handled in', threading.current_thread().name))\n"
    "threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1)).start()\n"
    "time.sleep(0.3); print('done')",
    "import os, threading, time\nthreading.Thread(target=os._exit, args=(7,)).start()\n"
    "time.sleep(10)",
    "import threading\nlock = threading.Lock(); n = [0]\n"
    "def work():\n    for _ in range(2000):\n        with lock: n[0] += 1\n"
    "ts = [threading.Thread(target=work) for _ in range(3)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]; print(n[0])",
]


@pytest.mark.parametrize("code", PYTHON)
async def test_python_threads_as_natively(code: str) -> None:
    async with spawnfd.open_kernel("2G") as k:
        boot_real(k)
        argv = ["python3.11", "-c", code]
        same(await simulated(k, argv), native(argv))
        assert k._runtime.threads == {}
        k.check()


@pytest.mark.parametrize("how", ["kill", "terminate", "handler"])
async def test_a_signal_from_python_reaches_a_threaded_program(how: str) -> None:
    """Threads parked in a futex wait (a join), a sleep and a read of stdin when the process
    is signalled: SIGKILL and SIGTERM's default end all of them (the kernel lets go of every
    thread, check() passes); with a handler, the one thread that takes it runs it (the main
    thread, in its read) and the others sleep on."""
    code = ("import signal, sys, os, threading, time\n"
            "if sys.argv[1] == 'handler':\n"
            "    signal.signal(signal.SIGTERM, lambda s, f: (print('term', s, flush=True),"
            " os._exit(7)))\n"
            "ts = [threading.Thread(target=time.sleep, args=(30,)) for _ in range(2)]\n"
            "ts.append(threading.Thread(target=ts[0].join))\n"
            "[t.start() for t in ts]\n"
            "print('ready', threading.active_count(), flush=True)\nsys.stdin.read()\n")
    async with spawnfd.open_kernel("1G") as k:
        boot_real(k)
        proc = await spawnfd.open_process(["python3.11", "-c", code, how], kernel=k,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env=ENV)
        assert await proc.stdout.receive_some(100) == b"ready 4\n"
        await trio.testing.wait_all_tasks_blocked()
        assert len(k._runtime.threads[proc.pid]) == 3
        with trio.fail_after(30):
            if how == "kill":
                proc.kill()
                assert await proc.wait() == -9
            elif how == "terminate":
                proc.terminate()
                assert await proc.wait() == -15
            else:
                proc.terminate()
                assert await proc.wait() == 7
                assert await proc.stdout.receive_some(100) == b"term 15\n"
        await proc.stdin.aclose()
        assert k._runtime.threads == {} and k._runtime.futex_lots == {}
        k.check()
