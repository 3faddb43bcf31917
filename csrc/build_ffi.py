"""cffi builder for ``spawnfd.sim._kernel``: the simulated kernel in ``csrc/*.c``.

API (out-of-line) mode: ``spawnfd.cdef`` is the only C surface Python sees. Set
``SPAWNFD_SANITIZE=1`` at build time for an AddressSanitizer + UndefinedBehaviorSanitizer
build (load it with ``LD_PRELOAD`` of gcc's libasan.so and libubsan.so; see the README).
``SPAWNFD_DEBUG=1`` builds with ``-O0 -g``.
"""
import glob
import os

from cffi import FFI


def _unicorn_include() -> str:
    """The C headers shipped in the unicorn wheel (a build requirement). The library itself
    is not linked: spawnfd.sim._bindings loads libunicorn.so.2 from the installed package
    with RTLD_GLOBAL before importing the extension, whose unicorn symbols resolve to it."""
    import unicorn

    return os.path.join(os.path.dirname(unicorn.__file__), "include")


HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()
with open(os.path.join(HERE, "spawnfd.cdef")) as f:
    ffibuilder.cdef(f.read())

# -Wvla: no stack array sized at run time (cffi's generated glue uses alloca, bounded)
cflags = ["-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wvla",
          "-fvisibility=hidden"]
ldflags = []
if os.environ.get("SPAWNFD_DEBUG") == "1":
    cflags += ["-O0", "-g"]
else:
    cflags += ["-O2"]
if os.environ.get("SPAWNFD_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", "-g"]
    cflags += san
    ldflags += san

sources = sorted(glob.glob(os.path.join(HERE, "**", "*.c"), recursive=True))
ffibuilder.set_source(
    "spawnfd.sim._kernel",
    '#include "api.h"\n',
    sources=[os.path.relpath(s, os.getcwd()) if s.startswith(os.getcwd()) else s for s in sources],
    # spawnfd/include: the fd model's system-call ABI header, shared with C programs
    include_dirs=[HERE, os.path.join(os.path.dirname(HERE), "spawnfd", "include"),
                  _unicorn_include()],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

if __name__ == "__main__":
    # Build in place for development: python csrc/build_ffi.py
    ffibuilder.compile(tmpdir=os.path.dirname(HERE), verbose=True)
