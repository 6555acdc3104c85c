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

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from personkit.config import Config, ConfigError, config_to_dict, load_config, save_config
from personkit.runtime import resolve_device

SPEC_KEYS = {"name", "description", "world", "data_root", "defaults", "rows", "tables",
             "claims"}
ROW_KEYS = {"name", "label", "config", "overrides", "seeds", "init_from", "annotate",
            "score_truth", "grid", "fig5"}
DEFAULT_KEYS = {"config", "overrides", "seeds"}
WORLD_KEYS = {"preset", "seed", "dir"}
_RUN_REF = re.compile(r"\{run:([^}]+)\}")


class StudyError(ValueError):
    """A study spec that cannot run; the message names the spec and the row or key."""


#: Set by ``--jobs N`` in each child: how many jobs ran at a time (recorded with each run).
JOBS_VAR = "PERSONKIT_STUDY_JOBS"


class StudyRunError(RuntimeError):
    """Jobs of a parallel study (``--jobs N``) failed; the message names each and its log."""


@dataclass
class Job:
    """One (row, seed) of a study: a training run, or an ``annotate`` step."""

    row: str
    seed: int
    kind: str  # train | annotate
    label: str
    config: Config | None = None
    config_hash: str = ""
    command: list[str] = field(default_factory=list)  # annotate: personkit arguments
    score_truth: str | None = None
    fig5: dict[str, Any] | None = None
    refs: tuple[str, ...] = ()  # the rows that ``{run:ROW}`` in this row's spec names

    @property
    def key(self) -> tuple[str, int, str]:
        return self.row, self.seed, self.config_hash


@dataclass
class Study:
    """A validated spec: its jobs in run order and the report metadata."""

    spec_path: Path
    out: Path
    jobs: list[Job]
    tables: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    world: dict[str, Any] | None
    data_root: Path | None
    name: str = "study"


# ------------------------------------------------------------------------------ the spec


def _check_keys(obj: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise StudyError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; valid: {sorted(allowed)}")
    return obj


def _expand_grid(row: dict, where: str) -> list[tuple[str, dict[str, Any]]]:
    """``grid: {var: [values]}`` -> one (name, variables) per combination."""
    grid = row.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise StudyError(f"{where}: 'grid' must map names to non-empty lists")
    if not grid:
        return [(row["name"], {})]
    out = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        out.append((f"{row['name']}[{','.join(f'{k}={v}' for k, v in values.items())}]",
                    values))
    return out


def _fill(text: Any, values: dict[str, Any], where: str) -> Any:
    """Substitute ``{var}`` (grid variables, ``seed``, ``study``, ``data``) in a string;
    ``{run:ROW}`` is kept for :func:`_resolve_runs`."""
    if not isinstance(text, str):
        return text
    try:
        return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), text)
    except KeyError as e:
        raise StudyError(f"{where}: unknown placeholder {{{e.args[0]}}} in {text!r}; known: "
                         f"{sorted(values)} and {{run:ROW}}") from None


def run_dir(out: Path, row: str, seed: int) -> Path:
    """The run directory of a training row (``personkit eval`` reads it)."""
    safe = re.sub(r"[^\w.=,-]+", "_", row)
    return out / "runs" / safe / f"seed{seed}"


