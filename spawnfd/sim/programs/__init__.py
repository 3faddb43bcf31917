"""The simulator's stand-in programs: what a launched thread runs when no CPU executes the
program's x86-64 code.

* :mod:`.ldso` — the dynamic loader: reads the initial stack, maps the program and its
  ``DT_NEEDED`` libraries as glibc's ld.so does, then runs the program's behaviour;
* :mod:`.sh` — ``/bin/sh -c``: a small POSIX shell after dash (lists, pipelines,
  assignments, quoting, ``$(...)``, subshells, ``if``/``while``/``for``), refusing the rest;
* :mod:`.coreutils` — ``true``, ``false``, ``echo``, ``cat``, ``head``, ``wc``, ``yes``,
  ``sleep``, ``env`` and the ``memload`` memory workload.

Each behaviour is ``async def main(sys, argv, env) -> int``; ``Kernel.register_program`` adds
one of your own.
"""

from .coreutils import memload_main as memload_main
