"""Old import paths of the config -> objects functions, kept for user code and documented
examples; personkit itself imports them from where they live:

* :func:`build_model`, :func:`build_bench_models`: :mod:`personkit.models.build`;
* :func:`model_config_of`: :mod:`personkit.models.loading`;
* :func:`build_trainer`, :func:`validate_training`: :mod:`personkit.engine.build`;
* :func:`build_sources`, :func:`read_records`: :mod:`personkit.engine.datasets`;
* :func:`run_evaluation`: :mod:`personkit.engine.evaluate`.
"""

from personkit.engine.build import build_trainer, validate_training
from personkit.engine.datasets import build_sources, read_records
from personkit.engine.evaluate import run_evaluation
from personkit.models.build import build_bench_models, build_model
from personkit.models.loading import model_config_of

__all__ = ["build_bench_models", "build_model", "build_sources", "build_trainer",
           "model_config_of", "read_records", "run_evaluation", "validate_training"]