def _resolve_runs(text: Any, out: Path, seed: int, seeds_of: dict[str, dict[int, str]],
                  where: str) -> Any:
    """``{run:ROW}`` -> the run directory of an earlier training row (same seed if it has it,
    else its first)."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in seeds_of:
            raise StudyError(f"{where}: {{run:{name}}} names no earlier training row")
        return str(run_dir(out, name, _ref_seed(seeds_of[name], seed)))
    return _RUN_REF.sub(sub, text) if isinstance(text, str) else text


def _run_refs(obj: Any) -> set[str]:
    """The row names of every ``{run:ROW}`` in a raw spec value (strings, lists, mappings)."""
    if isinstance(obj, str):
        return set(_RUN_REF.findall(obj))
    if isinstance(obj, dict):
        obj = list(obj.values())
    return set().union(*map(_run_refs, obj)) if isinstance(obj, list) else set()


def _ref_seed(seeds: dict[int, str], seed: int) -> int:
    return seed if seed in seeds else next(iter(seeds))


def _chain_hash(own: str, texts: list[Any], seeds_of: dict[str, dict[int, str]],
                seed: int) -> str:
    """``own`` combined with the hashes of the runs that ``{run:ROW}`` in ``texts`` name, so
    that retraining an upstream row reruns the rows built on it."""
    refs = sorted({m for t in texts if isinstance(t, str) for m in _RUN_REF.findall(t)})
    if not refs:
        return own
    ups = [seeds_of[r][_ref_seed(seeds_of[r], seed)] for r in refs if r in seeds_of]
    return hashlib.sha256(json.dumps([own, *ups]).encode()).hexdigest()[:12]


def load_study(spec_path: str | Path, out: str | Path) -> Study:
    """Read and validate a spec: every row's config is loaded with its overrides."""
    spec_path, out = Path(spec_path), Path(out).resolve()
    if not spec_path.is_file():
        raise StudyError(f"study spec not found: {spec_path}")
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise StudyError(f"{spec_path}: invalid YAML: {e}") from e
    _check_keys(spec, SPEC_KEYS, str(spec_path))
    base = spec_path.resolve().parent
    world = spec.get("world")
    if world is not None:
        _check_keys(world, WORLD_KEYS, f"{spec_path}: world")
        world = {"preset": "tiny", "seed": 0, **world}
    data_root = (base / world["dir"] if world and world.get("dir") else out / "data") \
        if world else (base / spec["data_root"] if spec.get("data_root") else None)
    defaults = _check_keys(spec.get("defaults") or {}, DEFAULT_KEYS, f"{spec_path}: defaults")
    rows = spec.get("rows")
    if not isinstance(rows, list) or not rows:
        raise StudyError(f"{spec_path}: 'rows' must be a non-empty list")
    jobs, seeds_of = [], {}
    for i, row in enumerate(rows):
        where = f"{spec_path}: row {row.get('name', i) if isinstance(row, dict) else i}"
        _check_keys(row, ROW_KEYS, where)
        if not row.get("name"):
            raise StudyError(f"{where}: every row needs a 'name'")
        for name, values in _expand_grid(row, where):
            if name in seeds_of or any(j.row == name for j in jobs):
                raise StudyError(f"{where}: row name {name!r} is used twice")
            row_jobs = _row_jobs(row, name, values, defaults, base, out, data_root, seeds_of,
                                 f"{spec_path}: row {name}")
            refs = tuple(sorted(_run_refs([defaults.get("overrides", []), row])))
            for job in row_jobs:
                job.refs = refs
            jobs += row_jobs
            if row_jobs[0].kind == "train":
                seeds_of[name] = {j.seed: j.config_hash for j in row_jobs}
    names = {j.row for j in jobs}
    tables = _check_tables(spec.get("tables") or [], names, spec_path)
    claims = _check_claims(spec.get("claims") or [], names, spec_path)
    return Study(spec_path, out, jobs, tables, claims, world, data_root,
                 spec.get("name", spec_path.stem))


