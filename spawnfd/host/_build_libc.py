"""cffi API-mode builder for ``spawnfd.host._libc``, the host launcher.

Run by setuptools through ``cffi_modules`` in ``setup.py``, or standalone
(``python spawnfd/host/_build_libc.py``) to compile the module and copy it next to this file.
Set ``SPAWNFD_SANITIZE=1`` at build time for an ASan/UBSan build.
"""

from __future__ import annotations

import os
import pathlib

import cffi

_HERE = pathlib.Path(os.path.abspath(os.path.dirname(__file__)))

_FLAGS = ["-Wall", "-Wextra", "-Werror", "-std=gnu11", "-O2"]
_LINK: list[str] = []
if os.environ.get("SPAWNFD_SANITIZE") == "1":
    _SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    _FLAGS += _SAN
    _LINK += _SAN

ffibuilder = cffi.FFI()
ffibuilder.cdef((_HERE / "_launch.cdef").read_text())
ffibuilder.set_source(
    "spawnfd.host._libc",
    (_HERE / "_launch.c").read_text(),
    extra_compile_args=_FLAGS,
    extra_link_args=_LINK,
)

if __name__ == "__main__":
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        built = ffibuilder.compile(tmpdir=tmp, verbose=True)
        shutil.copy(built, _HERE / os.path.basename(built))
