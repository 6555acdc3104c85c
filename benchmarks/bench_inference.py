"""Inference speed: the four-task model against the ReID-only model and four separate
single-task models, in eager PyTorch and ONNX Runtime (see ``personkit.deploy.bench``).

Usage: ``python benchmarks/bench_inference.py [CONFIG|CHECKPOINT] [personkit bench options]``,
e.g. ``python benchmarks/bench_inference.py --batch-sizes 1,10,32 --repeats 3``. Every number
is the median of ``--repeats`` round-robin runs after warm-up, and the ratios are against
baselines measured in the same run. Writes ``bench.json`` and ``bench.md`` to ``--out``
(default ``runs/bench``); the results we measured are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys

from personkit.cli import main

if __name__ == "__main__":
    sys.argv = ["personkit", "bench", *sys.argv[1:]]  # recorded as the command in the report
    sys.exit(main(sys.argv[1:]))
