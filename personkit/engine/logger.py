"""Run logging: every scalar goes to a JSONL file and to TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    """Writes ``RUN_DIR/log.jsonl`` and TensorBoard events in ``RUN_DIR/tb``.

    ``enabled=False`` (non-zero DDP ranks) makes every call a no-op.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        if enabled:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, step: int, values: dict[str, float], **fields: object) -> None:
        """One JSONL record ``{"step", **fields, **values}``; values also go to TensorBoard."""
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, **fields, **values}) + "\n")
        for key, value in values.items():
            self._tb.add_scalar(key, value, step)

    def flush(self) -> None:
        if self.enabled:
            self._file.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()
            self.enabled = False
