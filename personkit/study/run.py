"""``personkit study``: a grid of trainings from one spec, each evaluated with the official
protocols, recorded in ``results.jsonl`` and summarised like the paper's Tables 5-7 and Fig. 5
(Pfeiffer et al., GCPR 2019). See docs/study.md for the spec format.

The whole spec is validated before anything runs: every row's config is loaded with its
overrides (a bad override stops the study, naming the row). Rows run in order (``--jobs N``:
up to N at a time in child processes, see study_jobs.py); a finished
(row, seed, config hash) in ``results.jsonl`` is skipped, so a killed study resumes, and a run
killed mid-training resumes from its newest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personkit.runtime import exclusive
from personkit.study.jobs import (
    StudyRunError,
    _append,
    _parse,
    _run_job,
    is_current,
    read_results,
    repair_results,
)
from personkit.study.parallel import run_parallel
from personkit.study.report import write_outputs
from personkit.study.spec import Study, StudyError, load_study
from personkit.synth import ensure_world

if TYPE_CHECKING:
    from personkit.study.ray_backend import RayOptions

#: Runs the jobs of a study (indices) and records them: (results path, progress, nproc) too.
Runner = Callable[[list[int], Path, bool, int], tuple[int, list[str]]]


def current_records(study: Study, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest record of each of ``study``'s jobs that still describes its run
    (:func:`is_current`): records of earlier configs, worlds or deleted runs are history, not
    results, and never reach the report."""
    newest: dict[tuple[str, int, str], dict[str, Any]] = {}
    jobs = {j.key: j for j in study.jobs}
    for r in records:
        job = jobs.get((r["row"], r["seed"], r["config_hash"]))
        if job is not None and is_current(r, job, study.out):
            newest[job.key] = r
    return [newest[j.key] for j in study.jobs if j.key in newest]


def run_study(spec: str | Path, out: str | Path, nproc: int = 1, report: str | Path | None = None,
              progress: bool = True, only: str | None = None, jobs: int = 1,
              overrides: Sequence[str] = (), ray: RayOptions | None = None) -> dict[str, Any]:
    """Validate ``spec``, run every job not yet in ``OUT/results.jsonl``, then write
    ``OUT/study.md`` and ``OUT/fig5.png`` (and the results section of ``report``).

    ``jobs`` > 1 runs up to that many jobs at a time, each in a child process, in the order
    :func:`job_dependencies` allows (see personkit/study/parallel.py); a failed job raises
    :class:`StudyRunError` after the others finished. One study at a time per ``out``: this
    process holds ``OUT/.study.lock`` until it returns. ``overrides`` apply to every training
    row, after its own. ``ray`` (``--backend ray``) runs every job as a Ray task instead
    (personkit/study/ray_backend.py): connected, and checked against the cluster's nodes,
    before anything runs."""
    if ray is not None and jobs != 1:
        raise StudyError(f"--backend ray with --jobs {jobs}: Ray places the jobs (give each "
                         f"its resources with --cpus-per-job/--gpus-per-job instead)")
    if jobs < 1:
        raise StudyError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 and nproc > 1:
        raise StudyError(f"--jobs {jobs} with --nproc {nproc}: each job would start {nproc} "
                         f"torchrun processes next to the others; use one of the two")
    study = load_study(spec, out, overrides)
    study.out.mkdir(parents=True, exist_ok=True)
    # per process: a process forked during the study (by Ray or a job) must not keep the
    # folder locked after this command returns
    with exclusive(study.out / ".study.lock", f"study folder {study.out}", per_process=True):
        if ray is None or not _pending(study, only):  # nothing to run: no Ray to start
            return _run(study, nproc, report, progress, only, jobs)
        from personkit.study.ray_backend import ray_session

        with ray_session(study, ray) as runner:
            return _run(study, nproc, report, progress, only, jobs, runner)


def _pending(study: Study, only: str | None) -> bool:
    """Whether a selected job of ``study`` has no current record (or ``only`` names no row:
    :func:`_run` says so)."""
    records, _ = _parse(study.out / "results.jsonl")
    wanted = None if only is None else set(only.split(","))
    if wanted is not None and wanted - {j.row for j in study.jobs}:
        return False
    return any(not any(is_current(r, j, study.out) for r in records) for j in study.jobs
               if wanted is None or j.row in wanted)


def _run(study: Study, nproc: int, report: str | Path | None, progress: bool,
         only: str | None, jobs: int, runner: Runner | None = None) -> dict[str, Any]:
    wanted = None if only is None else set(only.split(","))
    if wanted is not None and wanted - {j.row for j in study.jobs}:
        raise StudyError(f"--rows: no rows named {sorted(wanted - {j.row for j in study.jobs})}")
    for root, world in study.worlds().items():
        info = ensure_world(root, world["preset"], world["seed"], progress=progress,
                            bias=world.get("bias", 0.0))
        made = "cached" if info["cached"] else f"made in {info['seconds']:.0f} s"
        print(f"world: {world['preset']} seed {world['seed']} bias {world.get('bias', 0):g} "
              f"in {root} ({made})")
    results_path = study.out / "results.jsonl"
    repair_results(results_path)
    records = read_results(results_path)
    done = {j.key for j in study.jobs if any(is_current(r, j, study.out) for r in records)}
    ran = skipped = 0
    todo: list[int] = []  # --jobs N, Ray: the indices of the jobs to run, in spec order
    for n, job in enumerate(study.jobs, 1):
        head = f"[{n}/{len(study.jobs)}] {job.row} seed {job.seed}"
        if job.key in done or (wanted is not None and job.row not in wanted):
            skipped += job.key in done
            print(f"{head}: {'done, skipped' if job.key in done else 'not selected'}")
            continue
        if jobs > 1 or runner is not None:
            todo.append(n - 1)
            continue
        print(f"{head}: {job.kind} ...", flush=True)
        rec = _run_job(job, study.out, nproc, progress, job.world_id)
        _append(results_path, rec)
        print(f"{head}: finished in {rec['seconds']['total']:.0f} s", flush=True)
        ran += 1
    failed = []
    if todo and runner is not None:
        ran, failed = runner(todo, results_path, progress, nproc)
    elif todo:
        ran, failed = run_parallel(study, todo, jobs, results_path, progress)
    paths = write_outputs(study, current_records(study, read_results(results_path)), report)
    print(f"wrote {paths['study_md']}" + (f" and {paths['fig5']}" if paths["fig5"] else ""))
    if failed:
        raise StudyRunError("; ".join(failed) + " (the records of every finished job are kept: "
                            "fix the failure and rerun to resume)")
    return {"ran": ran, "skipped": skipped, **paths}
