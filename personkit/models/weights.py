"""Loading weight files strictly, with an explicit key mapping.

Pickled files are read with ``torch.load(weights_only=True)``; safetensors files with
:mod:`safetensors`. Nothing is merged silently: missing or unexpected keys and shape
mismatches raise :class:`WeightsError` listing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """A weight file that does not fit the model; the message lists the mismatched keys."""


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or pickled (``weights_only``) state dict from ``path``.

    A pickled dict holding the weights under ``state_dict`` or ``model`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise WeightsError(f"cannot read weights from {path}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} does not hold a state dict")
    return dict(obj)


def map_keys(
    state: Mapping[str, torch.Tensor],
    drop_prefixes: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DDP) prefixes, drop keys under ``drop_prefixes``, rename prefixes."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if any(key.startswith(p) for p in drop_prefixes):
            continue
        for old, new in (rename or {}).items():
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    drop_prefixes: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    source: str = "state dict",
) -> None:
    """Load ``state`` into ``module`` after :func:`map_keys`; every key must match exactly."""
    state = map_keys(state, drop_prefixes, rename)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or shapes:
        raise WeightsError(_mismatch_message(source, missing, unexpected, shapes))
    module.load_state_dict(state, strict=True)


def _mismatch_message(source: str, missing: list, unexpected: list, shapes: list) -> str:
    lines = [f"{source} does not match the model:"]
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if keys:
            shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
            lines.append(f"  {title} keys ({len(keys)}): {shown}")
    return "\n".join(lines)
