"""Inference speed of the multi-task model against single-task baselines (``personkit bench``).

Pfeiffer et al. (GCPR 2019, Sec. 5) claim that sharing one backbone adds almost no overhead to
the single-task ReID baseline (50 crops/s at batch 1, 122 at batch 10 on a GTX 1080 Ti). This
measures, within one run and on the same input batches (random normalised crops at the model's
input size; decoding and resizing are not included):

* ``four-task``: one model with the reid, attributes, pose and segmentation heads;
* ``reid-only``: the single-task ReID model;
* ``four-separate``: four single-task models (reid, attributes, pose, segmentation), each with
  its own backbone, run one after another;
* ``four-task-light``: the four-task model with a 128-channel FPN and a 64-channel
  segmentation branch (train it with ``model.fpn_channels=128 model.seg_channels=64``);
* per-head cost: the trunk (C2-C4 and every branch's last stage, :meth:`MultiTaskModel.trunk`)
  and each head alone on the cached trunk features (:meth:`MultiTaskModel.run_heads`), as a share
  of the four-task latency.

Eager PyTorch and ONNX Runtime (four-task, reid-only, light); on CUDA also bf16/fp16 autocast,
channels_last and ``torch.compile`` (``reduce-overhead``, i.e. CUDA graphs). Each number is
the median of ``repeats`` timed runs after ``warmup`` runs, next to the machine's own GEMM
ceiling (:mod:`personkit.deploy.roofline`). :class:`Bench` times the models it is given
and reads no config or checkpoint; :func:`run_bench` (``personkit bench``) builds them from a
config or checkpoint with :func:`personkit.models.build.build_bench_models`, randomly
initialised (speed does not depend on the weights), and writes the report.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from personkit.checkpoint import write_json
from personkit.models import TASKS, MultiTaskModel
from personkit.runtime import machine_info, resolve_device

PAPER_GPU = {"device": "GTX 1080 Ti", "batch_1": 50.0, "batch_10": 122.0}
SECTIONS = ("onnx", "openvino", "int8", "bf16", "roofline", "separate", "heads", "light",
            "cuda")
ENGINE_MODELS = ("four-task", "reid-only", "four-task-light")
SEPARATE = tuple(f"{task}-only" for task in TASKS)  # the four single-task models
Job = tuple[str, str, Callable[[], Any]]  # (model variant, engine, run once)


@dataclasses.dataclass
class Row:
    """One measurement: a model variant, an engine, a batch size."""

    model: str
    engine: str
    batch: int
    latency_ms: float | None = None  # median
    crops_per_s: float | None = None  # batch / median latency
    min_latency_ms: float | None = None
    runs_ms: list[float] = dataclasses.field(default_factory=list)  # every timed run
    error: str | None = None


class Bench:
    """Runs the measurements on given models; see the module docstring.

    Args:
        model: the multi-task model (``four-task``); its trunk and heads are timed alone too.
        variants: the models it is compared with, by name: ``reid-only``, ``attributes-only``,
            ``pose-only``, ``segmentation-only`` (together: ``four-separate``) and
            ``four-task-light`` (:func:`personkit.models.build.build_bench_models` builds
            them); any may be missing.
        device: ``cpu`` or ``cuda``.
        batch_sizes: crops per forward pass.
        warmup, repeats: untimed and timed runs per measurement.
        skip: sections to leave out, from ``onnx, separate, heads, light, cuda``.
        log: called with a line after each measurement (progress).
        command: the command line, recorded in the report.
        auto: what ``--engine auto`` picks here for the benchmarked model
            (:func:`auto_pick`), recorded in the report and marked in its table.
    """

    def __init__(self, model: MultiTaskModel, variants: Mapping[str, nn.Module] | None = None,
                 device: str = "auto", batch_sizes: Sequence[int] = (1, 10, 32), warmup: int = 1,
                 repeats: int = 5, skip: Sequence[str] = (),
                 log: Callable[[str], None] | None = None, command: str = "",
                 auto: dict[str, Any] | None = None):
        unknown = [s for s in skip if s not in SECTIONS]
        if unknown:
            raise ValueError(f"unknown bench sections {unknown}; valid: {SECTIONS}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available on this machine")
        if not batch_sizes or min(batch_sizes) < 1 or warmup < 0 or repeats < 1:
            raise ValueError("need batch sizes >= 1, warmup >= 0 and repeats >= 1")
        names = ("reid-only", *SEPARATE[1:], "four-task-light")
        extra = sorted(set(variants or {}) - set(names))
        if extra:
            raise ValueError(f"unknown bench variants {extra}; valid: {list(names)}")
        self.skip = set(skip)
        self.device = resolve_device(device)
        from personkit.deploy.roofline import has_bf16

        #: bf16 rows (torch autocast, OpenVINO) only where the CPU has bf16 instructions
        self._bf16 = "bf16" not in self.skip and has_bf16()
        variants = dict(variants or {})
        if "light" in self.skip:
            variants.pop("four-task-light", None)
        if "separate" in self.skip:
            variants = {k: v for k, v in variants.items() if k in ("reid-only", "four-task-light")}
        self.model = model.to(self.device).eval()
        self.models = {"four-task": self.model,
                       **{k: v.to(self.device).eval() for k, v in variants.items()}}
        self.batch_sizes, self.warmup, self.repeats = tuple(batch_sizes), warmup, repeats
        self.log = log or (lambda line: None)
        self.rows: list[Row] = []
        self.command = command
        self.auto = auto

    def run(self, out_dir: str | Path | None = None) -> dict[str, Any]:
        """Measure everything and return the JSON-ready report (also written to ``out_dir``
        after every batch size, so that a long run leaves results)."""
        if "roofline" not in self.skip and self.device.type == "cpu":
            from personkit.deploy.roofline import count_flops, gemm_ceiling

            self.flops = count_flops(self.model)
            self.ceiling = gemm_ceiling()
            self.log(f"machine ceiling: {_ceiling_text(self.ceiling)}; GFLOP per crop: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in self.flops.items()))
        try:
            self._run(out_dir)
        finally:
            if getattr(self, "ceiling", None):  # measured again at the end: keep the best,
                again = gemm_ceiling()         # one measurement under load understates it
                for key in ("fp32_gflops", "int8_gops", "bf16_gflops"):
                    if again.get(key) and again[key] > (self.ceiling.get(key) or 0):
                        self.ceiling[key] = again[key]
                        if key == "int8_gops":
                            self.ceiling["int8_source"] = again.get("int8_source")
                self.log(f"machine ceiling (best of start and end): "
                         f"{_ceiling_text(self.ceiling)}")
        if out_dir is not None:
            write_report(self.report(), out_dir)
        return self.report()

    def _run(self, out_dir: str | Path | None) -> None:
        self.log(f"timing {len(self.models)} models on every engine at batch sizes "
                 f"{list(self.batch_sizes)}, {self.warmup} warm-up + {self.repeats} timed runs "
                 f"each; the time left is printed after each batch size")
        start, done = time.perf_counter(), 0
        models = self.models
        with tempfile.TemporaryDirectory(prefix="personkit_bench_") as tmp:
            sessions = {} if "onnx" in self.skip else self._onnx_sessions(models, Path(tmp))
            engines = self._engine_runners(models, Path(tmp))
            h, w = self.model.meta.input_size
            for b in self.batch_sizes:
                x = torch.randn(b, 3, h, w, device=self.device)
                jobs = self._eager_jobs(models, x)
                if self.device.type == "cpu" and self._bf16:  # autocast on the CPU
                    jobs += [j for j in self._eager_jobs(models, x, "torch-autocast-bf16",
                                                         _autocast(torch.bfloat16))
                             if j[0] in ("four-task", "reid-only")]
                if "heads" not in self.skip:
                    jobs += self._head_jobs(self.model, x)
                if self.device.type == "cuda" and "cuda" not in self.skip:
                    jobs += self._cuda_jobs(models, x)
                feed = {"images": x.cpu().numpy()}
                jobs += [(name, "onnxruntime", lambda s=s, f=feed: s.run(None, f))
                         for name, s in sessions.items()]
                jobs += [(name, label, lambda e=e, xx=feed["images"], hs=e.heads: e.run(xx, hs))
                         for (name, label), e in engines.items()]
                self._run_jobs(jobs, b)
                if out_dir is not None:
                    write_report(self.report(), out_dir)
                done += b
                left = sum(self.batch_sizes) - done  # time grows about with the batch
                per_crop = (time.perf_counter() - start) / done
                self.log(f"batch {b} done; about {per_crop * left / 60:.1f} min left")

    def _run_jobs(self, jobs: list[Job], batch: int) -> None:
        """Warm every job up, then time them round-robin (so that load from other processes
        spreads over all of them) and keep the median of each."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        rows, live = [], []
        for model, engine, fn in jobs:
            row = Row(model, engine, batch)
            try:
                for _ in range(self.warmup):
                    fn()
                sync()
                live.append((row, fn, []))
            except Exception as e:  # noqa: BLE001 - an engine that fails is reported, not fatal
                row.error = f"{type(e).__name__}: {e}"[:300]
                self.log(f"{model:<32}{engine:<26}batch {batch:<4} failed: {row.error}")
            rows.append(row)
        for k in range(self.repeats):  # alternate the order: no job always follows another
            for _, fn, times in live if k % 2 == 0 else live[::-1]:
                start = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - start)
        for row, _, times in live:
            seconds = statistics.median(times)
            row.latency_ms, row.crops_per_s = seconds * 1e3, batch / seconds
            row.min_latency_ms = min(times) * 1e3
            row.runs_ms = [round(t * 1e3, 2) for t in times]
            self.log(f"{row.model:<32}{row.engine:<26}batch {batch:<4}{row.latency_ms:10.1f} ms"
                     f"{row.crops_per_s:9.1f} crops/s")
        self.rows += rows

    def _eager_jobs(self, models: dict[str, nn.Module], x: torch.Tensor,
                    engine: str = "torch-eager",
                    ctx: Callable[[], AbstractContextManager] = nullcontext) -> list[Job]:
        jobs: list[Job] = [(name, engine, _runner(models[name], x, ctx))
                           for name in ("four-task", "reid-only", "four-task-light")
                           if name in models]
        singles = [models.get(f"{t}-only") for t in TASKS]
        if all(m is not None for m in singles):
            runners = [_runner(m, x, ctx) for m in singles]
            jobs.append(("four-separate", engine, lambda: [r() for r in runners]))
        return jobs

    def _head_jobs(self, model: MultiTaskModel, x: torch.Tensor) -> list[Job]:
        """The trunk (:meth:`MultiTaskModel.trunk`: C2-C4 and every branch's last stage) and
        each head alone on the cached trunk features (:meth:`MultiTaskModel.run_heads`).

        Timing heads alone is far less noisy than subtracting two whole-model latencies.
        """
        heads = [t for t in TASKS if t in model.enabled]
        with torch.inference_mode():
            trunk = model.trunk(x, heads)
        parts: dict[str, Callable[[], Any]] = {"trunk": lambda: model.trunk(x, heads)}
        for head in heads:
            parts[f"head:{head}"] = lambda h=head: model.run_heads(trunk, [h])
        return [(name, "torch-eager", _no_grad(fn)) for name, fn in parts.items()]

    def _cuda_jobs(self, models: dict[str, nn.Module], x: torch.Tensor) -> list[Job]:
        """Autocast bf16/fp16, channels_last + fp16, torch.compile (CUDA graphs) + fp16.

        The channels_last and compiled variants are separate copies of the models.
        """
        jobs: list[Job] = []
        for dtype, label in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
            jobs += self._eager_jobs(models, x, f"torch-autocast-{label}", _autocast(dtype))
        fp16 = _autocast(torch.float16)
        xc = x.contiguous(memory_format=torch.channels_last)
        for name in ("four-task", "reid-only"):
            cl = copy.deepcopy(models[name]).to(memory_format=torch.channels_last)
            jobs.append((name, "torch-channels-last-fp16", _runner(cl, xc, fp16)))
            compiled = _compile(models[name])
            jobs.append((name, "torch-compile-fp16", _runner(compiled, x, fp16)))
        return jobs

    def _onnx_sessions(self, models: dict[str, nn.Module], tmp: Path) -> dict[str, Any]:
        """ONNX Runtime sessions of the four-task, reid-only and light models."""
        from personkit.inference.export import export_onnx

        threads = torch.get_num_threads() if self.device.type == "cpu" else None
        sessions = {}
        for name in ("four-task", "reid-only", "four-task-light"):
            if name in models:
                path = export_onnx(copy.deepcopy(models[name]).cpu(), tmp / f"{name}.onnx")
                sessions[name] = onnx_session(path, self.device.type, threads, spin=False)
        return sessions

    def _engine_runners(self, models: dict[str, nn.Module], tmp: Path) -> dict[tuple[str, str],
                                                                                 Any]:
        """OpenVINO fp32 and the int8 engines (ONNX Runtime static QDQ, OpenVINO NNCF) of the
        four-task, reid-only and light models; a missing extra is logged, not fatal. int8 is
        calibrated on random normalised batches: speed does not depend on the ranges."""
        if self.device.type != "cpu":
            return {}
        from personkit.deploy.quantize import quantize_export
        from personkit.extras import MissingExtraError
        from personkit.inference.backends import open_export
        from personkit.inference.export import export_onnx, export_openvino

        threads = torch.get_num_threads()
        h, w = self.model.meta.input_size
        calib = torch.randn(32, 3, h, w, generator=torch.Generator().manual_seed(0)).numpy()
        runners: dict[tuple[str, str], Any] = {}
        for name in (n for n in ENGINE_MODELS if n in models):
            model = copy.deepcopy(models[name]).cpu()
            onnx_path = export_onnx(model, tmp / f"{name}-engines.onnx")
            todo: list[tuple[str, Any]] = []
            if "openvino" not in self.skip:
                todo.append(("openvino-fp32", lambda m=model, p=onnx_path, n=name:
                             export_openvino(m, tmp / f"{n}-ov", onnx_path=p)))
            if "int8" not in self.skip:
                todo.append(("onnxruntime-int8", lambda p=onnx_path: quantize_export(p, calib)))
                if "openvino" not in self.skip:
                    todo.append(("openvino-int8", lambda n=name: quantize_export(
                        tmp / f"{n}-ov" / "model.xml", calib)))
            if self._bf16 and "openvino" not in self.skip:  # the same files, bf16 hint
                todo += [(f"{label}-bf16", lambda lb=label, n=name: runners[(n, lb)].path)
                         for label, _ in list(todo) if label.startswith("openvino")]
            for label, make in todo:
                try:
                    engine = "onnxruntime" if label.startswith("onnxruntime") else "openvino"
                    precision = "bf16" if label.endswith("-bf16") else "fp32"
                    runners[(name, label)] = open_export(make(), engine, threads=threads,
                                                         precision=precision)
                except (MissingExtraError, RuntimeError, ValueError, FileNotFoundError,
                        KeyError) as e:  # KeyError: a bf16 row whose fp32 export failed
                    self.log(f"{name:<32}{label:<26}skipped: {e}")
        return runners

    def roofline(self) -> list[dict[str, Any]]:
        """Each engine's trunk as a share of the measured GEMM ceiling: the reid-only model is
        the trunk plus a max-pool, so its crops/s times the trunk's counted FLOPs per crop is
        the trunk's achieved rate (int8 engines against the int8 ceiling where measured)."""
        flops, ceiling = getattr(self, "flops", None), getattr(self, "ceiling", None)
        if not flops or not ceiling:
            return []
        out = []
        for r in self.rows:
            if not r.crops_per_s or r.model not in ("reid-only", "trunk"):
                continue
            achieved = flops["trunk"] * r.crops_per_s
            kind = "int8" if "int8" in r.engine else "bf16" if r.engine.endswith("bf16") \
                else "fp32"
            peak = ceiling.get({"int8": "int8_gops", "bf16": "bf16_gflops"}.get(
                kind, "fp32_gflops"))
            out.append({"engine": r.engine, "model": r.model, "batch": r.batch,
                        "trunk_gflops_per_s": achieved, "ceiling": peak,
                        "ceiling_kind": "int8 GOP/s" if kind == "int8" else f"{kind} GFLOP/s",
                        "share": achieved / peak if peak else None})
        return out

    def report(self) -> dict[str, Any]:
        """Machine, settings, every row, the ratios and the per-head costs."""
        return {
            "gemm_ceiling": getattr(self, "ceiling", None),
            "gflop_per_crop": getattr(self, "flops", None),
            "roofline": self.roofline(),
            "command": self.command,
            "auto_engine": self.auto,
            "machine": machine_info(self.device),
            "settings": {"model": _model_summary(self.model), "device": str(self.device),
                         "batch_sizes": list(self.batch_sizes), "warmup": self.warmup,
                         "repeats": self.repeats, "torch_threads": torch.get_num_threads()},
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "ratios": ratios(self.rows),
            "head_costs": head_costs(self.rows),
            "paper_reference": PAPER_GPU,
        }


