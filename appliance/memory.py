"""Keep the node's resident size bounded: glibc allocator settings for a long-lived server.

Two glibc behaviours made the node grow by about 19 MiB per concurrent login and never
shrink (212 MiB with 100 users logged in, against about 88 MiB fresh):

- glibc starts with a 128 KiB mmap threshold but raises it to the size of the largest mapped
  block freed (up to 32 MiB). After the first argon2id hash, its 19 MiB buffers came from an
  arena's heap instead of a mapping of their own, and a heap keeps what it has grown to.
  A fixed threshold (`MMAP_THRESHOLD`, what MALLOC_MMAP_THRESHOLD_ in the environment does)
  gives each such buffer a mapping that is returned when it is freed.
- each thread that allocates may get an arena of its own (up to 8 per core), and each arena
  keeps its own free memory. Two arenas (MALLOC_ARENA_MAX=2) are plenty for one event loop
  and a few helper threads.

A fresh 19 MiB mapping costs page faults: on the reference machine (a VM) a hash took
about 31 ms of CPU instead of 20. With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` in the
environment (glibc 2.35 and later; set by the image's unit and `.ci/serve`, and only settable
before the process starts) glibc asks for transparent huge pages for such mappings, and a
hash costs 20 ms again. Without it everything works, only logins cost that much more.

`tune_allocator` sets both at start-up (`debvisor serve`), before the helper threads exist;
`release_memory` hands an arena's free memory back after a burst (argon2 hashing calls it).
Elsewhere than glibc both do nothing. `bench/api.py` measures the effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Below argon2id's 19 MiB buffer, above anything the request path allocates at once.
MMAP_THRESHOLD = 4 * 2**20
ARENA_MAX = 2


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc (musl has neither)
        return None
    return libc


_LIBC = _glibc()


def tune_allocator() -> None:
    """Fix the mmap threshold and cap the arenas; call early, before threads are started."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_memory() -> None:
    """Give the allocator's free heap memory back to the system (glibc `malloc_trim`)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
