# cffi still needs setup.py to build its modules; all metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder", "spawnfd/host/_build_libc.py:ffibuilder"])
