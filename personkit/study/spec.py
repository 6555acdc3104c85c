"""A study spec (docs/study.md): rows of trainings and ``annotate`` steps, each with its seeds,
expanded into jobs in run order and validated before anything runs: every row's config is
loaded with its overrides, so a bad override stops the study, naming the spec and the row.

A job's key is (row, seed, config hash); the hash covers the resolved config and, through
``{run:ROW}``, the hashes of the runs a row builds on (:func:`config_hash`, ``_chain_hash``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from personkit.config import Config, ConfigError, config_to_dict, load_config
from personkit.runtime import resolve_device

SPEC_KEYS = {"name", "description", "world", "data_root", "defaults", "rows", "tables",
             "claims", "dose"}
ROW_KEYS = {"name", "label", "config", "overrides", "seeds", "init_from", "annotate",
            "score_truth", "grid", "fig5", "world", "resources"}
RESOURCE_KEYS = {"cpus", "gpus"}  # a row's Ray resources (--backend ray), not in its hash
DEFAULT_KEYS = {"config", "overrides", "seeds"}
WORLD_KEYS = {"preset", "seed", "dir", "bias"}
ROW_WORLD_KEYS = {"preset", "seed", "bias"}  # a row's own world: these differ from the spec's
_RUN_REF = re.compile(r"\{run:([^}]+)\}")


class StudyError(ValueError):
    """A study spec that cannot run; the message names the spec and the row or key."""


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
    grid: dict[str, Any] = field(default_factory=dict)  # the row's grid values
    world: dict[str, Any] | None = None  # the synthetic world it trains on (None: real data)
    data_root: Path | None = None
    world_id: dict[str, Any] = field(default_factory=dict)  # what its hash binds
    resources: dict[str, float] = field(default_factory=dict)  # --backend ray: cpus, gpus

    @property
    def key(self) -> tuple[str, int, str]:
        return self.row, self.seed, self.config_hash

    @property
    def base(self) -> str:
        """The spec row's name without its grid values (``multi_bn[bias=1]`` -> ``multi_bn``)."""
        return self.row.split("[")[0]


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
    dose: list[dict[str, Any]] = field(default_factory=list)  # dose-response figures

    def worlds(self) -> dict[Path, dict[str, Any]]:
        """Every synthetic world the study needs, by data root (the spec's first)."""
        out = {self.data_root: self.world} if self.world is not None else {}
        for job in self.jobs:
            if job.world is not None:
                out.setdefault(job.data_root, job.world)
        return out


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


def run_dir(out: Path, row: str, seed: int, config_hash: str) -> Path:
    """The run directory of one job (``personkit eval`` reads a training row's): one per
    config hash, so a record always describes the run in its folder and a changed row never
    overwrites an earlier one."""
    safe = re.sub(r"[^\w.=,-]+", "_", row)
    return out / "runs" / safe / f"seed{seed}-{config_hash}"


def _resolve_runs(text: Any, out: Path, seed: int, seeds_of: dict[str, dict[int, str]],
                  where: str) -> Any:
    """``{run:ROW}`` -> the run directory of an earlier training row (same seed if it has it,
    else its first)."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in seeds_of:
            raise StudyError(f"{where}: {{run:{name}}} names no earlier training row")
        ref = _ref_seed(seeds_of[name], seed)
        return str(run_dir(out, name, ref, seeds_of[name][ref]))
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


def world_identity(world: dict[str, Any] | None, data_root: Path | None) -> dict[str, Any]:
    """What the data of a study is: the synthetic world's preset, seed and generator version
    (and preset sizes), or the data root's resolved path. Part of every job's hash, so another
    world reruns every row instead of reusing records trained on the old one."""
    if world is not None:
        from personkit.synth import get_preset, world_key

        return {"preset": world["preset"], "seed": world["seed"],
                **world_key(get_preset(world["preset"]), world.get("bias", 0.0))}
    return {"data_root": str(data_root.resolve()) if data_root else None}


def _bound(own: str, world_id: dict[str, Any]) -> str:
    """A job's own hash bound to the data it runs on (:func:`world_identity`)."""
    return hashlib.sha256(json.dumps([own, world_id], sort_keys=True).encode()).hexdigest()[:12]