def _row_jobs(row: dict, name: str, values: dict, defaults: dict, base: Path, out: Path,
              data_root: Path | None, seeds_of: dict[str, dict[int, str]], where: str
              ) -> list[Job]:
    seeds = row.get("seeds", defaults.get("seeds", [0]))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise StudyError(f"{where}: 'seeds' must be a non-empty list of integers")
    label = str(row.get("label", name))
    fig5 = row.get("fig5")
    if fig5 is not None:
        _check_keys(fig5, {"curve", "fraction"}, f"{where}: fig5")
    jobs = []
    for seed in seeds:
        env = {**values, "seed": seed, "study": out, "data": data_root or "",
               "device": resolve_device("auto").type}

        def fill(x: Any, env: dict = env, seed: int = seed) -> Any:
            return _resolve_runs(_fill(x, env, where), out, seed, seeds_of, where)

        if "annotate" in row:
            job = _annotate_job(row, name, label, seed, fill, where)
            job.config_hash = _chain_hash(job.config_hash, list(row["annotate"]), seeds_of, seed)
            jobs.append(job)
            continue
        config = row.get("config", defaults.get("config"))
        if not config:
            raise StudyError(f"{where}: no 'config' (and none in defaults)")
        path = base / fill(config)
        if not path.is_file():
            raise StudyError(f"{where}: base config not found: {path}")
        overrides = [fill(o) for o in [*defaults.get("overrides", []),
                                       *row.get("overrides", [])]]
        if row.get("init_from"):
            overrides.append(f"model.init_from={fill(row['init_from'])}")
        overrides.append(f"train.seed={seed}")
        if data_root is not None:
            overrides.append(f"data.root={data_root}")
        try:
            cfg = load_config(path, overrides)
        except ConfigError as e:
            raise StudyError(f"{where}: {e}") from e
        f5 = None if fig5 is None else {"curve": str(fig5["curve"]),
                                         "fraction": float(fill(fig5["fraction"]))}
        chained = _chain_hash(config_hash(cfg), [*row.get("overrides", []), row.get("init_from")],
                              seeds_of, seed)
        jobs.append(Job(name, seed, "train", label, cfg, chained, fig5=f5))
    return jobs


def _annotate_job(row: dict, name: str, label: str, seed: int, fill: Any, where: str) -> Job:
    from personkit.cli import build_parser

    args = row["annotate"]
    if not isinstance(args, list) or not args:
        raise StudyError(f"{where}: 'annotate' must be the list of `personkit annotate` "
                         f"arguments")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    if "annotate" not in sub.choices:
        raise StudyError(f"{where}: needs the `personkit annotate` command, which this "
                         f"personkit does not have")
    command = ["annotate", *[str(fill(a)) for a in args]]
    truth = row.get("score_truth")
    digest = hashlib.sha256(json.dumps(command).encode()).hexdigest()[:12]
    return Job(name, seed, "annotate", label, command=command, config_hash=digest,
               score_truth=None if truth is None else str(fill(truth)))


def _check_tables(tables: Any, names: set[str], spec_path: Path) -> list[dict]:
    if not isinstance(tables, list):
        raise StudyError(f"{spec_path}: 'tables' must be a list")
    for t in tables:
        where = f"{spec_path}: table {t.get('title', '?') if isinstance(t, dict) else t}"
        _check_keys(t, {"title", "metrics", "rows", "note"}, where)
        if not isinstance(t.get("metrics"), dict) or not t["metrics"]:
            raise StudyError(f"{where}: 'metrics' must map column names to metric paths "
                             f"(e.g. mAP: market.reid.mAP)")
        for r in t.get("rows") or []:
            _check_keys(r, {"row", "label", "baseline"}, where)
            for key in ("row", "baseline"):
                if r.get(key) is not None and r[key] not in names:
                    raise StudyError(f"{where}: {key} {r[key]!r} is not a row of the study")
    return tables


def _check_claims(claims: Any, names: set[str], spec_path: Path) -> list[dict]:
    if not isinstance(claims, list):
        raise StudyError(f"{spec_path}: 'claims' must be a list")
    for c in claims:
        where = f"{spec_path}: claim {c.get('claim', '?') if isinstance(c, dict) else c}"
        _check_keys(c, {"claim", "row", "baseline", "metric", "expect", "note"}, where)
        for key in ("row", "baseline"):
            if c.get(key) not in names:
                raise StudyError(f"{where}: {key} {c.get(key)!r} is not a row of the study")
        if c.get("expect", "higher") not in ("higher", "lower") or not c.get("metric"):
            raise StudyError(f"{where}: needs 'metric' and 'expect' (higher | lower)")
    return claims


