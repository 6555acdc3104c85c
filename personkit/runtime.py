"""The process and the machine: defaults applied before torch loads, device resolution and a
description of the machine (one copy each; torch is imported only inside the functions).

Process-level defaults are applied by every ``personkit`` command before torch loads.

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

import contextlib
import ctypes
import ctypes.util
import datetime
import errno
import os
import platform
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ENV_DEFAULTS: dict[str, str] = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
#: A user who set one of these chose how OpenMP threads wait: GOMP_SPINCOUNT is left alone.
WAIT_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: glibc mallopt parameters: (param id, value, the env var that overrides it).
MALLOPT: tuple[tuple[int, int, str], ...] = (
    (-1, 1 << 30, "MALLOC_TRIM_THRESHOLD_"),   # M_TRIM_THRESHOLD
    (-3, 32 << 20, "MALLOC_MMAP_THRESHOLD_"),  # M_MMAP_THRESHOLD (glibc's 64-bit maximum)
)


class RuntimeDefaultsWarning(UserWarning):
    """personkit's process defaults could not be applied (torch was imported first)."""


def apply_library_defaults() -> dict[str, str]:
    """What ``import personkit`` does: the environment defaults of :func:`apply_defaults`
    while torch is not loaded yet (the allocator is the host program's business and is left
    alone); when torch was imported first and the user set no wait policy, one warning says
    what is lost and how to get it."""
    if os.environ.get("PERSONKIT_RUNTIME", "").lower() in ("off", "0", "false"):
        return {}
    if "torch" not in sys.modules:
        return apply_defaults(malloc=False)
    if not any(w in os.environ for w in WAIT_CHOICES):
        import warnings

        warnings.warn("torch was imported before personkit, so its OpenMP runtime started "
                      "without personkit's GOMP_SPINCOUNT=1000: on a CPU shared with other "
                      "processes each step can be several times slower. Import personkit "
                      "before torch, or set GOMP_SPINCOUNT=1000 (or OMP_WAIT_POLICY) in the "
                      "environment (docs/inference.md, 'Runtime defaults')",
                      RuntimeDefaultsWarning, stacklevel=3)
    return {}


def apply_defaults(environ: dict[str, str] | None = None, malloc: bool = True) -> dict[str, str]:
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
    if environ is None and malloc:
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


#: What decides an engine's speed, by /proc/cpuinfo flag: name shown -> any of these flags.
ISA_FLAGS = {"avx2": ("avx2",), "avx512": ("avx512f",), "vnni": ("avx512_vnni", "avx_vnni"),
             "bf16": ("avx512_bf16", "amx_bf16"), "amx": ("amx_tile",)}


def _cpuinfo(key: str) -> str | None:
    """The first processor's ``key`` line of /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(key)), None)
    except OSError:
        return None


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it does not exist)."""
    return set((_cpuinfo("flags") or "").split())


def has_isa(name: str) -> bool:
    """Whether the CPU has the :data:`ISA_FLAGS` feature ``name`` (e.g. ``bf16``)."""
    return bool(set(ISA_FLAGS[name]) & cpu_flags())


def cpu_description() -> str:
    """The CPU model, its ISA flags that decide engine speed and the vector ISA torch's kernels
    run with, e.g. ``AMD EPYC (avx2 avx512 vnni bf16; AVX512)``: machines that report the same
    model name differ in speed by ISA (benchmarks/RESULTS.md)."""
    import torch

    name = _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"
    isa = " ".join(k for k in ISA_FLAGS if has_isa(k))
    return f"{name} ({isa + '; ' if isa else ''}{torch.backends.cpu.get_cpu_capability()})"


def resolve_device(name: str, what: str = "device") -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) names, checked
    against this machine; ``auto`` is CUDA when a GPU is visible, else the CPU. A device the
    machine lacks is a ``ValueError`` naming ``what`` (the setting, e.g. ``train.device``)."""
    import torch

    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{what}={name!r} is not a device name (valid: auto, cpu, cuda, "
                         f"cuda:N): {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={name!r} but CUDA is not available on this machine "
                             f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                             f"use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{what}={name!r} but only {torch.cuda.device_count()} GPUs "
                             f"are visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what}={name!r} but MPS is not available; use cpu")
    elif device.type not in ("cpu", "mps"):
        raise ValueError(f"{what}={name!r}: unsupported device type (valid: auto, cpu, "
                         f"cuda, cuda:N, mps)")
    return device


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model and ISA, cores, library versions, OpenMP settings, load and date (and the
    GPU when ``device`` is CUDA, or the first one when ``device`` is None and one is visible):
    what a measurement needs next to it."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_description(), "nproc": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "(default)"),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    if hasattr(os, "getloadavg"):  # other processes on a shared machine skew absolute numbers
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    gpu = device if device is not None else (torch.device("cuda") if cuda_device_count()
                                              else None)
    if gpu is not None and gpu.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(gpu)
    return info


def describe_machine(info: dict[str, Any]) -> str:
    """:func:`machine_info` in one line, for reports."""
    return (f"{info['cpu']}, {info['nproc']} CPU cores, {info.get('gpu', 'no GPU')}; Python "
            f"{info['python']}, torch {info['torch']}; load average "
            f"{info.get('load_average_1m', 'unknown')} when written")


class LockedError(ValueError):
    """Another live personkit process holds the lock; the message names it."""


@contextlib.contextmanager
def exclusive(path: str | Path, what: str, wait: bool = False,
              per_process: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created) for the block: one writer for
    ``what`` (a study folder, a run directory).

    The lock is the kernel's (``flock``) and belongs to this process: it is released when the
    process ends, however it ends, so a lock left by a killed process is free; its PID, still
    in the file, is reported when the lock is taken over. ``wait``: wait for a lock another
    process holds instead of raising. Where ``flock`` does not exist (not POSIX) there is no
    lock. ``per_process``: a POSIX record lock (``lockf``) instead, which a process forked
    while it is held does not share, so it is free the moment this process lets go (an
    ``flock`` lives on in every forked child until the last one exits); it excludes other
    processes only, not other threads of this one: for a lock against other commands.

    Raises:
        LockedError: a live process holds it (naming ``what`` and its PID).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        lock = fcntl.lockf if per_process else fcntl.flock
        try:
            lock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):  # lockf may say EACCES for "held"
                raise
            raise LockedError(f"{what} is in use by another personkit process (PID "
                              f"{_lock_pid(fd) or 'unknown'}, lock {path}); wait for it to "
                              f"finish or stop it") from None
        previous = _lock_pid(fd)
        if previous and previous != os.getpid() and not wait:
            print(f"{what}: took over the lock of PID {previous}, which is no longer running",
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no PID to report
    finally:
        os.close(fd)  # releases the lock


def _lock_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def die_with_parent(parent: int | None = None) -> None:
    """Have the kernel stop this process (SIGTERM) when its parent dies, however the parent
    dies (Linux ``PR_SET_PDEATHSIG``); a no-op elsewhere. ``parent`` is the PID the parent
    gave this process: if it has died already (before this call), this process stops now.
    Used by ``study --jobs`` children, which run in their own session and would otherwise
    train on as orphans."""
    if not sys.platform.startswith("linux"):
        return
    parent = parent or os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
