"""``personkit export --model RUN --auto``: every engine this machine supports exported beside
the run (``RUN/engines/``), checked once against eager torch fp32 and timed here, the result
in ``RUN/engine_checks.json`` that ``--engine auto`` reads (:mod:`personkit.deploy.auto`).

The accuracy check of an int8 or bf16 engine runs the model's own evaluation sets
(``data.eval``) through the official protocols on the engine and on torch fp32 and compares
:data:`~personkit.deploy.auto.COMPARED_SCORES` (points lost), and compares the same-person
decisions (cosine distance at the threshold calibrated in that reference evaluation) over
the pairs of the first ReID set's query and gallery crops (a seeded sample of
:data:`MAX_PAIR_ITEMS` crops when larger). At the model's input size the engine runs the very
files ``auto`` will run; a set read at another size gets an export of that size made the same
way (int8: calibrated on the same images), as ``personkit eval --engine`` does. The exact
engines are checked for parity (ONNX Runtime fp32 against torch, the float32 rounding bound).
"""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from personkit.checkpoint import content_hash, write_json
from personkit.config import Config
from personkit.deploy.auto import (
    CHECKS_FILE,
    CHECKS_VERSION,
    COMPARED_SCORES,
    EXPORTS_DIR,
    MAX_LOSS_POINTS,
    MIN_SAME_PERSON_AGREEMENT,
    VARIANTS,
    Variant,
    choose,
    installed_engines,
    passes,
    run_folder,
    unsupported,
    verdict,
)
from personkit.deploy.engines import EngineModel
from personkit.deploy.export import check_parity
from personkit.deploy.quantize import calibration_batch, calibration_files, quantize_export
from personkit.engine.datasets import person_dataset, read_records
from personkit.engine.evaluate import eval_protocols, predict, run_evaluation
from personkit.extras import INSTALL
from personkit.inference.backends import Engine, TorchEngine, is_export, open_export
from personkit.inference.contract import TASKS
from personkit.inference.export import export_onnx, export_openvino
from personkit.models.identity import read_calibrations
from personkit.models.loading import load_model_and_config
from personkit.outputs import claim_outputs
from personkit.runtime import cpu_description, cpu_flags

#: At most this many ReID crops go into the same-person pairs (N crops: N(N-1)/2 pairs).
MAX_PAIR_ITEMS = 2000
#: Crops per timed forward pass (a frame of up to 8 people) and timed passes (the fastest
#: ranks the engines: the one least slowed by other processes on a shared machine).
TIMING_BATCH, TIMING_REPEATS = 8, 9


