"""Do the simulator's example scripts run, and do they print what they promise?

Every ``examples/*.py`` except the host backend's (``host_*``) runs as a subprocess with
``--quick`` (smaller memory sizes, fewer repetitions), must exit 0 within its timeout, and must
print its key lines: the pipeline's byte count for every method, the output the builder's
child wrote into the pipe, the zero faults of shared page tables, ...
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60  # seconds per script; each takes well under 2 s with --quick

# Regular expressions each script's output must match (multiline).
KEY_LINES: dict[str, list[str]] = {
    "build_step_by_step.py": [
        r"launched: the pipe said b'hello world\\n'; wait status 0: exited with 0",
        r"^ +\+ \S+ r-xp .*/libc\.so\.6$",  # mapped by the simulated ld.so after launch
        r"note: written through the builder fd before launch",
        r"open into the child: +FileNotFoundError \[ENOENT\]",
        r"load_elf /etc/passwd: OSError \[ENOEXEC\]",
        r"never launched: wait status 9: killed by signal 9",
        r"a step after launch: +ProcessLookupError \[ESRCH\]",
        r"posix_spawn's path.*exited with 127",
    ],
    "pipeline.py": [
        *(rf"^  {m} +12 +0 " for m in ("spawnfd", "fork-exec", "vfork-exec")),
        r"^  spawnfd +12 +0 +0 ",  # the fd model copies no PTEs
    ],
    "zygote.py": [
        # PTEs copied, tables shared, pages copied, frames: classic fork shares no table
        r"^  fork \(copy\) .* [\d,]+ +0 +[\d,]+ +[\d,]+$",
        r"^  fork \(cow-pt\) .* [\d,]+ +[1-9][\d,]* +[\d,]+ +[\d,]+$",
        r"^  map_cow \(no fork\) .* [\d,]+ +[1-9][\d,]* +[\d,]+ +[\d,]+$",
    ],
    "database_shared_tables.py": [
        r"^ +64 embryo .* 2,097,152 ",   # no sharing: every worker faults every page in
        r"^ +64 fork .* 0 +[\d.]+$",     # shared tables: the parent filled them, no faults
        r"^ +64 embryo .* 0 +[\d.]+$",
    ],
    "system_replacement.py": [
        *(rf"^  {m} +3 +0 " for m in ("fork-exec", "cow-pt", "vfork-exec", "spawnfd")),
        r"^  spawnfd +3 +0 +0 ",
    ],
}


def sim_examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("host_"))


def test_every_example_has_key_lines() -> None:
    """A new simulator example should say what its output must contain."""
    assert set(sim_examples()) <= set(KEY_LINES), set(sim_examples()) - set(KEY_LINES)


@pytest.mark.parametrize("name", sim_examples())
def test_example_runs(name: str) -> None:
    script = EXAMPLES / name
    assert script.read_text().lstrip().startswith('"""'), "examples open with a docstring"
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    for pattern in KEY_LINES.get(name, []):
        assert re.search(pattern, proc.stdout, re.MULTILINE), (
            f"{name}: no line matches {pattern!r}\n{proc.stdout}")
