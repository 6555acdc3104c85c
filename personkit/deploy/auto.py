"""``--engine auto``: the fastest engine that this machine and the installed extras allow and
that was checked for this model (docs/inference.md, "`--engine auto`").

The candidates (:data:`VARIANTS`), in order of preference: OpenVINO bf16 (CPUs with
AVX512-BF16 or AMX-BF16), OpenVINO int8 with its fp32 islands in bf16, OpenVINO int8, ONNX
Runtime fp32, eager torch fp32; on a GPU, eager torch. ``personkit export --model RUN --auto``
(:mod:`personkit.deploy.checks`) writes their files into ``RUN/engines/`` and checks each once
into ``RUN/engine_checks.json``: an int8 or bf16 engine runs only with a passing accuracy check
of this very model (:func:`passes`: at most :data:`MAX_LOSS_POINTS` lost on every protocol, at
least :data:`MIN_SAME_PERSON_AGREEMENT` of the same-person decisions unchanged), ONNX Runtime
fp32 with a passing parity check; the fastest measured on this CPU wins. Eager torch fp32 needs
nothing: it is the fallback. Nothing is exported or checked here: a command starts as fast as
before, and one printed line says what runs, why, and the command that enables the faster ones.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personkit.extras import INSTALL
from personkit.runtime import ISA_FLAGS, cpu_description, cpu_flags

if TYPE_CHECKING:
    from personkit.inference.predictor import Predictor

CHECKS_FILE = "engine_checks.json"
EXPORTS_DIR = "engines"
CHECKS_VERSION = 1
#: The accuracy bound of an int8 or bf16 engine against eager torch fp32 on the model's own
#: evaluation sets: points (score x 100) lost on each compared score of every protocol ...
MAX_LOSS_POINTS = 1.0
#: ... and the share of the ReID set's pairs whose same-person decision (cosine distance at
#: the calibrated threshold) is unchanged.
MIN_SAME_PERSON_AGREEMENT = 0.99
#: The scores compared per protocol (those a result lacks are left out).
COMPARED_SCORES = {"reid": ("mAP", "rank1"), "attributes": ("mean", "mA"), "pose": ("Mean",),
                   "parts": ("mIoU", "mIoU5")}


@dataclass(frozen=True)
class Variant:
    """One engine ``auto`` may run: ``engine`` at ``precision``, int8 or not, read from
    ``export`` (a file or folder under ``engines/``; None: none needed)."""

    key: str
    engine: str
    precision: str
    int8: bool = False
    export: str | None = None

    @property
    def exact(self) -> bool:
        """fp32 arithmetic: the fp32 outputs up to rounding, no accuracy check needed."""
        return self.precision == "fp32" and not self.int8

    @property
    def label(self) -> str:
        """``openvino int8 + bf16``, ``onnxruntime fp32``, ..."""
        arithmetic = "int8" + (" + bf16" if self.precision == "bf16" else "") if self.int8 \
            else self.precision
        return f"{self.engine} {arithmetic}"


#: The candidates, most preferred first.
VARIANTS = (Variant("openvino-bf16", "openvino", "bf16", export="openvino"),
            Variant("openvino-int8-bf16", "openvino", "bf16", True, "openvino-int8"),
            Variant("openvino-int8", "openvino", "fp32", True, "openvino-int8"),
            Variant("onnxruntime-fp32", "onnxruntime", "fp32", export="model.onnx"),
            Variant("torch-fp32", "torch", "fp32"))
BY_KEY = {v.key: v for v in VARIANTS}
#: The row of ``personkit bench`` that times each variant (on random weights).
BENCH_ROWS = {"openvino-bf16": "openvino-fp32-bf16", "openvino-int8-bf16": "openvino-int8-bf16",
              "openvino-int8": "openvino-int8", "onnxruntime-fp32": "onnxruntime",
              "torch-fp32": "torch-eager"}
NO_BF16 = "this CPU has no bf16 instructions (avx512_bf16 / amx_bf16)"
#: The libraries each engine needs to run.
NEEDS = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime",), "torch": ()}
#: Why a variant is not used before ``export --auto`` made and checked it.
NOT_CHECKED = "not exported and checked for this model yet"


def run_folder(model: str | Path) -> Path:
    """The folder that keeps a model's engine checks and exports: the run directory (for a
    checkpoint ``RUN/checkpoints/step_*.pt`` its run directory), or a weights file's folder,
    as for ``calibration.json``."""
    path = Path(model)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def checks_file(model: str | Path) -> Path:
    """``engine_checks.json`` beside ``model``."""
    return run_folder(model) / CHECKS_FILE


def export_path(model: str | Path, variant: Variant) -> Path | None:
    """Where ``export --auto`` writes ``variant``'s file (None: it needs none)."""
    return run_folder(model) / EXPORTS_DIR / variant.export if variant.export else None


