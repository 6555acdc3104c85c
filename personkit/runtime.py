"""Process-level defaults applied by every ``personkit`` command before torch loads.

On a small shared CPU, OpenMP threads that spin while idle stall each other's barriers: a
ResNet-18 training step took 0.48 s alone and 2.4-5.5 s next to a second personkit process
(issue 15); and memory freshly faulted from the OS is ~8x slower to write than reused memory.
Defaults (an environment variable the user has set always wins; ``PERSONKIT_RUNTIME=off``
leaves everything as it is):

* ``GOMP_SPINCOUNT=1000``: an idle thread of GNU OpenMP (the runtime of torch's Linux wheels)
  spins 1,000 times, instead of 300,000, before it sleeps (read when torch loads its OpenMP
  runtime, hence before ``import torch``). Measured on 2 cores (benchmarks/RESULTS.md): alone as
  fast as the default, and two processes side by side 1.9x the default's alone time each
  instead of 15x; ``OMP_WAIT_POLICY=PASSIVE`` (no spinning) was 1.8x but 15 % slower alone. Not
  set when the user chose ``OMP_WAIT_POLICY`` (which the spin count would override).
  personkit's ONNX Runtime sessions spin only with ``OMP_WAIT_POLICY=ACTIVE``.
* ``KMP_BLOCKTIME=0``: idle threads of Intel's OpenMP sleep at once, where a torch build uses
  it (not measured here: torch's wheels use GNU OpenMP).
* Thread counts are left at torch's default (one per core; ``OMP_NUM_THREADS`` overrides),
  which is fastest alone; with short spinning, two processes then share the cores.
* glibc malloc keeps freed memory instead of returning it to the OS (``mallopt``: trim
  threshold 1 GiB, mmap threshold 32 MiB, glibc's maximum), so buffers of each step reuse
  already-faulted pages. ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` set by the user
  win (glibc reads them itself at start-up).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

ENV_DEFAULTS: dict[str, str] = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
#: A user who set one of these chose how OpenMP threads wait: GOMP_SPINCOUNT is left alone.
WAIT_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: glibc mallopt parameters: (param id, value, the env var that overrides it).
MALLOPT: tuple[tuple[int, int, str], ...] = (
    (-1, 1 << 30, "MALLOC_TRIM_THRESHOLD_"),   # M_TRIM_THRESHOLD
    (-3, 32 << 20, "MALLOC_MMAP_THRESHOLD_"),  # M_MMAP_THRESHOLD (glibc's 64-bit maximum)
)


def apply_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the defaults that the user has not set; returns what was applied (for logs).

    Runs before ``import torch`` (``personkit.cli`` does not import it at module level).
    When torch is already loaded (``cli.main`` called from a Python program or a test), the
    OpenMP runtime has read its environment and the caller owns the process: the environment
    is left as it is, and only the allocator is tuned.
    """
    env = os.environ if environ is None else environ
    if env.get("PERSONKIT_RUNTIME", "").lower() in ("off", "0", "false"):
        return {}
    applied = {k: v for k, v in ENV_DEFAULTS.items() if k not in env
               and not (k == "GOMP_SPINCOUNT" and any(w in env for w in WAIT_CHOICES))}
    if environ is None and "torch" in sys.modules:
        applied = {}
    env.update(applied)
    if environ is None:
        applied.update(_tune_malloc(env))
    return applied


def _tune_malloc(env: dict[str, str]) -> dict[str, str]:
    if not sys.platform.startswith("linux"):
        return {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return {}
    applied = {}
    for param, value, var in MALLOPT:
        if var not in env and mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[f"mallopt({var[:-1]})"] = str(value)
    return applied


def cpu_description() -> str:
    """The CPU model and the vector ISA torch's kernels run with, e.g. ``AMD EPYC (AVX512)``:
    machines that report the same model name differ in speed by ISA (benchmarks/RESULTS.md)."""
    import torch

    name = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f
                         if ln.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"
