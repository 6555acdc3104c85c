"""Run logging: every scalar goes to a JSONL file and to TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from personkit.checkpoint import write_text_atomic


class RunLogger:
    """Writes ``RUN_DIR/log.jsonl`` and TensorBoard events in ``RUN_DIR/tb``.

    A run that (re)starts at ``start_step`` first drops the records of later steps, which a
    killed run logged after its last checkpoint: the resumed run logs them again, so every
    step appears once (TensorBoard's ``purge_step`` does the same for the events).
    ``enabled=False`` (non-zero DDP ranks) makes every call a no-op.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, start_step: int = 0):
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        if enabled:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            truncate_log(self.path, start_step)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=start_step + 1)

    def log(self, step: int, values: dict[str, float], **fields: object) -> None:
        """One JSONL record ``{"step", **fields, **values}``; values also go to TensorBoard."""
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, **fields, **values}) + "\n")
        for key, value in values.items():
            self._tb.add_scalar(key, value, step)

    def event(self, step: int, event: str, **fields: object) -> None:
        """A JSONL record ``{"step", "event", **fields}`` that is not a scalar (not in
        TensorBoard), e.g. the settings a resumed run changed."""
        if self.enabled:
            self._file.write(json.dumps({"step": step, "event": event, **fields}) + "\n")

    def flush(self) -> None:
        if self.enabled:
            self._file.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()
            self.enabled = False


def truncate_log(path: Path, last_step: int) -> None:
    """Keep only the records of steps <= ``last_step`` in a JSONL log (atomically)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["step"]) <= last_step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill
            continue
    write_text_atomic(path, "".join(kept))