def onnx_session(path: str | Path, device: str = "cpu", threads: int | None = None,
                 spin: bool = True) -> Any:
    """An ONNX Runtime session (:func:`~personkit.inference.backends.ort_session`).

    ``spin=False`` stops idle worker threads from busy-waiting, which would otherwise steal
    CPU time from whatever runs next (used by the benchmark).
    """
    from personkit.inference.backends import ort_session

    return ort_session(Path(path), device, threads, spin)


def _runner(model: nn.Module, x: torch.Tensor,
            ctx: Callable[[], AbstractContextManager] = nullcontext,
            heads: Sequence[str] | None = None) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode(), ctx():
            return model(x, heads=heads)
    return run


def _compile(model: nn.Module) -> Callable[..., Any]:
    """``torch.compile`` with CUDA graphs; a failure surfaces when the job first runs."""
    try:
        return torch.compile(model, mode="reduce-overhead")
    except Exception as e:  # noqa: BLE001 - reported as the job's error
        message = f"torch.compile failed: {e}"

        def failed(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(message)
        return failed


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return fn()
    return run


def _autocast(dtype: torch.dtype) -> Callable[[], AbstractContextManager]:
    return lambda: torch.autocast("cuda", dtype=dtype)


def _lookup(rows: Sequence[Row], model: str, engine: str, batch: int) -> Row | None:
    for r in rows:
        if (r.model, r.engine, r.batch) == (model, engine, batch) and r.crops_per_s:
            return r
    return None


RATIOS = (("four_task_vs_separate", "four-task", "four-separate"),
          ("four_task_vs_reid_only", "four-task", "reid-only"),
          ("light_vs_reid_only", "four-task-light", "reid-only"))


def ratios(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Throughput ratios within the run, per engine and batch size: four-task vs
    four-separate (goal >= 2.5), four-task vs reid-only (goal >= 0.55), light vs reid-only.

    From the median latencies, and (``*_min`` keys) from the fastest run of each, which is
    less sensitive to other processes on a shared machine.
    """
    out = []
    for engine, batch in dict.fromkeys((r.engine, r.batch) for r in rows):
        entry: dict[str, Any] = {"engine": engine, "batch": batch}
        for key, a, b in RATIOS:
            ra, rb = _lookup(rows, a, engine, batch), _lookup(rows, b, engine, batch)
            if ra is not None and rb is not None:
                entry[key] = rb.latency_ms / ra.latency_ms
                entry[f"{key}_min"] = rb.min_latency_ms / ra.min_latency_ms
        if len(entry) > 2:
            out.append(entry)
    return out


def head_costs(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per part (trunk, each head) and batch size: its latency alone and its share of the
    four-task latency."""
    out = []
    for r in rows:
        four = _lookup(rows, "four-task", r.engine, r.batch)
        if (r.model == "trunk" or r.model.startswith("head:")) and r.latency_ms and four:
            out.append({"part": r.model, "batch": r.batch, "latency_ms": r.latency_ms,
                        "share": r.latency_ms / four.latency_ms})
    return out


def _ceiling_text(ceiling: dict[str, Any]) -> str:
    text = f"fp32 {ceiling['fp32_gflops']:.0f} GFLOP/s" + (
        f", bf16 {ceiling['bf16_gflops']:.0f} GFLOP/s" if ceiling.get("bf16_gflops") else "")
    if ceiling.get("int8_gops"):
        text += (f", int8 {ceiling['int8_gops']:.0f} GOP/s ("
                 f"{ceiling.get('int8_source') or 'torch._int_mm'}; "
                 f"{', '.join(ceiling['int8_features'])})")
    return text + f" ({ceiling['threads']} threads, {ceiling['n']}³ products)"


def _model_summary(model: MultiTaskModel) -> dict[str, Any]:
    meta = model.meta
    return {"backbone": meta.backbone, "norm": meta.norm, "sharing": meta.sharing,
            "input_size": list(meta.input_size), "heads": list(meta.heads),
            "fpn_channels": model.fpn.out_channels if hasattr(model, "fpn") else None,
            "seg_classes": len(meta.part_classes), "attributes": len(meta.attributes),
            "parameters": sum(p.numel() for p in model.parameters())}


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables: throughput/latency, ratios, per-head cost."""
    rows = [Row(**r) for r in report["rows"]]
    batches = report["settings"]["batch_sizes"]
    m, s = report["machine"], report["settings"]
    lines = [f"Machine: {m['cpu']}, {m['nproc']} cores ({s['torch_threads']} torch threads, "
             f"OMP_WAIT_POLICY={m.get('omp_wait_policy')}, "
             f"GOMP_SPINCOUNT={m.get('gomp_spincount', '(default)')})"
             + (f", GPU {m['gpu']}" if "gpu" in m else "")
             + f"; torch {m['torch']}, onnxruntime {m['onnxruntime']}; {m['date']}"
             + f"; load average {m.get('load_average_1m', '?')}",
             f"Model: {json.dumps(s['model'])}; device {s['device']}; median of "
             f"{s['repeats']} runs after {s['warmup']} warm-up (round-robin)",
             f"Command: `{report.get('command', '')}`",
             *([f"`--engine auto` here: {report['auto_engine']['line']} (its rows: engine "
                f"{report['auto_engine']['bench_row']})"] if report.get("auto_engine") else []),
             "",
             "| model | engine | " + " | ".join(f"batch {b}: crops/s (ms)" for b in batches)
             + " |", "|---|---|" + "---:|" * len(batches)]
    for model, engine in dict.fromkeys((r.model, r.engine) for r in rows):
        cells = []
        for b in batches:
            r = next((r for r in rows if (r.model, r.engine, r.batch) == (model, engine, b)), None)
            cells.append("–" if r is None else "error" if r.error else
                         f"{r.crops_per_s:.1f} ({_ms(r.latency_ms)})")
        lines.append(f"| {model} | {engine} | " + " | ".join(cells) + " |")
    lines += ["", "Throughput ratios from median latencies (in brackets: from the fastest runs).",
              "", "| engine | batch | four-task / four-separate (goal ≥ 2.5) | "
              "four-task / reid-only (goal ≥ 0.55) | light / reid-only |",
              "|---|---:|---:|---:|---:|"]
    fmt = lambda v, m: "–" if v is None else f"{v:.2f} ({m:.2f})"  # noqa: E731
    for e in report["ratios"]:
        cells = [fmt(e.get(k), e.get(f"{k}_min")) for k, _, _ in RATIOS]
        lines.append(f"| {e['engine']} | {e['batch']} | " + " | ".join(cells) + " |")
    if report["head_costs"]:
        lines += ["", "Cost of each part alone (heads on cached trunk features, torch eager):",
                  "", "| part | batch | latency (ms) | share of four-task latency |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {c['part']} | {c['batch']} | {c['latency_ms']:.1f} | "
                  f"{100 * c['share']:.1f} % |" for c in report["head_costs"]]
    return "\n".join(lines + _roofline_lines(report)) + "\n"


def _roofline_lines(report: dict[str, Any]) -> list[str]:
    """The GEMM ceiling, GFLOP per crop per part and each engine's trunk share of it."""
    ceiling, flops = report.get("gemm_ceiling"), report.get("gflop_per_crop")
    if not ceiling or not flops:
        return []
    int8 = ceiling.get("int8_gops")
    lines = ["", f"Machine ceiling ({ceiling['n']}³ matrix product, {ceiling['threads']} "
             f"threads, best run): fp32 {ceiling['fp32_gflops']:.1f} GFLOP/s"
             + (f", bf16 {ceiling['bf16_gflops']:.1f} GFLOP/s" if ceiling.get("bf16_gflops")
                else "")
             + (f", int8 {int8:.1f} GOP/s ({ceiling.get('int8_source') or 'torch._int_mm'}; "
                f"{', '.join(ceiling['int8_features'])})" if int8
                else ", int8: no VNNI/AMX or not measured"),
             "", "Counted GFLOP per crop (2 per multiply-add): "
             + ", ".join(f"{k} {v:.3f}" for k, v in flops.items()),
             "", "| engine | model | batch | trunk GFLOP/s | % of ceiling |",
             "|---|---|---:|---:|---:|"]
    for r in report.get("roofline", []):
        share = "–" if r["share"] is None else f"{100 * r['share']:.0f} % of {r['ceiling_kind']}"
        lines.append(f"| {r['engine']} | {r['model']} | {r['batch']} | "
                     f"{r['trunk_gflops_per_s']:.1f} | {share} |")
    return lines


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``bench.json`` and ``bench.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    write_json(json_path, report, end="")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


def run_bench(source: str | Path | None = None, overrides: Sequence[str] = (),
              device: str = "auto", batch_sizes: Sequence[int | str] = (1, 10, 32),
              warmup: int = 1, repeats: int = 5, skip: Sequence[str] = (), threads: int = 0,
              out: str | Path = "runs/bench", command: str = "") -> str:
    """``personkit bench``: the models of ``source`` (a config, checkpoint or run dir; None:
    the paper's ResNet-50 GN at 256×128) with ``overrides``, randomly initialised, timed on
    ``threads`` torch threads (0: torch's default); writes ``bench.json`` and ``bench.md`` to
    ``out`` and returns the Markdown report with where it was written."""
    from personkit.models.build import build_bench_models
    from personkit.models.loading import model_config_of

    torch.set_num_threads(threads or torch.get_num_threads())
    model, variants = build_bench_models(model_config_of(source, overrides))
    pick = auto_pick(source, device)
    print(f"--engine auto here: {pick['line']}", flush=True)
    bench = Bench(model, variants, device, [int(b) for b in batch_sizes], warmup, repeats,
                  skip, log=lambda line: print(line, flush=True), command=command, auto=pick)
    json_path, md_path = write_report(bench.run(out), out)
    return md_path.read_text(encoding="utf-8") + f"wrote {json_path} and {md_path}"


def auto_pick(source: str | Path | None, device: str = "auto") -> dict[str, Any]:
    """What ``--engine auto`` runs ``source`` on here (:func:`personkit.deploy.auto.choose`;
    a config or no source: a model with no checks), and ``personkit bench``'s row that times
    that engine."""
    from personkit.deploy.auto import BENCH_ROWS, choose, model_weights
    from personkit.inference.backends import is_export

    trained = source is not None and not str(source).endswith((".yaml", ".yml"))
    if trained and is_export(source):
        return {"variant": None, "bench_row": None,
                "line": f"{source} is an export: it runs on its own engine"}
    model = source if trained else None
    choice = choose(model, device, weights=lambda: model_weights(model))
    best = choice.ranked[0]
    return {"variant": best.key, "bench_row": BENCH_ROWS[best.key], "line": choice.line(best)}
