"""Initialise a model, or chosen parts of it, from an earlier run (``model.init_from``).

Table 7 of Pfeiffer et al. (GCPR 2019) pretrains on MPII and fine-tunes ReID on Market; this
loads the first run's weights into the second run's model before training.

The model's state keys are grouped into *parts*: ``backbone``, ``fpn``, ``heads.<task>`` and
``branches.<task>`` (multi-branch copies of the last stage). Keys selected by the ``include``
patterns and not by the ``exclude`` patterns (``fnmatch``, e.g. ``backbone.*``) load strictly:

* a selected part the source has is loaded whole; differing key sets or shapes are a
  :class:`~personkit.models.WeightsError` naming the keys (an incompatible architecture);
* a selected part the source lacks (a new head) keeps its initialisation and is reported new;
* source parts this model lacks (a head dropped for fine-tuning) are reported as skipped.

:class:`InitReport` says exactly what was loaded, what is new and what was skipped.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from personkit.checkpoint import sha256_file, write_json
from personkit.models.loading import resolve_model_file
from personkit.models.weights import WeightsError, load_state_dict_file, map_keys


def part_of(key: str) -> str:
    """``heads.pose.conv.weight`` -> ``heads.pose``; ``backbone.layer1...`` -> ``backbone``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] in ("heads", "branches") else parts[0]


@dataclasses.dataclass
class InitReport:
    """What :func:`init_from` did; ``loaded``/``new``/``skipped`` map a part to its key count."""

    source: str
    sha256: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    loaded: dict[str, int]
    new: dict[str, int]
    not_selected: dict[str, int]
    skipped: dict[str, int]

    def summary(self) -> str:
        def show(d: Mapping[str, int]) -> str:
            return ", ".join(f"{p} ({n} tensors)" for p, n in sorted(d.items())) or "none"

        return (f"init_from {self.source} (sha256 {self.sha256[:12]}):\n"
                f"  loaded:       {show(self.loaded)}\n"
                f"  new:          {show(self.new)}\n"
                f"  not selected: {show(self.not_selected)}\n"
                f"  in the source, not in this model: {show(self.skipped)}")

    def write(self, path: str | Path) -> Path:
        return write_json(path, dataclasses.asdict(self), end="")


def resolve_weights_file(source: str | Path) -> Path:
    """The file ``model.init_from`` names: a run directory resolves as every loader resolves
    it (:func:`~personkit.models.loading.resolve_model_file`: ``model.safetensors``, else the
    newest *valid* checkpoint); a file is taken as is."""
    try:
        return resolve_model_file(source)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"model.init_from: {e}") from None


def _selected(key: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    return (any(fnmatch.fnmatchcase(key, p) for p in include)
            and not any(fnmatch.fnmatchcase(key, p) for p in exclude))


def _count(keys: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        out[part_of(k)] = out.get(part_of(k), 0) + 1
    return out


def init_from(model: nn.Module, source: str | Path, include: Sequence[str] = ("*",),
              exclude: Sequence[str] = ()) -> InitReport:
    """Load the selected parts of ``source`` (a run directory, a ``.safetensors`` export, a
    ``.pt`` checkpoint or a state-dict file) into ``model``; see the module docstring."""
    path = resolve_weights_file(source)
    state = map_keys(load_state_dict_file(path))
    own = model.state_dict()
    selected = [k for k in own if _selected(k, include, exclude)]
    if not selected:
        raise WeightsError(f"model.init_include {list(include)} / init_exclude {list(exclude)} "
                           f"select no key of the model (keys look like {next(iter(own))})")
    source_parts = {part_of(k) for k in state}
    from_source = [k for k in selected if part_of(k) in source_parts]
    chosen_parts = {part_of(k) for k in from_source}
    missing = sorted(k for k in from_source if k not in state)
    unexpected = sorted(k for k in state if part_of(k) in chosen_parts and k not in own)
    shapes = sorted(f"{k}: source {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in from_source if k in state and state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        lines = [f"model.init_from {path} does not fit the selected parts "
                 f"{sorted(chosen_parts)} of the model (another architecture? exclude the "
                 f"parts that differ with model.init_exclude, e.g. 'heads.id.*'):"]
        for title, keys in (("missing in the source", missing),
                            ("only in the source", unexpected), ("shape", shapes)):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > 20 else ""
                lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:20])}{more}")
        raise WeightsError("\n".join(lines))
    with torch.no_grad():
        for k in from_source:
            own[k].copy_(state[k])
    own_parts = {part_of(k) for k in own}
    return InitReport(
        source=str(path), sha256=sha256_file(path), include=tuple(include),
        exclude=tuple(exclude), loaded=_count(from_source),
        new=_count([k for k in selected if part_of(k) not in source_parts]),
        not_selected=_count([k for k in own if k not in set(selected)]),
        skipped=_count([k for k in state if part_of(k) not in own_parts]),
    )