def load_study(spec_path: str | Path, out: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Read and validate a spec: every row's config is loaded with its overrides (and then
    ``overrides``, the command line's, which apply to every training row)."""
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
        world = _check_world({"preset": "tiny", "seed": 0, **world}, f"{spec_path}: world")
    data_root = (base / world["dir"] if world and world.get("dir") else out / "data") \
        if world else (base / spec["data_root"] if spec.get("data_root") else None)
    try:
        world_id = world_identity(world, data_root)
    except ValueError as e:  # an unknown preset
        raise StudyError(f"{spec_path}: world: {e}") from None
    defaults = _check_keys(spec.get("defaults") or {}, DEFAULT_KEYS, f"{spec_path}: defaults")
    _strings(defaults, "overrides", f"{spec_path}: defaults")
    defaults = {**defaults, "extra": list(overrides)}
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
            row_world = _row_world(row, values, world, data_root, world_id,
                                   f"{spec_path}: row {name}")
            row_jobs = _row_jobs(row, name, values, defaults, base, out, row_world, seeds_of,
                                 f"{spec_path}: row {name}")
            refs = tuple(sorted(_run_refs([defaults.get("overrides", []), row])))
            resources = _resources(row.get("resources"), f"{spec_path}: row {name}")
            for job in row_jobs:
                job.refs, job.grid, job.resources = refs, values, resources
                job.world, job.data_root, job.world_id = row_world
            jobs += row_jobs
            if row_jobs[0].kind == "train":
                seeds_of[name] = {j.seed: j.config_hash for j in row_jobs}
    names = {j.row for j in jobs}
    tables = _check_tables(spec.get("tables") or [], names, spec_path)
    claims = _check_claims(spec.get("claims") or [], names, spec_path)
    dose = _check_dose(spec.get("dose") or [], jobs, spec_path)
    return Study(spec_path, out, jobs, tables, claims, world, data_root,
                 spec.get("name", spec_path.stem), dose)


def _resources(value: Any, where: str) -> dict[str, float]:
    """A row's ``resources: {cpus: N, gpus: N}`` (what one of its jobs needs from a Ray node;
    not part of its hash: they decide where it runs, not what it computes)."""
    if value is None:
        return {}
    _check_keys(value, RESOURCE_KEYS, f"{where}: resources")
    out = {k: _number(v, f"{where}: resources.{k}") for k, v in value.items()}
    if out.get("cpus", 1) <= 0 or out.get("gpus", 0) < 0:
        raise StudyError(f"{where}: resources need cpus > 0 and gpus >= 0, got {value}")
    return out


def _check_world(world: dict[str, Any], where: str) -> dict[str, Any]:
    """A world's preset (a name), seed (an integer) and bias (a number in [0, 1])."""
    try:
        seed = int(world["seed"])
        bias = float(world.get("bias", 0.0))
    except (TypeError, ValueError):
        raise StudyError(f"{where}: seed must be an integer and bias a number, got "
                         f"{world.get('seed')!r} and {world.get('bias')!r}") from None
    if not 0.0 <= bias <= 1.0:
        raise StudyError(f"{where}: bias must be in [0, 1], got {bias}")
    return {**{k: v for k, v in world.items() if k != "bias"}, "preset": str(world["preset"]),
            "seed": seed} | ({"bias": bias} if bias else {})


RowWorld = tuple[dict[str, Any] | None, Path | None, dict[str, Any]]


def _row_world(row: dict, values: dict, world: dict[str, Any] | None, data_root: Path | None,
               world_id: dict[str, Any], where: str) -> RowWorld:
    """The world a row trains on: the spec's, or the spec's with the row's ``world:``
    fields (e.g. ``{bias: "{bias}"}`` over a grid), synthesised next to the spec's folder."""
    own = row.get("world")
    if own is None:
        return world, data_root, world_id
    if world is None:
        raise StudyError(f"{where}: a row's 'world' needs the spec's synthetic 'world:'")
    _check_keys(own, ROW_WORLD_KEYS, f"{where}: world")
    filled = {k: _fill(v, values, where) for k, v in own.items()}
    new = _check_world({k: v for k, v in world.items() if k != "bias"} | filled,
                       f"{where}: world")
    if new == world:
        return world, data_root, world_id
    tag = "-".join(f"{k}{new.get(k, 0.0):g}" if k != "preset" else new[k]
                   for k in ("preset", "seed", "bias") if new.get(k) != world.get(k))
    root = data_root.parent / f"{data_root.name}-{tag}"
    try:
        return new, root, world_identity(new, root)
    except ValueError as e:  # an unknown preset
        raise StudyError(f"{where}: world: {e}") from None


def _check_dose(dose: Any, jobs: list[Job], spec_path: Path) -> list[dict]:
    """``dose:`` figures: a metric's difference row - baseline against a grid variable."""
    if not isinstance(dose, list):
        raise StudyError(f"{spec_path}: 'dose' must be a list of figures")
    bases = {j.base for j in jobs}
    for d in dose:
        where = f"{spec_path}: dose {d.get('title', '?') if isinstance(d, dict) else d}"
        _check_keys(d, {"title", "metric", "x", "curves"}, where)
        if not d.get("metric") or not d.get("x") or not isinstance(d.get("curves"), list):
            raise StudyError(f"{where}: needs 'metric', 'x' (a grid variable) and 'curves'")
        for c in d["curves"]:
            _check_keys(c, {"label", "row", "baseline"}, where)
            for key in ("row", "baseline"):
                if c.get(key) not in bases:
                    raise StudyError(f"{where}: {key} {c.get(key)!r} is not a row of the study")
    return dose


def _row_jobs(row: dict, name: str, values: dict, defaults: dict, base: Path, out: Path,
              row_world: RowWorld, seeds_of: dict[str, dict[int, str]], where: str
              ) -> list[Job]:
    _, data_root, world_id = row_world
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
            job.config_hash = _chain_hash(_bound(job.config_hash, world_id),
                                          list(row["annotate"]), seeds_of, seed)
            jobs.append(job)
            continue
        config = row.get("config", defaults.get("config"))
        if not config:
            raise StudyError(f"{where}: no 'config' (and none in defaults)")
        path = base / fill(config)
        if not path.is_file():
            raise StudyError(f"{where}: base config not found: {path}")
        overrides = [fill(o) for o in [*_strings(defaults, "overrides", where),
                                       *_strings(row, "overrides", where), *defaults["extra"]]]
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
                                         "fraction": _number(fill(fig5["fraction"]),
                                                             f"{where}: fig5.fraction")}
        chained = _chain_hash(_bound(config_hash(cfg), world_id),
                              [*row.get("overrides", []), row.get("init_from")], seeds_of, seed)
        jobs.append(Job(name, seed, "train", label, cfg, chained, fig5=f5))
    return jobs


def _strings(obj: dict, key: str, where: str) -> list[str]:
    """``obj[key]``, which must be a list of strings (e.g. ``overrides``)."""
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StudyError(f"{where}: {key!r} must be a list of strings such as "
                         f"['train.lr=1e-3'], got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StudyError(f"{where} must be a number, got {value!r}") from None


def _annotate_job(row: dict, name: str, label: str, seed: int, fill: Any, where: str) -> Job:
    args = row["annotate"]
    if not isinstance(args, list) or not args:
        raise StudyError(f"{where}: 'annotate' must be the list of `personkit annotate` "
                         f"arguments")
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
