"""personkit's file formats: checkpoints, weight files and the atomic writes they rest on.

Checkpoint files: one dict per file, written atomically, hashed, the newest N kept.

A checkpoint is written to a temp file in the same folder, fsynced and renamed over its final
name, so a process killed at any moment leaves either the complete file or none. Temp files
of a killed writer are removed by the next save. Each file holds the SHA-256 of its contents
(:func:`content_hash`, also in the header of ``model.safetensors``), checked on every load,
so a flipped bit is a :class:`CheckpointError` naming the file, like a truncated or unsafe
file. Loading uses ``weights_only=True``; :func:`load_latest_valid` skips files that do not
load, with a warning. Pruning only deletes files of the run that writes (its ``run_id``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch is imported where tensors are read or written: the JSON and atomic-file helpers load
# none (``personkit search`` writes its results without it).
if TYPE_CHECKING:
    import torch

_NAME = re.compile(r"^step_(\d+)\.pt$")
#: The key (checkpoints) and header field (safetensors) holding :func:`content_hash`.
HASH_KEY = "content_sha256"


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used (unreadable, corrupt, failed its
    content hash, not a personkit file); the message names the file."""


def content_hash(state: Any) -> str:
    """SHA-256 over every tensor's key path, dtype, shape and bytes and every other value's
    ``repr``, in sorted key order (the ``HASH_KEY`` entry itself excluded)."""
    import torch

    digest = hashlib.sha256()

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, Mapping):
            for key in sorted(obj, key=str):
                if not (where == "" and key == HASH_KEY):
                    walk(obj[key], f"{where}/{key}")
        elif isinstance(obj, (list, tuple)):
            digest.update(f"{where}:{type(obj).__name__}{len(obj)}".encode())
            for i, item in enumerate(obj):
                walk(item, f"{where}/{i}")
        elif torch.is_tensor(obj):
            t = obj.detach().cpu().contiguous()
            digest.update(f"{where}:{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{where}={obj!r}".encode())

    walk(state, "")
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_file(path: str | Path, prefix: str | None = None, suffix: str = "") -> Iterator[Path]:
    """A new empty temp file beside ``path`` (``prefix``: default ``.tmp_NAME.``) for the
    block to write; renamed over ``path`` when the block ends, removed when it raises, so a
    reader (or a process killed meanwhile) sees the old file or the new one, never a part.
    The file gets the permissions a plain ``open`` gives (the umask's; ``mkstemp``'s are
    0600)."""
    path = Path(path)
    if path.is_dir():  # checked first: the rename would name the temp file instead
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = _new_file(path.parent, prefix or f".tmp_{path.name}.", suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_file(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file ``folder/PREFIX<random>SUFFIX``, created exclusively."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(folder / prefix))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, content: Any, *, indent: int | None = 2,
               separators: tuple[str, str] | None = None, end: str = "\n") -> Path:
    """``content`` as JSON in ``path`` (atomically; its folder is created): ``json.dumps``
    with ``indent`` and ``separators``, then ``end``. Every JSON file personkit writes goes
    through here; the options keep each file's layout."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(content, indent=indent,
                                              separators=separators) + end)


def save_checkpoint(state: dict[str, Any], directory: str | Path, step: int, keep: int = 3,
                    run_id: str | None = None) -> Path:
    """Write ``state`` (with its :func:`content_hash`) to ``directory/step_XXXXXXXX.pt`` via
    a temp file and a rename, then delete all but the newest ``keep`` (0: none) checkpoints
    of run ``run_id`` (of any run if None; files whose run cannot be read are kept)."""
    import torch

    state = {**state, HASH_KEY: content_hash(state)}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp_*.pt"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    path = directory / f"step_{step:08d}.pt"
    with atomic_file(path, ".tmp_", ".pt") as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(directory)
    ours = [p for p in list_checkpoints(directory)
            if run_id is None or p == path or checkpoint_run_id(p) == run_id]
    for old in ours[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def checkpoint_run_id(path: str | Path) -> str | None:
    """The ``run_id`` stored in a checkpoint (tensors are memory-mapped, not read); None if
    the file has none or cannot be read."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file belongs to no known run
        return None
    run_id = state.get("run_id") if isinstance(state, Mapping) else None
    return run_id if isinstance(run_id, str) else None


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from pickles) and check
    its content hash; any failure is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types; re-raised naming the file
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(e)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a personkit checkpoint (it holds a "
                              f"{type(state).__name__}, not a dict)")
    stored = state.pop(HASH_KEY, None)
    if verify and stored is not None and stored != content_hash(state):
        raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match the "
                              f"SHA-256 stored when it was written")
    return state