def config_hash(cfg: Config) -> str:
    """12 hex digits of the SHA-256 of the resolved config (what decides a run)."""
    text = json.dumps(config_to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------ running


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl`` (a torn last line of a killed study is ignored)."""
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i < len(lines) - 1:
                raise StudyError(f"{path}:{i + 1}: not JSON ({e})") from e
    return out


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that a killed study left half-written, so appends start clean."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[:data.rfind(b"\n") + 1])


def _append(path: Path, record: dict[str, Any]) -> None:
    from personkit.report import to_jsonable

    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(to_jsonable(record)) + "\n")
        f.flush()


def _prepare_run_dir(job: Job, out: Path) -> Path:
    """The job's run directory, emptied when it holds an earlier config of the row (or of a row
    it builds on); a training row's config and hash are written into it."""
    rdir = run_dir(out, job.row, job.seed)
    key = rdir / "study_hash.txt"
    if job.kind == "annotate":
        rdir.mkdir(parents=True, exist_ok=True)  # for --jobs N: its log and record
        return rdir
    if rdir.exists() and not (key.is_file() and key.read_text().strip() == job.config_hash):
        shutil.rmtree(rdir)  # an earlier config of this row (or of a row it builds on)
    rdir.mkdir(parents=True, exist_ok=True)
    save_config(job.config, rdir / "config.yaml")
    key.write_text(job.config_hash + "\n")
    return rdir


def _train(job: Job, out: Path, nproc: int, progress: bool) -> dict[str, Any]:
    """Train one row (in-process or under torchrun) and evaluate its weights."""
    from personkit.checkpoint import list_checkpoints
    from personkit.engine.evaluate import run_evaluation
    from personkit.engine.launch import train_run
    from personkit.models.loading import load_model_and_config

    rdir = _prepare_run_dir(job, out)
    trained = (rdir / "model.safetensors").is_file()
    # an interrupted run goes on: its time before the interruption is in no record
    interrupted = trained or bool(list_checkpoints(rdir / "checkpoints"))
    t0 = time.perf_counter()
    if not trained:  # (trained: killed before its evaluation was recorded)
        run = train_run(job.config, rdir, resume="auto", nproc=nproc, progress=progress)
        if run.exit_code:
            raise RuntimeError(f"row {job.row} seed {job.seed}: training failed (exit "
                               f"{run.exit_code})")
    t1 = time.perf_counter()
    device = resolve_device(job.config.train.device, "train.device")
    model, cfg = load_model_and_config(rdir, device)
    metrics = run_evaluation(model, cfg, device=device, progress=progress)
    return {"metrics": metrics, "run_dir": str(rdir), "resumed": interrupted,
            "seconds": {"train": t1 - t0, "eval": time.perf_counter() - t1}}


def _run_job(job: Job, out: Path, nproc: int, progress: bool) -> dict[str, Any]:
    """Run one job; its ``results.jsonl`` record (seconds, load average, how the machine was
    shared, metrics, run dir)."""
    import torch

    t0 = time.perf_counter()
    rec = _train(job, out, nproc, progress) if job.kind == "train" else _annotate(job)
    rec["seconds"]["total"] = time.perf_counter() - t0
    rec["loadavg"] = list(os.getloadavg())
    rec["sharing"] = {"jobs": int(os.environ.get(JOBS_VAR, "1")),
                      "threads": torch.get_num_threads()}
    return {"row": job.row, "seed": job.seed, "config_hash": job.config_hash, "kind": job.kind,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **rec}


def job_dependencies(jobs: list[Job]) -> list[set[int]]:
    """For each job, the indices of the earlier jobs it waits for when jobs run in parallel:
    every earlier ``annotate`` job (it may write a folder that rows read without naming it, e.g.
    ``{study}/auto_annotations``) and every job of each row its spec names with ``{run:ROW}``;
    an ``annotate`` job waits for every earlier job. Conservative: the spec order is the order
    a sequential study runs in."""
    deps = []
    for i, job in enumerate(jobs):
        deps.append(set(range(i)) if job.kind == "annotate" else
                    {j for j in range(i) if jobs[j].kind == "annotate" or jobs[j].row in job.refs})
    return deps