def installed_engines() -> set[str]:
    """The engine libraries that are installed (found, not imported)."""
    return {m for m in ("onnx", "onnxruntime", "openvino", "nncf")
            if importlib.util.find_spec(m) is not None}


def unsupported(variant: Variant, flags: Collection[str], installed: Collection[str]
                ) -> str | None:
    """Why this machine cannot run ``variant`` (None: it can)."""
    missing = [m for m in NEEDS[variant.engine] if m not in installed]
    if missing:
        return f"{missing[0]} is not installed ({INSTALL[missing[0]]})"
    if variant.precision == "bf16" and not set(ISA_FLAGS["bf16"]) & set(flags):
        return NO_BF16
    return None


def passes(record: dict[str, Any]) -> bool:
    """Whether a check record meets the bound (an exact engine: its parity check passed)."""
    return verdict(record) is None


def verdict(record: dict[str, Any]) -> str | None:
    """Why a check record fails the bound (None: it passes)."""
    if record.get("exact"):
        return None if record.get("parity_ok") else "its outputs differ from torch's beyond " \
            "the float32 rounding bound"
    loss = record.get("worst_loss_points")
    if loss is None:
        return "its check has no scores"
    if loss > MAX_LOSS_POINTS:
        return (f"it lost {loss:.2f} points on {record.get('worst')} against fp32 (bound "
                f"{MAX_LOSS_POINTS:g})")
    agreement = record.get("same_person_agreement")
    if record.get("reid") and agreement is None:
        return "its same-person decisions could not be compared (no calibrated threshold)"
    if record.get("reid") and agreement < MIN_SAME_PERSON_AGREEMENT:
        return (f"it changed {100 * (1 - agreement):.2f} % of the same-person decisions "
                f"(bound {100 * (1 - MIN_SAME_PERSON_AGREEMENT):g} %)")
    return None