def _load_failure(e: Exception) -> str:
    """A short reason for a failed ``torch.load`` (without torch's advice to unpickle)."""
    text = str(e)
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds objects other than tensors and plain data{what}; personkit refuses "
                f"to unpickle them, as that could run code")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"the file is truncated or corrupt ({type(e).__name__}{': ' + first if first else ''})"


#: What a training checkpoint (``Trainer.state_dict``) must hold, with the types (``TENSOR``:
#: a ``torch.Tensor``, named here so that importing this module loads no torch).
TENSOR = "torch.Tensor"
TRAINING_KEYS: dict[str, type | tuple[type, ...] | str] = {
    "model": Mapping, "criterion": Mapping, "optimizer": Mapping, "scheduler": Mapping,
    "scaler": Mapping, "step": int, "consumed": Mapping, "torch_rng": TENSOR,
}


def check_training_state(state: Mapping[str, Any], path: str | Path) -> None:
    """A :class:`CheckpointError` unless ``state`` has every ``TRAINING_KEYS`` entry."""
    import torch

    types = {k: torch.Tensor if tp == TENSOR else tp for k, tp in TRAINING_KEYS.items()}
    bad = [k for k, tp in types.items() if not isinstance(state.get(k), tp)]
    if bad:
        raise CheckpointError(f"{path} is not a personkit training checkpoint: missing or "
                              f"malformed {bad}")


def load_latest_valid(directory: str | Path,
                      check: Callable[[dict[str, Any], Path], None] | None = None,
                      ) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads, passes its hash and ``check`` (which raises
    :class:`CheckpointError` for a state it cannot use); others are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state = load_checkpoint(path)
            if check is not None:
                check(state, path)
            return path, state
        except CheckpointError as e:
            warnings.warn(f"skipping unusable checkpoint {path}: {e}", stacklevel=2)
    return None


def save_weights(model: torch.nn.Module, path: str | Path, config: dict[str, Any],
                 meta: dict[str, Any]) -> Path:
    """Write inference weights as safetensors; the config, model metadata and the tensors'
    :func:`content_hash` go in its header."""
    import json

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"config": json.dumps(config), "meta": json.dumps(meta), HASH_KEY: content_hash(state)}
    with atomic_file(path, ".tmp_", ".safetensors") as tmp:
        save_file(state, str(tmp), metadata=header)
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and ``{"config", "meta"}`` of a file written by :func:`save_weights`; the
    content hash is checked (a mismatch or an unreadable file is a :class:`CheckpointError`)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointError(f"cannot read weights file {path}: the file is truncated or "
                              f"corrupt ({type(e).__name__}: {e})") from None
    if "config" not in header:
        raise CheckpointError(
            f"{path} has no personkit config in its header (not a personkit export)")
    stored = header.pop(HASH_KEY, None)
    if stored is not None and stored != content_hash(state):
        raise CheckpointError(f"weights file {path} is corrupt: its tensors do not match the "
                              f"SHA-256 stored when it was written")
    try:
        return state, {k: json.loads(v) for k, v in header.items()}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its header is not valid JSON ({e})") from None
