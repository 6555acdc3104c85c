"""The one rule for output folders, the same in every command (docs/cli.md): a command never
mixes its results with an earlier run's nor removes them unasked. When ``--out`` (or an output
file) already holds what the command writes, it refuses, naming the file, unless
``--overwrite``, which removes those files and folders only (nothing else there is touched) and
says so. Commands that continue their own unfinished work (``train --resume``, ``study``) are
not replacing it."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path


def claim_outputs(out_dir: str | Path, names: Iterable[str], overwrite: bool,
                  command: str) -> list[Path]:
    """Make room for ``command``'s outputs ``names`` (files or folders) in ``out_dir``.

    Returns the paths removed (empty when there was nothing earlier).

    Raises:
        FileExistsError: one of them exists and ``overwrite`` is False (the message names
            it and says ``--overwrite``).
    """
    out_dir = Path(out_dir)
    found = [out_dir / n for n in names if (out_dir / n).exists()]
    if not found:
        return []
    if not overwrite:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise FileExistsError(f"{found[0]}{more} hold an earlier {command}'s results: pass "
                              f"--overwrite to replace them, or another --out")
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    print(f"{command}: replaced an earlier run's results in {out_dir} "
          f"({', '.join(p.name for p in found)})", file=sys.stderr, flush=True)
    return found


def claim_file(path: str | Path, overwrite: bool, command: str) -> Path:
    """:func:`claim_outputs` for one output file or folder given by its own path."""
    path = Path(path)
    claim_outputs(path.parent, [path.name], overwrite, command)
    return path
