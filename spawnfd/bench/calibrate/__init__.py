"""A cost model of this host's real Linux kernel: ``spawnfd calibrate``.

The simulator counts what a kernel does (PTEs copied, page tables allocated, faults by kind,
forks, execs) exactly, but its wall time is the simulator's, not a kernel's. This package measures
the real kernel the tests run on and fits per-operation costs, so that a set of simulator counters
can be turned into "the time a real kernel on this host would take"::

    spawnfd calibrate                 # measure (about 3 s), print, store the model
    spawnfd calibrate --validate      # also: fit on small parents, predict fork+exec of big ones
    spawnfd calibrate --quick --json  # smaller sizes, the model as JSON on stdout

From Python::

    from spawnfd.bench.calibrate import CostModel, calibrate, try_load
    model = try_load() or calibrate()
    seconds = model.predict({"forks": 1, "execs": 1, "ptes_copied": 262_144,
                             "tables_allocated": 512})

What is measured — in a fresh ``python -I -S`` running :mod:`.measure` (standard library only), so
"a small Python parent" is the same whatever the caller has imported; ``time.perf_counter_ns``,
the garbage collector off, medians of repeats after warm-ups; anonymous regions are
``MAP_PRIVATE | MAP_ANONYMOUS`` with ``MADV_NOHUGEPAGE``, so the kernel maps 4 KiB pages like
the simulator does:

1. **fork against populated size** — the Python parent maps N MiB, writes one byte per page, and
   times ``os.fork()`` + child ``os._exit(0)`` + ``os.waitpid``; this includes the child's
   teardown of the copied page tables, which is what a fork+exec also pays (exec drops the copied
   mm). *Dense* points populate every page (PTEs = pages, page tables = pages / 512); *sparse*
   points populate one page per 2 MiB (one PTE per page table), so the per-PTE and the
   per-page-table cost can be told apart — with dense points alone they are collinear.
2. **anonymous fault** — writing one byte per page of a fresh anonymous region, minus the same
   writes once the pages are present: the net cost per page (allocate, zero, map).
3. **file fault** — a private read-only mapping of a file already in the page cache, one byte read
   per page, minus the same reads once mapped. Per *page*: Linux maps up to 16 neighbouring
   page-cache pages per fault ("fault-around"), and that is part of the real per-page cost.
4. **COW fault** — the parent populates a region and forks; the child writes one byte per
   inherited page (each write copies a page), minus a second pass, measured inside the child and
   reported through a pipe.
5. **exec of a small binary** — fork + ``execv("/bin/true")`` + ``waitpid`` from the Python parent
   holding nothing extra, interleaved with fork + ``_exit`` at the same size: the difference is the
   fixed cost of exec (``exec_base``). ``os.posix_spawn`` of ``/bin/true`` is recorded beside it.

A run whose fit inputs are implausible (fork time not growing with size, exec not costing
anything, a cost not positive) was disturbed by another process and is measured again, up to
three times (``Measurements.attempts``).

The fit (:func:`fit_fork`) is a weighted least-squares fit of
``fork = fork_base + per_pte * PTEs + per_table * page_tables`` over the dense and sparse points,
weighted by 1/time² so that it minimises *relative* error (timing noise is roughly proportional,
and the validation target is a relative one). ``fork_base`` is the intercept: forking a small
Python parent (the interpreter's own few thousand resident anonymous pages, its mappings and
its post-fork work included — ``machine["parent_rss_anon_pages"]``). The fault costs and
``exec_base`` are direct medians.

:func:`validate` checks the model honestly: it fits on fork+_exit of the smaller half of the
sizes only, then measures real fork+exec at every size and compares with
``predict(fork_counters(pages, exec=True))``; the target is a maximum error of 15 %.

The model is stored as JSON at ``$SPAWNFD_COST_MODEL``, else
``$XDG_CACHE_HOME/spawnfd/cost-model.json`` (``~/.cache/spawnfd/cost-model.json``), with a
description of the machine it was measured on.

The package, by job (each imports only the ones above it in this list)::

    model     the constants, CostModel (predict, JSON storage: default_path, try_load),
              ForkPoint, Measurements, fork_counters, counters_between
    fit       least_squares, fit_fork
    measure   the measurements on the real kernel; it also runs alone in the fresh interpreter,
              so it imports the standard library only
    run       calibrate, validate: measure (isolated, again if implausible), fit, build the model;
              ValidationRow, ValidationReport
    cli       ``spawnfd calibrate``: main and the tables it prints
"""

from .model import COSTS as COSTS
from .model import COUNTERS as COUNTERS
from .model import TARGET_ERROR_PCT as TARGET_ERROR_PCT
from .model import CostModel as CostModel
from .model import ForkPoint as ForkPoint
from .model import Measurements as Measurements
from .model import counters_between as counters_between
from .model import default_path as default_path
from .model import fork_counters as fork_counters
from .model import try_load as try_load
from .fit import fit_fork as fit_fork
from .fit import least_squares as least_squares
from .measure import Progress as Progress
from .measure import describe_machine as describe_machine
from .run import ValidationReport as ValidationReport
from .run import ValidationRow as ValidationRow
from .run import calibrate as calibrate
from .run import validate as validate
from .cli import main as main
