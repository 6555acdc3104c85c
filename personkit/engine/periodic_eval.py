"""Evaluation during training (``train.eval_every``): learning curves and best/last weights.

Every ``every`` steps the trainer calls :class:`PeriodicEvaluation`, which runs the
``data.eval`` sets with the official protocols (the same code as ``personkit eval``; under DDP
every rank evaluates its shard and the results are gathered, so every rank sees the same
scores), logs every scalar score to ``log.jsonl`` and TensorBoard as ``eval/<dataset>.
<protocol>.<score>`` (e.g. ``eval/market.reid.mAP``), and, on rank 0 only, writes

* ``model_last.safetensors``: the weights of the latest evaluation;
* ``model_best.safetensors`` and ``best.json``: the weights and scores of the evaluation with
  the highest ``best_metric`` (e.g. ``market.reid.mAP``; every personkit score is
  higher-is-better). A resumed run continues from the best recorded before its checkpoint.

Nothing of this exists when ``eval_every`` is 0: no hook is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from personkit.checkpoint import save_weights, write_json

Results = Mapping[str, Mapping[str, Mapping[str, Any]]]


def flatten_scores(results: Results) -> dict[str, float]:
    """``{dataset: {protocol: {score: value}}}`` -> ``{"dataset.protocol.score": value}`` for
    every finite scalar score (curves such as ``cmc`` and per-class lists are left out)."""
    flat = {}
    for dataset, protocols in results.items():
        for protocol, scores in protocols.items():
            for name, value in scores.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    flat[f"{dataset}.{protocol}.{name}"] = float(value)
    return flat


class PeriodicEvaluation:
    """A trainer hook: ``hook(trainer, logger)`` after every step; acts every ``every`` steps.

    Args:
        evaluate: model -> ``{dataset: {protocol: scores}}`` (e.g. a bound
            :func:`personkit.engine.evaluate.run_evaluation`); called on every DDP rank.
        every: evaluate when the step is a multiple of this (> 0).
        run_dir: where the weights, ``best.json`` and the log go.
        best_metric: a key of :func:`flatten_scores` (``market.reid.mAP``); None = keep only
            the last weights.
        is_main: this process writes files (DDP rank 0).
    """

    def __init__(self, evaluate: Callable[[nn.Module], Results], every: int,
                 run_dir: str | Path, best_metric: str | None = None, is_main: bool = True):
        if every <= 0:
            raise ValueError(f"train.eval_every must be > 0 for a periodic evaluation, got {every}")
        self.evaluate, self.every = evaluate, every
        self.run_dir, self.best_metric, self.is_main = Path(run_dir), best_metric, is_main
        self.best: dict[str, Any] | None = None
        self._started = False

    def __call__(self, trainer: Any, logger: Any) -> None:
        if not self._started:
            self._start(trainer.step - 1)
        if trainer.step % self.every:
            return
        model = getattr(trainer.model, "module", trainer.model)
        training = model.training
        try:
            scores = flatten_scores(self.evaluate(model))
        finally:
            model.train(training)
        self._check_metric(scores)
        if not self.is_main:
            return
        logger.log(trainer.step, {f"eval/{k}": v for k, v in scores.items()}, event="eval")
        logger.flush()
        config, meta = trainer.extra_state.get("config", {}), trainer.extra_state.get("meta", {})
        save_weights(model, self.run_dir / "model_last.safetensors", config, meta)
        if self.best_metric is None:
            return
        value = scores[self.best_metric]
        if self.best is None or (math.isfinite(value) and not value <= self.best["value"]):
            save_weights(model, self.run_dir / "model_best.safetensors", config, meta)
            self.best = {"metric": self.best_metric, "value": value, "step": trainer.step,
                         "scores": scores}
            write_json(self.run_dir / "best.json", self.best, end="")

    def _start(self, start_step: int) -> None:
        """Continue from the best of a resumed run; a run from step 0 starts afresh."""
        self._started = True
        path = self.run_dir / "best.json"
        if start_step <= 0 or not path.is_file():
            return
        try:
            best = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return
        if best.get("metric") == self.best_metric and int(best.get("step", 1 << 62)) <= start_step:
            self.best = best

    def _check_metric(self, scores: Mapping[str, float]) -> None:
        if self.best_metric is not None and self.best_metric not in scores:
            raise ValueError(
                f"train.best_metric {self.best_metric!r} is not among the evaluation's scores: "
                f"{', '.join(sorted(scores)) or 'none (data.eval produced no scores)'}")
