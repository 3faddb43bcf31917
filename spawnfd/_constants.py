"""Linux constants the standard library's :mod:`mmap` module does not export (x86-64 values).

Everything else is the standard library's: ``os.O_*``, ``mmap.PROT_*``, ``mmap.MAP_*``,
``mmap.MADV_*``.
"""

PROT_NONE = 0  # not in the mmap module
MAP_SHARED_VALIDATE = 0x03
MAP_FIXED = 0x10
MAP_GROWSDOWN = 0x100
MAP_FIXED_NOREPLACE = 0x100000
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MAP_DROPPABLE = 0x08            # a mapping type, like MAP_PRIVATE (Linux 6.11)
MADV_GUARD_INSTALL = 102        # Linux 6.13
MADV_GUARD_REMOVE = 103
MREMAP_MAYMOVE = 1             # mremap(2) flags (not in the mmap module)
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4           # Linux 5.7

PAGE_SIZE = 4096
