"""Trained models from files: a run directory, a ``.pt`` checkpoint or a ``.safetensors`` export
(and the ``model`` section of a YAML config or such a file, :func:`model_config_of`).

The file is the one source of truth: its stored config rebuilds the model, its weights load
strictly, and its stored :class:`ModelMeta` (preprocessing, label names, heads) must equal the
metadata of the rebuilt model; a mismatch is an error naming the file and the differing keys.
A run directory resolves to its ``model.safetensors`` if present, else to its newest checkpoint
that loads: :func:`resolve_model_file`, the one resolver (``model.init_from`` and ``annotate``
use it too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from personkit.checkpoint import load_checkpoint, load_latest_valid, read_weights
from personkit.config import Config, ModelConfig, apply_overrides, config_from_dict, load_config
from personkit.models.build import build_model
from personkit.models.multitask import ModelMeta, MultiTaskModel
from personkit.models.weights import load_strict


@dataclasses.dataclass
class StoredModel:
    """What a model file holds: weights, the run's config (a dict) and its model metadata."""

    path: Path  # the file read (a run directory resolved to its file)
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    meta: dict[str, Any] | None  # None only in checkpoints written before meta was stored


def resolve_model_file(path: str | Path) -> Path:
    """``path`` itself, or for a run directory its ``model.safetensors`` or newest valid
    checkpoint (``checkpoints/step_*.pt``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file or run directory not found: {path}")
    if not path.is_dir():
        return path
    if (path / "model.safetensors").is_file():
        return path / "model.safetensors"
    found = load_latest_valid(path / "checkpoints")
    if found is None:
        raise FileNotFoundError(f"no model.safetensors or checkpoint in run dir {path}")
    return found[0]


def read_model_file(path: str | Path) -> StoredModel:
    """Weights, config and metadata of a run directory, checkpoint or export."""
    path = resolve_model_file(path)
    if path.suffix == ".safetensors":
        state, header = read_weights(path)
        return StoredModel(path, state, header["config"], header.get("meta"))
    ckpt = load_checkpoint(path)
    if "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a personkit checkpoint (no 'config'/'model' keys)")
    return StoredModel(path, ckpt["model"], ckpt["config"], ckpt.get("meta"))


def stored_config(path: str | Path) -> tuple[dict[str, Any], str]:
    """The raw config dict of a run directory (its model file, else its ``config.yaml``), a
    checkpoint or an export, and the file it came from (for error messages)."""
    import yaml

    path = Path(path)
    try:
        stored = read_model_file(path)
    except FileNotFoundError:
        if not path.is_dir():
            raise
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(
                f"no model.safetensors, checkpoint or config.yaml in {path}") from None
        text = (path / "config.yaml").read_text(encoding="utf-8")
        return yaml.safe_load(text) or {}, str(path / "config.yaml")
    return stored.config, str(stored.path)


def check_meta(model: MultiTaskModel, stored: dict[str, Any] | None, source: str) -> None:
    """Raise if the metadata stored in ``source`` differs from that of the rebuilt model."""
    if stored is None:
        return
    try:
        meta = ModelMeta.from_dict(stored)
    except TypeError as e:
        raise ValueError(f"{source}: unreadable model metadata: {e}") from e
    ours, theirs = model.meta.to_dict(), meta.to_dict()
    diff = sorted(k for k in ours if ours[k] != theirs[k])
    if diff:
        raise ValueError(
            f"{source}: the stored model metadata differs from the model its config builds in "
            + "; ".join(f"{k}: stored {theirs[k]!r}, rebuilt {ours[k]!r}" for k in diff))


def load_model_and_config(path: str | Path, device: str | torch.device = "cpu",
                          ) -> tuple[MultiTaskModel, Config]:
    """Rebuild a trained model from a run directory, checkpoint or export (weights loaded
    strictly, metadata checked against the file's), in eval mode on ``device``; also returns
    the run's config."""
    stored = read_model_file(path)
    source = str(stored.path)
    cfg = config_from_dict(stored.config, source=source)
    model = build_model(dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, pretrained=None)))
    check_meta(model, stored.meta, source)
    load_strict(model, stored.state, source=source)
    return model.to(device).eval(), cfg


def load_model(path: str | Path, device: str | torch.device = "cpu") -> MultiTaskModel:
    """Rebuild a trained model (see :func:`load_model_and_config`)."""
    return load_model_and_config(path, device)[0]


def model_config_of(source: str | Path | None = None,
                    overrides: Sequence[str] = ()) -> ModelConfig:
    """The ``model`` section of a YAML config, a checkpoint, run dir or export (its stored
    config), or of the defaults (the paper's ResNet-50 GN at 256×128), with ``overrides``."""
    if source is None:
        return config_from_dict(apply_overrides({}, overrides, "<defaults>"), "<defaults>").model
    if str(source).endswith((".yaml", ".yml")):
        return load_config(source, overrides).model
    raw, where = stored_config(source)
    return config_from_dict(apply_overrides(raw, overrides, where), where).model