def _annotate(job: Job) -> dict[str, Any]:
    """Run ``personkit annotate`` in a subprocess, then score it against the hidden truth."""
    from personkit.metrics.annotations import score_annotations

    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "personkit", *job.command], check=False)
    if done.returncode:
        raise RuntimeError(f"row {job.row}: `personkit {' '.join(job.command)}` failed "
                           f"(exit {done.returncode})")
    record: dict[str, Any] = {"command": "personkit " + " ".join(job.command),
                              "seconds": {"annotate": time.perf_counter() - t0}}
    if job.score_truth:
        auto = job.command[job.command.index("--out") + 1] if "--out" in job.command else None
        if auto is None:
            raise StudyError(f"row {job.row}: score_truth needs an --out folder in annotate")
        record["metrics"] = {"annotations": score_annotations(auto, job.score_truth)}
    return record


def run_study(spec: str | Path, out: str | Path, nproc: int = 1, report: str | Path | None = None,
              progress: bool = True, only: str | None = None, jobs: int = 1) -> dict[str, Any]:
    """Validate ``spec``, run every job not yet in ``OUT/results.jsonl``, then write
    ``OUT/study.md`` and ``OUT/fig5.png`` (and the results section of ``report``).

    ``jobs`` > 1 runs up to that many jobs at a time, each in a child process, in the order
    :func:`job_dependencies` allows (see personkit/engine/study_jobs.py); a failed job raises
    :class:`StudyRunError` after the others finished."""
    from personkit.engine.study_report import write_outputs

    if jobs < 1:
        raise StudyError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 and nproc > 1:
        raise StudyError(f"--jobs {jobs} with --nproc {nproc}: each job would start {nproc} "
                         f"torchrun processes next to the others; use one of the two")
    study = load_study(spec, out)
    study.out.mkdir(parents=True, exist_ok=True)
    wanted = None if only is None else set(only.split(","))
    if wanted is not None and wanted - {j.row for j in study.jobs}:
        raise StudyError(f"--rows: no rows named {sorted(wanted - {j.row for j in study.jobs})}")
    if study.world is not None:
        from personkit.demo import ensure_world

        info = ensure_world(study.data_root, study.world["preset"], study.world["seed"])
        made = "cached" if info["cached"] else f"made in {info['seconds']:.0f} s"
        print(f"world: {study.world['preset']} seed {study.world['seed']} in {study.data_root}"
              f" ({made})")
    results_path = study.out / "results.jsonl"
    _drop_torn_line(results_path)
    done = {(r["row"], r["seed"], r["config_hash"]) for r in read_results(results_path)}
    ran = skipped = 0
    todo: list[int] = []  # --jobs N: the indices of the jobs to run, in spec order
    for n, job in enumerate(study.jobs, 1):
        head = f"[{n}/{len(study.jobs)}] {job.row} seed {job.seed}"
        if job.key in done or (wanted is not None and job.row not in wanted):
            skipped += job.key in done
            print(f"{head}: {'done, skipped' if job.key in done else 'not selected'}")
            continue
        if jobs > 1:
            todo.append(n - 1)
            continue
        print(f"{head}: {job.kind} ...", flush=True)
        rec = _run_job(job, study.out, nproc, progress)
        _append(results_path, rec)
        print(f"{head}: finished in {rec['seconds']['total']:.0f} s", flush=True)
        ran += 1
    failed = []
    if todo:
        from personkit.engine.study_jobs import run_parallel

        ran, failed = run_parallel(study, todo, jobs, results_path, progress)
    paths = write_outputs(study, read_results(results_path), report)
    print(f"wrote {paths['study_md']}" + (f" and {paths['fig5']}" if paths["fig5"] else ""))
    if failed:
        raise StudyRunError("; ".join(failed) + " (the records of every finished job are kept: "
                            "fix the failure and rerun to resume)")
    return {"ran": ran, "skipped": skipped, **paths}
