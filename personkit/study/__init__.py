"""``personkit study``: a grid of trainings from one spec, each evaluated with the official
protocols, recorded and reported like the paper's Tables 5-7 and Fig. 5 (docs/study.md).

:mod:`~personkit.study.spec` reads and validates a spec into jobs, :mod:`~personkit.study.jobs`
runs one job and records it, :mod:`~personkit.study.parallel` runs independent jobs in child
processes (``--jobs N``), :mod:`~personkit.study.run` is the whole study and
:mod:`~personkit.study.report` writes ``study.md`` and ``fig5.png``.
"""

from personkit.study.jobs import StudyRunError, read_results
from personkit.study.run import run_study
from personkit.study.spec import StudyError, load_study

__all__ = ["StudyError", "StudyRunError", "load_study", "read_results", "run_study"]