def export_auto(model_path: str | Path, *, calib_data: str | Path | None = None,
                calib_size: int = 300, batch_size: int = 64, overwrite: bool = False,
                flags: Collection[str] | None = None, installed: Collection[str] | None = None,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """``personkit export --model RUN --auto``: export ``model_path`` for every engine
    variant this machine supports (``flags``, ``installed``: as for
    :func:`~personkit.deploy.auto.choose`), check each, time each, and write
    ``engine_checks.json``; int8 is calibrated on ``calib_size`` crops of ``calib_data``
    (default: the images of the run's training sets). An earlier ``engines/`` and
    ``engine_checks.json`` are refused unless ``overwrite``. Returns the file's content."""
    if is_export(model_path):
        raise ValueError(f"--auto exports a run directory or checkpoint; {model_path} is an "
                         f"export already")
    folder = run_folder(model_path)
    claim_outputs(folder, [EXPORTS_DIR, CHECKS_FILE], overwrite, "export")
    model, cfg = load_model_and_config(model_path, "cpu")
    flags = cpu_flags() if flags is None else set(flags)
    installed = installed_engines() if installed is None else set(installed)
    calib, no_calib = _calibration_images(cfg, calib_data)
    variants, skipped = _plan(flags, installed, no_calib if not calib else None,
                              _evaluation_problem(cfg), log)
    exports = _write_exports(model, folder / EXPORTS_DIR, variants, calib, calib_size,
                             read_calibrations(model_path), log)
    records = _check_all(model, cfg, variants, exports, calib, calib_size, batch_size, log)
    weights = content_hash(model.state_dict())
    for key, why in skipped.items():
        records[key] = {"variant": key, "skipped": why, "weights": weights}
    for record in records.values():
        record.update(weights=weights)
    content = {"version": CHECKS_VERSION, "model": str(model_path), "weights": weights,
               "cpu": cpu_description(),
               "bound": {"max_loss_points": MAX_LOSS_POINTS,
                         "min_same_person_agreement": MIN_SAME_PERSON_AGREEMENT},
               "checks": records}
    log(f"wrote {write_json(folder / CHECKS_FILE, content)}")
    log(summary(records))
    pick = choose(model_path, flags=flags, installed=installed, weights=lambda: weights)
    log(f"--engine auto now runs: {pick.ranked[0].label} ({pick.reasons[pick.ranked[0].key]})")
    return content


def _plan(flags: Collection[str], installed: Collection[str], no_calib: str | None,
          unscored: str | None, log: Callable[[str], None]
          ) -> tuple[list[Variant], dict[str, str]]:
    """The variants to make here, and those this machine could run but ``export --auto``
    cannot make, with why (:func:`_not_made`); each one not made is logged."""
    variants, skipped = [], {}
    for v in VARIANTS:
        why = unsupported(v, flags, installed)
        if why is None and (why := _not_made(v, installed, no_calib, unscored)):
            skipped[v.key] = why
        if why:
            log(f"{v.label}: not made: {why}")
        else:
            variants.append(v)
    return variants, skipped


def _not_made(v: Variant, installed: Collection[str], no_calib: str | None,
              unscored: str | None) -> str | None:
    """Why ``export --auto`` cannot make a variant this machine runs: a library that makes
    it is missing, no calibration images (``no_calib``, int8) or no evaluation sets to check
    it on (``unscored``, int8 and bf16)."""
    if v.export and "onnx" not in installed:
        return f"onnx is not installed ({INSTALL['onnx']})"
    if v.int8 and "nncf" not in installed:
        return f"nncf is not installed ({INSTALL['nncf']})"
    if v.int8 and no_calib:
        return no_calib
    return unscored if not v.exact else None


def _evaluation_problem(cfg: Config) -> str | None:
    """Why the run's evaluation sets cannot score an engine (None: they can)."""
    if not cfg.data.eval:
        return "the run has no evaluation sets (data.eval) to check the accuracy on"
    for d in cfg.data.eval:
        try:
            read_records(d, None, cfg.data.root)
        except (ValueError, FileNotFoundError) as e:
            return f"its evaluation set {d.name!r} cannot be read ({e})"
    return None


def _calibration_images(cfg: Config, calib_data: str | Path | None
                        ) -> tuple[list[Path], str]:
    """The int8 calibration images: ``calib_data``'s, else the training sets' (never the
    evaluation sets the check scores); and why there are none."""
    if calib_data:
        return calibration_files(calib_data), ""
    files: dict[Path, None] = {}
    for d in cfg.data.train:
        try:
            files.update(dict.fromkeys(r.image_path for r in read_records(d, None,
                                                                          cfg.data.root)))
        except (ValueError, FileNotFoundError) as e:
            return [], f"no calibration images: the training set {d.name!r} cannot be read " \
                       f"({e}); give --calib-data"
    return list(files), "no calibration images: the run has no training sets; give --calib-data"


def _write_exports(model: nn.Module, out: Path, variants: Sequence[Variant],
                   calib: Sequence[Path], calib_size: int,
                   calibrations: dict[str, dict[str, Any]],
                   log: Callable[[str], None]) -> dict[str, Path]:
    """The files the variants read, in ``out``: ``model.onnx``, ``openvino/`` and
    ``openvino-int8/`` (NNCF, calibrated on ``calib``), by export name."""
    names = {v.export for v in variants if v.export}
    if not names:
        return {}
    written = {"model.onnx": export_onnx(model, out / "model.onnx", calibrations=calibrations)}
    if names & {"openvino", "openvino-int8"}:
        written["openvino"] = export_openvino(model, out / "openvino", onnx_path=written[
            "model.onnx"], calibrations=calibrations).parent
    if "openvino-int8" in names:
        batch = calibration_batch(calib, model.meta, calib_size, log=log)
        written["openvino-int8"] = quantize_export(written["openvino"] / "model.xml", batch,
                                                   out / "openvino-int8" / "model.xml").parent
    for path in written.values():
        log(f"wrote {path}")
    return written


def _check_all(model: nn.Module, cfg: Config, variants: Sequence[Variant],
               exports: dict[str, Path], calib: Sequence[Path], calib_size: int,
               batch_size: int, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Each variant's record: its parity (exact) or accuracy check, and its speed here."""
    records: dict[str, dict[str, Any]] = {}
    inexact = [v for v in variants if not v.exact]
    reference = _reference(model, cfg, batch_size, log) if inexact else None
    with tempfile.TemporaryDirectory(prefix="personkit-auto-") as tmp:
        sized = SizedExports(model, Path(tmp), calib, calib_size)
        for v in variants:
            start = time.perf_counter()
            if v.exact:
                record = _exact_record(model, v, exports)
            else:
                engine_model = _engine_model(model, v, exports, sized)
                record = _accuracy_record(engine_model, cfg, reference, batch_size)
            record.update(_describe(v, exports), seconds=round(time.perf_counter() - start, 1))
            record["passed"] = passes(record)
            log(_check_line(v, record))
            records[v.key] = record
    for key, times in _time_variants(model, variants, exports).items():
        records[key]["ms_per_crop"] = round(1e3 * min(times) / TIMING_BATCH, 3)
        records[key]["ms_per_crop_median"] = round(
            1e3 * statistics.median(times) / TIMING_BATCH, 3)
    return records


def _describe(v: Variant, exports: dict[str, Path]) -> dict[str, Any]:
    """A record's fixed part: which variant, which file, when and on which CPU."""
    return {"variant": v.key, "engine": v.engine, "precision": v.precision, "int8": v.int8,
            "exact": v.exact, "export": f"{EXPORTS_DIR}/{v.export}" if v.export else None,
            "checked": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu_description()}


def _exact_record(model: nn.Module, v: Variant, exports: dict[str, Path]) -> dict[str, Any]:
    """An exact variant's parity with torch (torch itself: exact by definition)."""
    if v.engine == "torch":
        return {"parity_ok": True}
    report = check_parity(model, exports[v.export], engine=v.engine)
    return {"parity_ok": report.ok, "parity_worst": report.worst_rel, "parity_tol": report.tol}


def _check_line(v: Variant, record: dict[str, Any]) -> str:
    """One log line per checked variant."""
    if v.exact:
        return f"{v.label}: exact, parity {'PASS' if record['parity_ok'] else 'FAIL'}"
    agreement = record.get("same_person_agreement")
    pairs = "" if agreement is None else (f", {100 * agreement:.2f} % of "
                                          f"{record['pairs']} same-person decisions unchanged")
    failed = verdict(record)
    return (f"{v.label}: worst loss {record['worst_loss_points']:.2f} points "
            f"({record['worst']}){pairs}: " + ("PASS" if failed is None else f"FAIL, {failed}")
            + f" ({record['seconds']:.0f} s)")


def summary(records: dict[str, dict[str, Any]]) -> str:
    """The records as a Markdown table: check, speed, verdict."""
    base = (records.get("torch-fp32") or {}).get("ms_per_crop")
    lines = ["| engine | worst loss (points) | same-person decisions unchanged | ms a crop "
             "(batch 8, flip; best run) | vs torch fp32 | within the bound |",
             "|---|---:|---:|---:|---:|---|"]
    for key, r in records.items():
        if r.get("skipped"):
            lines.append(f"| {key} | – | – | – | – | no: {r['skipped']} |")
            continue
        loss = "exact" if r["exact"] else f"{r['worst_loss_points']:.2f} ({r['worst']})"
        agree = r.get("same_person_agreement")
        ms = r.get("ms_per_crop")
        lines.append(f"| {key} | {loss} | {'–' if agree is None else f'{100 * agree:.2f} %'} "
                     f"| {'–' if ms is None else f'{ms:.2f}'} | "
                     f"{f'{base / ms:.2f}x' if base and ms else '–'} | "
                     f"{'yes' if r['passed'] else 'no: ' + str(verdict(r))} |")
    return "\n".join(lines)


class SizedExports:
    """Exports of ``model`` at evaluation input sizes other than its own, made on first use
    in ``folder`` as ``export --auto`` makes its own (int8 calibrated on ``calib``)."""

    def __init__(self, model: nn.Module, folder: Path, calib: Sequence[Path], calib_size: int):
        self.model, self.folder, self.calib, self.calib_size = model, folder, calib, calib_size
        self.made: dict[tuple[tuple[int, int], str], Path] = {}

    def path(self, size: tuple[int, int], name: str) -> Path:
        """The export called ``name`` (``model.onnx``, ``openvino``, ``openvino-int8``) at
        ``size``."""
        import dataclasses

        if (size, name) in self.made:
            return self.made[(size, name)]
        folder = self.folder / f"{size[0]}x{size[1]}"
        if name == "model.onnx":
            made = export_onnx(self.model, folder / name, input_size=size)
        elif name == "openvino":
            made = export_openvino(self.model, folder / name, input_size=size,
                                   onnx_path=self.path(size, "model.onnx")).parent
        else:
            meta = dataclasses.replace(self.model.meta, input_size=size)
            made = quantize_export(self.path(size, "openvino") / "model.xml",
                                   calibration_batch(self.calib, meta, self.calib_size)).parent
        self.made[(size, name)] = made
        return made


def _engine_model(model: nn.Module, v: Variant, exports: dict[str, Path],
                  sized: SizedExports) -> EngineModel:
    """``v`` as the evaluation code's model: at the model's input size the file ``auto``
    runs, at another size one made the same way."""
    own = tuple(model.meta.input_size)

    def engine_for(size: tuple[int, int]) -> Engine:
        path = exports[v.export] if size == own else sized.path(size, v.export)
        return open_export(path, v.engine, precision=v.precision)

    heads = tuple(t for t in TASKS if t in model.enabled)
    return EngineModel(engine_for, model.meta, heads, v.label, v.precision)


@dataclass
class Reference:
    """Eager torch fp32 on the evaluation sets: the scores, the first ReID set's embeddings
    (query then gallery) and the same-person threshold calibrated on that set."""

    results: dict[str, dict[str, Any]]
    embeddings: np.ndarray | None
    threshold: float | None


def _reference(model: nn.Module, cfg: Config, batch_size: int,
               log: Callable[[str], None]) -> Reference:
    """:class:`Reference` for ``model``."""
    start = time.perf_counter()
    results = run_evaluation(model, cfg, batch_size=batch_size, progress=False)
    name, embeddings = reid_embeddings(model, cfg, batch_size)
    match = results.get(name or "", {}).get("match") or {}
    log(f"torch fp32 (the reference): evaluated in {time.perf_counter() - start:.0f} s")
    return Reference(results, embeddings, match.get("threshold"))


def reid_embeddings(model: nn.Module | EngineModel, cfg: Config, batch_size: int = 64
                    ) -> tuple[str | None, np.ndarray | None]:
    """The name of the first evaluation set the model scores ReID on and its query and
    gallery embeddings (flip averaged, as the protocol and the commands embed); None, None
    without one."""
    for d in cfg.data.eval:
        if "reid" in eval_protocols(d, model.enabled):
            records = [r for split in ("query", "gallery")
                       for r in read_records(d, split, cfg.data.root)]
            dataset = person_dataset(d, records, cfg, False)
            out = [o.embedding.numpy() for _, o in predict(
                model, dataset, ["reid"], batch_size=batch_size, flip_tta=True,
                progress=False)]
            return d.name, np.concatenate(out)
    return None, None


def _accuracy_record(engine_model: EngineModel, cfg: Config, reference: Reference,
                     batch_size: int) -> dict[str, Any]:
    """An inexact variant's scores against the reference: points lost per compared score,
    the worst, and the share of same-person decisions it leaves unchanged."""
    results = run_evaluation(engine_model, cfg, batch_size=batch_size, progress=False)
    losses = score_losses(reference.results, results)
    worst = max(losses, key=losses.get) if losses else None
    record: dict[str, Any] = {"losses": losses, "worst": worst,
                              "worst_loss_points": losses[worst] if worst else None,
                              "reid": reference.embeddings is not None,
                              "same_person_agreement": None, "threshold": reference.threshold}
    if reference.embeddings is not None and reference.threshold is not None:
        _, got = reid_embeddings(engine_model, cfg, batch_size)
        record["same_person_agreement"], record["pairs"] = same_person_agreement(
            reference.embeddings, got, reference.threshold)
    return record


def score_losses(reference: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]]
                 ) -> dict[str, float]:
    """Points (score × 100) each compared score (:data:`COMPARED_SCORES`) lost against
    ``reference``, by ``dataset.protocol.score`` (negative: a gain)."""
    losses = {}
    for name, protocols in reference.items():
        for protocol, scores in protocols.items():
            for score in COMPARED_SCORES.get(protocol, ()):
                ref = scores.get(score)
                value = got.get(name, {}).get(protocol, {}).get(score)
                if isinstance(ref, float) and isinstance(value, float):
                    losses[f"{name}.{protocol}.{score}"] = round(100 * (ref - value), 4)
    return losses