def read_checks(model: str | Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The check records beside ``model`` by variant key, and what is wrong with the file
    (None: nothing; no file is no records)."""
    path = checks_file(model)
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        checks = data["checks"]
        if data.get("version") != CHECKS_VERSION or not isinstance(checks, dict):
            raise ValueError(f"expected version {CHECKS_VERSION} with a 'checks' object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {}, f"{path} is unreadable ({e})"
    return checks, None


@dataclass
class Choice:
    """What ``auto`` runs a model on: the variants to try, best first (the first that opens
    and holds the model's weights runs), why each qualifies, the files to read, the variants
    not used and why, and the command that would enable faster ones."""

    ranked: list[Variant]
    reasons: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)
    not_used: list[tuple[str, str]] = field(default_factory=list)  # (label, why)
    hint: str | None = None
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def refuse(self, variant: Variant, why: str) -> None:
        """``variant`` qualified but cannot run (its export holds other weights)."""
        self.ranked.remove(variant)
        self.not_used.append((variant.label, why))

    def unused_text(self) -> str:
        """The variants not used, those with the same reason together."""
        by_reason: dict[str, list[str]] = {}
        for label, why in self.not_used:
            by_reason.setdefault(why, []).append(label)
        return "; ".join(f"{', '.join(labels)}: {why}" for why, labels in by_reason.items())

    def line(self, variant: Variant) -> str:
        """One line for the user: what runs and why, what does not and why, what to run."""
        text = f"engine auto: {variant.label} ({self.reasons[variant.key]})"
        if self.not_used:
            text += f"; not used: {self.unused_text()}"
        if self.hint:
            text += f"; to check and use the faster engines: {self.hint}"
        return text

    def record(self, variant: Variant) -> dict[str, Any]:
        """What the outputs record about the choice (``Engine.choice``)."""
        check = self.checks.get(variant.key) or {}
        return {"chosen_by": "auto", "variant": variant.key, "int8": variant.int8,
                "reason": self.reasons[variant.key],
                "export": str(self.files[variant.key]) if variant.key in self.files else None,
                "check": {k: check.get(k) for k in ("checked", "worst_loss_points", "worst",
                                                    "same_person_agreement", "ms_per_crop")
                          } if check and not variant.exact else None,
                "not_used": [f"{label}: {why}" for label, why in self.not_used],
                "hint": self.hint}


def choose(model: str | Path | None, device: str = "auto", *,
           flags: Collection[str] | None = None, installed: Collection[str] | None = None,
           weights: Callable[[], str | None] = lambda: None) -> Choice:
    """Which engine ``--engine auto`` runs ``model`` on (None: a model with no run, such as
    ``bench``'s): on a GPU eager torch; on the CPU the variants this machine supports
    (``flags``: its CPU flags, ``installed``: the engine libraries; default: this machine's)
    whose accuracy check in ``engine_checks.json`` is current (``weights()``: the model's
    content hash, read only when there are checks) and passes, fastest measured first, then
    the exact ones. Nothing is opened or checked here."""
    from personkit import runtime

    if runtime.resolve_device(device).type == "cuda":
        return Choice([BY_KEY["torch-fp32"]], {"torch-fp32": "eager torch on the GPU"})
    flags = cpu_flags() if flags is None else set(flags)
    installed = installed_engines() if installed is None else set(installed)
    checks, problem = read_checks(model) if model is not None else ({}, None)
    current = weights() if checks else None
    choice = Choice([], {}, checks={k: r for k, r in checks.items()
                                    if r.get("weights") == current})
    enable = problem is not None
    for v in VARIANTS:
        why_not = unsupported(v, flags, installed)
        if why_not:
            if why_not != NO_BF16 or v.key in checks:  # a CPU without bf16 is no news
                choice.not_used.append((v.label, why_not))
            continue
        status = _status(model, v, checks.get(v.key), current, problem)
        if status is None:
            _qualify(choice, model, v)
        else:
            choice.not_used.append((v.label, status[0]))
            enable |= status[1]
    _rank(choice)
    if enable:
        again = checks_file(model).exists() or (run_folder(model) / EXPORTS_DIR).exists()
        choice.hint = f"personkit export --model {model} --auto" + (
            " --overwrite" if again else "")
    return choice


def _status(model: str | Path | None, v: Variant, record: dict[str, Any] | None,
            current: str | None, problem: str | None) -> tuple[str, bool] | None:
    """Why a variant this machine supports does not qualify, and whether ``export --auto``
    would change that; None: it qualifies (torch always does)."""
    if v.engine == "torch":
        return None
    if model is None:
        return "no trained model to export and check", False
    if problem:
        return problem, True
    if record is None:
        return NOT_CHECKED, True
    if record.get("skipped"):
        return f"export --auto could not make it ({record['skipped']})", False
    kind = "parity check" if v.exact else "accuracy check"
    if record.get("weights") != current:
        return (f"its {kind} is stale: made for weights {str(record.get('weights'))[:12]}, "
                f"the model's are now {str(current)[:12]}", True)
    failed = verdict(record)
    if failed:
        return f"it failed its {kind}: {failed}", False
    path = export_path(model, v)
    if path is None or not path.exists():
        return f"its export {path} is missing", True
    return None


def _qualify(choice: Choice, model: str | Path | None, v: Variant) -> None:
    """Add a qualifying variant to ``choice`` with why it qualifies and the file it reads."""
    record = choice.checks.get(v.key)
    path = export_path(model, v) if model is not None else None
    if not v.exact:
        agreement = record.get("same_person_agreement")
        reason = (f"accuracy checked {record.get('checked', '?')[:10]} on this model: worst "
                  f"loss {record['worst_loss_points']:.2f} points ({record.get('worst')})"
                  + ("" if agreement is None else
                     f", {100 * agreement:.2f} % of same-person decisions unchanged"))
    elif v.engine == "torch":
        reason = "exact: eager torch fp32"
    else:
        reason = f"exact: fp32, its parity-checked export {path}"
    if path is not None:
        choice.files[v.key] = path
    choice.ranked.append(v)
    choice.reasons[v.key] = reason


def _rank(choice: Choice) -> None:
    """Fastest first where ``export --auto`` measured every qualifying variant on this CPU;
    otherwise :data:`VARIANTS`' order stays."""
    if not choice.checks:
        return
    here = cpu_description()
    speeds = {v.key: r["ms_per_crop"] for v in choice.ranked
              if (r := choice.checks.get(v.key)) and r.get("cpu") == here
              and r.get("ms_per_crop")}
    if len(speeds) < len(choice.ranked):
        return
    choice.ranked.sort(key=lambda v: speeds[v.key])
    base = speeds.get("torch-fp32")
    for v in choice.ranked:
        choice.reasons[v.key] += f"; {speeds[v.key]:.2f} ms a crop here" + (
            f", {base / speeds[v.key]:.1f}x torch fp32" if base and v.engine != "torch" else "")


def model_weights(model: str | Path) -> str:
    """The content hash of a run's, checkpoint's or weights file's model weights: what its
    exports carry (``personkit_weights``) and its engine checks are made for."""
    from personkit.checkpoint import content_hash
    from personkit.models.loading import load_model

    return content_hash(load_model(model, "cpu").state_dict())


def say(line: str) -> None:
    """A choice's line, on stderr (stdout may carry a command's results)."""
    print(f"personkit: {line}", file=sys.stderr)


def open_predictor(model: str | Path, engine: str = "auto", device: str = "auto", *,
                   log: Callable[[str], None] = say, flags: Collection[str] | None = None,
                   installed: Collection[str] | None = None, **options: Any) -> Predictor:
    """The predictor of ``model`` with ``options`` (keywords of
    :meth:`~personkit.inference.predictor.Predictor.from_checkpoint`) on ``engine``: a named
    engine as it is; ``auto`` as :func:`choose` decides (``flags``, ``installed``: see there),
    said in one line to ``log`` and recorded on the engine (``predictor.engine.choice``, which
    the commands' outputs keep: :func:`~personkit.inference.backends.engine_record`).

    ``auto`` with a precision other than fp32 (``--precision bf16``) runs torch autocast at
    that precision, as the commands did before ``auto``.
    """
    import functools

    from personkit.inference.backends import is_export
    from personkit.inference.predictor import Predictor

    if engine != "auto":
        return Predictor.from_checkpoint(model, device=device, engine=engine, **options)
    if options.get("precision", "fp32") != "fp32":  # the arithmetic named: torch autocast
        predictor = Predictor.from_checkpoint(model, device=device, engine="torch", **options)
        why = (f"--precision {options['precision']} names the arithmetic: torch autocast, as "
               f"before auto; --engine openvino --precision bf16 is faster where the CPU has "
               f"bf16, and auto alone runs bf16 where `personkit export --auto` checked it")
        predictor.engine.choice = {"chosen_by": "auto", "reason": why}
        log(f"engine auto: torch {predictor.engine.precision} ({why})")
        return predictor
    if is_export(model):
        predictor = Predictor.from_checkpoint(model, device=device, engine="torch", **options)
        why = "an exported file runs on its own engine: .onnx on ONNX Runtime, else OpenVINO"
        predictor.engine.choice = {"chosen_by": "auto", "reason": why}
        log(f"engine auto: {predictor.engine.name} {predictor.engine.precision} ({why})")
        return predictor
    weights = functools.cache(lambda: model_weights(model))
    choice = choose(model, device, flags=flags, installed=installed, weights=weights)
    for variant in list(choice.ranked):
        predictor = _open(model, variant, choice, device, weights, options)
        if predictor is not None:
            break
    predictor.engine.choice = choice.record(variant)
    log(choice.line(variant))
    return predictor


def _open(model: str | Path, v: Variant, choice: Choice, device: str,
          weights: Callable[[], str], options: dict[str, Any]) -> Predictor | None:
    """``v``'s predictor; None when its export holds other weights than the model (refused,
    said in ``choice``)."""
    from personkit.inference.predictor import Predictor
    from personkit.models.identity import read_calibrations

    path = choice.files.get(v.key)
    if path is None:
        return Predictor.from_checkpoint(model, device=device, engine=v.engine, **options)
    rest = {k: value for k, value in options.items() if k != "precision"}
    predictor = Predictor.from_export(path, v.engine, "cpu", precision=v.precision,
                                      calibrations=read_calibrations(model), **rest)
    held = predictor.engine.weights_hash
    if held == weights():
        predictor.path = model
        return predictor
    choice.refuse(v, f"{path} is an export of weights {str(held)[:12]}, this model's are "
                     f"{weights()[:12]}: refused")
    return None