def same_person_agreement(reference: np.ndarray, got: np.ndarray, threshold: float,
                          limit: int = MAX_PAIR_ITEMS, seed: int = 0) -> tuple[float, int]:
    """The share of pairs of crops whose same-person decision (cosine distance of the
    L2-normalised embeddings at most ``threshold``) is the same with ``got`` as with
    ``reference`` (a seeded sample of ``limit`` crops when there are more), and the number
    of pairs."""
    if reference.shape != got.shape:
        raise ValueError(f"embeddings of {reference.shape} and {got.shape}: not the same crops")
    index = np.arange(len(reference))
    if len(index) > limit:
        index = np.sort(np.random.default_rng(seed).choice(index, limit, replace=False))
    upper = np.triu_indices(len(index), 1)

    def decisions(embeddings: np.ndarray) -> np.ndarray:
        e = embeddings[index].astype(np.float64)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return (1.0 - e @ e.T)[upper] <= threshold

    same = decisions(reference) == decisions(got)
    return float(same.mean()) if same.size else 1.0, int(same.size)


def _time_variants(model: nn.Module, variants: Sequence[Variant], exports: dict[str, Path]
                   ) -> dict[str, list[float]]:
    """Seconds of each of ``TIMING_REPEATS`` passes of each variant here (after one warm-up),
    taken round-robin: ``TIMING_BATCH`` crops with the mirrored ReID pass of flip
    averaging."""
    import torch

    heads = tuple(t for t in TASKS if t in model.enabled)
    runners: dict[str, Engine] = {}
    for v in variants:
        runners[v.key] = (TorchEngine(model, torch.device("cpu")) if v.engine == "torch"
                          else open_export(exports[v.export], v.engine, precision=v.precision))
    h, w = model.meta.input_size
    x = np.random.default_rng(0).standard_normal((TIMING_BATCH, 3, h, w)).astype(np.float32)
    mirror = np.ascontiguousarray(x[..., ::-1])
    times: dict[str, list[float]] = {k: [] for k in runners}
    for k in range(TIMING_REPEATS + 1):  # the first pass warms up
        for key, runner in (runners.items() if k % 2 else reversed(runners.items())):
            start = time.perf_counter()
            runner.run(x, heads)
            if "reid" in heads:
                runner.run(mirror, ("reid",))
            if k:
                times[key].append(time.perf_counter() - start)
    return times
