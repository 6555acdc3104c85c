"""``personkit study --backend ray``: each (row, seed) job of a study is a Ray task.

Ray places the tasks, on this machine (a local Ray instance that starts and stops with the
command) or on a running cluster (``--address``), each with its CPUs and GPUs (a row's
``resources:``, else ``--cpus-per-job``/``--gpus-per-job``). A job's dependencies
(:func:`~personkit.study.spec.job_dependencies`) are the ObjectRefs of the jobs it waits for,
passed as its arguments: Ray starts it only once they finished, and never when one failed.
The driver alone appends the records that the tasks return to ``results.jsonl``; they are
those of ``--backend local``. Run directories live under ``--out``, which every node must see
(checked at the start, :func:`check_shared_storage`). A task whose worker dies (SIGKILL, a lost
node) is retried by Ray up to ``--max-retries`` times and its training resumes from its newest
checkpoint; Ctrl-C cancels every task; rerunning the command skips the recorded jobs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personkit.extras import MissingExtraError, verbose
from personkit.report import to_jsonable
from personkit.runtime import cpu_count
from personkit.study.jobs import JOBS_VAR, _append, _prepare_run_dir, _run_job, job_dir
from personkit.study.parallel import LOG, _interrupt
from personkit.study.spec import Job, Study, StudyError, job_dependencies

INSTALL = "pip install 'personkit[cluster]'  (ray)"
#: Tests only: the row whose first attempt kills its own worker (SIGKILL) once the training
#: wrote its first checkpoint, as a lost node would (read in the Ray worker).
KILL_VAR = "PERSONKIT_STUDY_TEST_KILL"
CONNECT_TIMEOUT_S = 20.0  # --address: how long a cluster may take to answer
PROBE_TIMEOUT_S = 120.0  # the storage check: a worker's start on each node
LOCAL_OBJECT_STORE = 100 * 2**20  # a local instance's object store: records are small


@dataclass
class RayOptions:
    """How the study uses Ray: the cluster (None: a local instance), each job's default
    resources and how often a job whose worker died is retried."""

    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not self.cpus_per_job > 0:
            raise StudyError(f"--cpus-per-job must be > 0, got {self.cpus_per_job:g}")
        if not self.gpus_per_job >= 0:
            raise StudyError(f"--gpus-per-job must be >= 0, got {self.gpus_per_job:g}")
        if self.max_retries < 0:
            raise StudyError(f"--max-retries must be >= 0, got {self.max_retries}")


def import_ray() -> Any:
    """The ``ray`` module, or :class:`MissingExtraError` naming the extra that installs it."""
    try:
        import ray
    except ImportError as e:
        raise MissingExtraError(f"--backend ray needs Ray, which is not installed ({e}); "
                                f"install it with: {INSTALL}") from e
    return ray


def job_resources(job: Job, opts: RayOptions) -> tuple[float, float]:
    """(CPUs, GPUs) of one job: its row's ``resources:``, else the command line's."""
    return (float(job.resources.get("cpus", opts.cpus_per_job)),
            float(job.resources.get("gpus", opts.gpus_per_job)))


# ----------------------------------------------------------------------------- the session

@contextlib.contextmanager
def ray_session(study: Study, opts: RayOptions) -> Iterator[Callable[..., tuple[int, list[str]]]]:
    """Connect to Ray (or start a local instance), refuse jobs no node can hold and an
    ``--out`` that some node cannot see, then yield the runner of the study's jobs
    (:func:`run_ray`'s arguments after ``study``). A Ray this call started stops at the end;
    one the calling process had already connected to (``ray.init`` in a notebook) stays."""
    ray = import_ray()
    owned = _connect(ray, opts.address)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        check_resources(study.jobs, opts, nodes)
        check_shared_storage(ray, study.out, [n for n in nodes if _runs_jobs(n, study, opts)])

        def runner(todo: list[int], results_path: Path, progress: bool,
                   nproc: int) -> tuple[int, list[str]]:
            return run_ray(ray, study, todo, results_path, progress, nproc, opts, nodes)

        yield runner
    finally:
        if owned:
            ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """``ray.init``: a local instance on this machine's cores (no dashboard) or the cluster at
    ``address``; False when this process was already connected (nothing to stop later)."""
    if address is not None:
        check_address(address)
    if ray.is_initialized():
        print("Ray: using this process's connection", flush=True)
        return False
    quiet = {} if verbose() else {"logging_level": "ERROR"}
    if address is None:
        cores = cpu_count()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=True,
                 object_store_memory=LOCAL_OBJECT_STORE, **quiet)
        print(f"Ray: a local instance with {cores} CPUs (stops with this command)", flush=True)
        return True
    ray.init(address=address, log_to_driver=True, **quiet)
    res = ray.cluster_resources()
    print(f"Ray: connected to {address}: {len([n for n in ray.nodes() if n.get('Alive')])} "
          f"nodes, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs", flush=True)
    return True


PROBE = "import sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); print('ok')"
AUTH = ("the cluster wants Ray's authentication token: set RAY_AUTH_MODE=token, with the "
        "cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token "
        "(https://docs.ray.io/en/latest/ray-security/token-auth.html)")


def check_address(address: str) -> None:
    """Refuse, within seconds, an ``--address`` where no Ray cluster answers: a host:port that
    takes no connection, a cluster that refuses this machine's authentication token, or one
    that a test driver cannot join in CONNECT_TIMEOUT_S (``ray.init`` would retry for
    minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if sep and port.isdigit():
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise StudyError(f"--address {address}: no Ray cluster answers there "
                             f"({e.strerror or e}); start one with `ray start --head` or "
                             f"give its head's address") from None
    why = _probe(address)
    if why:
        raise StudyError(f"--address {address}: cannot join a Ray cluster there: {why}")


def _probe(address: str) -> str | None:
    """Join the cluster at ``address`` from a child process; None when it could, else why."""
    proc = subprocess.Popen([sys.executable, "-c", PROBE, address], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if any("Unauthenticated" in line for line in lines):
                return AUTH
            lost = [line for line in lines if "Failed to connect to GCS" in line]
            if lost:  # Ray would retry for minutes
                return lost[0][lost[0].index("Failed"):].strip()
            time.sleep(0.1)
        if proc.poll() is None:
            return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    reader.join(5)
    if proc.returncode == 0:
        return None
    if any("Unauthenticated" in line for line in lines):
        return AUTH
    return (lines[-1].strip() if lines else f"exit {proc.returncode}")


def _node_name(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerHostname', '?')} ({node.get('NodeManagerAddress', '?')})"


def _runs_jobs(node: dict[str, Any], study: Study, opts: RayOptions) -> bool:
    """Whether ``node`` can hold any job of ``study`` (a head node with no CPUs cannot)."""
    res = node.get("Resources", {})
    return any(res.get("CPU", 0) >= c and res.get("GPU", 0) >= g
               for c, g in (job_resources(j, opts) for j in study.jobs))


def check_resources(jobs: list[Job], opts: RayOptions, nodes: list[dict[str, Any]]) -> None:
    """Refuse, before anything runs, a job that needs more CPUs or GPUs than any node has,
    naming its row (Ray would wait for such a node forever)."""
    have = [(n.get("Resources", {}).get("CPU", 0), n.get("Resources", {}).get("GPU", 0))
            for n in nodes]
    for job in jobs:
        cpus, gpus = job_resources(job, opts)
        if not any(c >= cpus and g >= gpus for c, g in have):
            best = ", ".join(f"{_node_name(n)}: {c:g} CPUs, {g:g} GPUs"
                             for n, (c, g) in zip(nodes, have, strict=True)) or "no nodes"
            raise StudyError(f"row {job.row}: a job needs {cpus:g} CPUs and {gpus:g} GPUs, "
                             f"more than any node of the Ray cluster has ({best}); lower "
                             f"--cpus-per-job/--gpus-per-job or the row's resources")


# ------------------------------------------------------------------------- shared storage

def _storage_probe() -> Callable[[str, str, str], tuple[str | None, str | None]]:
    """The marker task's function, made in a closure so that Ray pickles it by value: a node
    runs it without importing personkit (and torch), in a fraction of a second."""

    def probe(folder: str, token: str, node_id: str) -> tuple[str | None, str | None]:
        """On one node: read the driver's marker, write this node's; (what it read, error)."""
        from pathlib import Path

        path, seen, error = Path(folder), None, None
        try:
            seen = (path / "driver").read_text(encoding="utf-8").strip()
        except OSError as e:
            error = f"cannot read {path / 'driver'} ({e.strerror or e})"
        try:
            (path / f"node-{node_id}").write_text(token + "\n", encoding="utf-8")
        except OSError as e:
            error = error or f"cannot write in {path} ({e.strerror or e})"
        return seen, error

    return probe


def storage_problems(folder: Path, token: str,
                     answers: dict[str, tuple[str, tuple[str | None, str | None] | str]]
                     ) -> list[str]:
    """What each node got wrong in the marker exchange: ``answers`` maps a node id to its
    name and its probe's answer (what it read, its error), or a string when it did not answer.
    A node sees the storage when it read the driver's token and the driver reads its own."""
    problems = []
    for node_id, (name, answer) in answers.items():
        if isinstance(answer, str):
            problems.append(f"{name}: {answer}")
            continue
        seen, error = answer
        if error:
            problems.append(f"{name}: {error}")
        elif seen != token:
            problems.append(f"{name}: read another marker in {folder} (another folder there?)")
        else:
            mine = folder / f"node-{node_id}"
            if not mine.is_file() or mine.read_text(encoding="utf-8").strip() != token:
                problems.append(f"{name}: wrote a marker the driver cannot see ({mine})")
    return problems


def check_shared_storage(ray: Any, out: Path, nodes: list[dict[str, Any]]) -> None:
    """Each node (one small task pinned to it) reads a marker the driver wrote under ``out``
    and writes its own, which the driver reads back; a clear error names the nodes that
    cannot (run directories and checkpoints must be where every node finds them)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder = out / ".ray-storage-check"
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    (folder / "driver").write_text(token + "\n", encoding="utf-8")
    probe = ray.remote(_storage_probe())
    refs = {n["NodeID"]: probe.options(
        num_cpus=0, max_retries=0, name="personkit study storage check",
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
    ).remote(str(folder), token, n["NodeID"]) for n in nodes}
    names = {n["NodeID"]: _node_name(n) for n in nodes}
    answers: dict[str, Any] = {}
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    for node_id, ref in refs.items():
        try:
            answers[node_id] = (names[node_id],
                                ray.get(ref, timeout=max(1.0, deadline - time.monotonic())))
        except Exception as e:  # noqa: BLE001 - a timeout or a lost node: named below
            answers[node_id] = (names[node_id], f"no answer ({type(e).__name__})")
    try:
        problems = storage_problems(folder, token, answers)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if problems:
        raise StudyError(f"--out {out} is not storage every node of the Ray cluster sees (run "
                         f"directories and checkpoints must be): " + "; ".join(problems)
                         + ". Use a shared file system (NFS, a cluster file system) mounted "
                         "at the same path on every node")


# ---------------------------------------------------------------------------- one job (task)

def _job_task(job: Job, out: str, nproc: int, progress: bool, index: int, events: Any,
              node_cpus: dict[str, float], *upstream: Any) -> dict[str, Any]:
    """A Ray task: one job in this worker, its output in ``study.log`` of its run directory;
    returns its record and the node it ran on. ``upstream`` (the records of the jobs it waits
    for) is there so that Ray starts it after them."""
    import ray
    import torch

    ctx = ray.get_runtime_context()
    node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    rdir = _prepare_run_dir(job, Path(out))
    # fire and forget: a task blocked in ray.get (as Queue.put is) lends its CPUs to the next
    # task, and a node would train one job more than it has CPUs for
    events.actor.put_nowait.remote((index, node, os.getpid()))
    cpus = float(ctx.get_assigned_resources().get("CPU", 1.0))
    threads = max(1, int(cpus))
    env = {JOBS_VAR: str(max(1, int(node_cpus.get(ctx.get_node_id(), cpus) // cpus))),
           "TQDM_MININTERVAL": "10", "OMP_NUM_THREADS": str(threads)}
    if not ray.get_gpu_ids():  # Ray leaves a job that asked for no GPU every GPU: hide them
        env["CUDA_VISIBLE_DEVICES"] = ""
    header = (f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} personkit study --backend ray: "
              f"{job.row} seed {job.seed} on {node}, PID {os.getpid()}, {cpus:g} CPUs, GPUs "
              f"{ray.get_gpu_ids() or 'none'}\n")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _environment(env), _output_to(rdir / LOG, header), _kill_hook(job, rdir):
            record = _run_job(job, Path(out), nproc, progress, job.world_id)
            print(f"{job.row} seed {job.seed}: finished in {record['seconds']['total']:.0f} s",
                  flush=True)
    finally:
        torch.set_num_threads(before)
    return {"record": to_jsonable(record), "node": node}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block (a Ray worker runs one task after another)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _output_to(path: Path, header: str) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so subprocesses too) append
    to ``path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "a", encoding="utf-8") as log:
        log.write(header)
        log.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


@contextlib.contextmanager
def _kill_hook(job: Job, rdir: Path) -> Iterator[None]:
    """Tests (:data:`KILL_VAR`): the first attempt of that row SIGKILLs its own worker right
    after its training wrote its first checkpoint, as a lost node would; later attempts (a
    marker in the run directory says one was killed) and other rows run normally."""
    marker = rdir / "killed-by-test"
    if os.environ.get(KILL_VAR) != job.row or marker.exists():
        yield
        return
    from personkit.engine import trainer

    save = trainer.save_checkpoint

    def save_then_die(*args: Any, **kwargs: Any) -> Any:
        path = save(*args, **kwargs)
        marker.write_text(f"{Path(path).name}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    trainer.save_checkpoint = save_then_die
    try:
        yield
    finally:
        trainer.save_checkpoint = save


# ------------------------------------------------------------------------------- the driver

def run_ray(ray: Any, study: Study, todo: list[int], results_path: Path, progress: bool,
            nproc: int, opts: RayOptions, nodes: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Submit the jobs ``todo`` (indices into ``study.jobs``) as Ray tasks, each with the
    ObjectRefs of the jobs it waits for, and record each as it finishes; returns the number
    that finished and one message per failed or not started job. Ctrl-C (or SIGTERM)
    cancels every task (their jobs stay unrecorded; a rerun resumes them)."""
    from ray.util.queue import Queue

    events = Queue(actor_options={"num_cpus": 0})
    run = _RayRun(ray, study, todo, results_path, events)
    node_cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 0) for n in nodes}
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        run.submit(opts, progress, nproc, node_cpus)
        run.loop()
    except KeyboardInterrupt:
        run.cancel()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)
        with contextlib.suppress(Exception):
            ray.kill(events.actor)
    return run.ran, run.messages


class _RayRun:
    """The driver's side: the tasks' refs, their start events, their records."""

    def __init__(self, ray: Any, study: Study, todo: list[int], results_path: Path,
                 events: Any) -> None:
        self.ray, self.study, self.todo, self.results_path = ray, study, todo, results_path
        self.events = events
        wanted = set(todo)
        deps = job_dependencies(study.jobs)
        self.ups = {i: sorted(deps[i] & wanted) for i in todo}  # recorded jobs count as done
        self.refs: dict[int, Any] = {}
        self.starts: dict[int, list[str]] = {}  # each attempt's node
        self.settled: set[int] = set()
        self.failed: set[int] = set()
        self.ran = 0
        self.messages: list[str] = []

    def head(self, i: int) -> str:
        job = self.study.jobs[i]
        return f"[{i + 1}/{len(self.study.jobs)}] {job.row} seed {job.seed}"

    def submit(self, opts: RayOptions, progress: bool, nproc: int,
               node_cpus: dict[str, float]) -> None:
        """Every job as a task, in spec order (a job's dependencies are submitted before it)."""
        task = self.ray.remote(_job_task)
        for i in self.todo:
            job = self.study.jobs[i]
            cpus, gpus = job_resources(job, opts)
            self.refs[i] = task.options(
                num_cpus=cpus, num_gpus=gpus, max_retries=opts.max_retries,
                retry_exceptions=False, name=f"personkit study {job.row} seed {job.seed}",
            ).remote(job, str(self.study.out), nproc, progress, i, self.events, node_cpus,
                     *(self.refs[d] for d in self.ups[i]))
        have = self.ray.cluster_resources().get("GPU", 0)
        if have and not any(job_resources(self.study.jobs[i], opts)[1] for i in self.todo):
            print(f"note: the cluster has {have:g} GPUs, but no job asks for one "
                  f"(--gpus-per-job, a row's resources): they train on CPUs", flush=True)
        print(f"submitted {len(self.todo)} job{'s' * (len(self.todo) > 1)} to Ray "
              f"({opts.cpus_per_job:g} CPUs, {opts.gpus_per_job:g} GPUs each unless a row says "
              f"otherwise; up to {opts.max_retries} retries of a job whose worker dies)",
              flush=True)

    def loop(self) -> None:
        index = {ref: i for i, ref in self.refs.items()}
        while len(self.settled) < len(self.todo):
            pending = [self.refs[i] for i in self.todo if i not in self.settled]
            ready, _ = self.ray.wait(pending, num_returns=1, timeout=0.5, fetch_local=False)
            self.report_starts()
            for ref in ready:
                self.settle(index[ref])
        self.report_starts()

    def report_starts(self) -> None:
        """One line per job that started (or started again after its worker was lost)."""
        while not self.events.empty():
            i, node, pid = self.events.get_nowait()
            self.starts.setdefault(i, []).append(node)
            job, n = self.study.jobs[i], len(self.starts[i])
            again = "" if n == 1 else f", attempt {n}: its worker was lost, resuming"
            log = job_dir(job, self.study.out) / LOG
            print(f"{self.head(i)}: {job.kind} ... (node {node}, PID {pid}{again}; log: {log})",
                  flush=True)

    def settle(self, i: int) -> None:
        """Record job ``i`` (its ref is ready), or say why it has no record."""
        if i in self.settled:
            return
        for d in self.ups[i]:  # ready too (i ran after them, or failed because one failed)
            self.settle(d)
        self.settled.add(i)
        try:
            result = self.ray.get(self.refs[i])
        except Exception as e:  # noqa: BLE001 - a task's failure, reported by row below
            self.failed.add(i)
            self.report_failure(i, e)
            return
        _append(self.results_path, result["record"])
        self.ran += 1
        print(f"{self.head(i)}: finished in {result['record']['seconds']['total']:.0f} s (node "
              f"{result['node']})", flush=True)

    def report_failure(self, i: int, error: Exception) -> None:
        job = self.study.jobs[i]
        up = next((d for d in self.ups[i] if d in self.failed), None)
        if up is not None and i not in self.starts:
            u = self.study.jobs[up]
            print(f"{self.head(i)}: not started (waits for {u.row} seed {u.seed}, failed)",
                  flush=True)
            self.messages.append(f"row {job.row} seed {job.seed} not started")
            return
        log = job_dir(job, self.study.out) / LOG
        why = _why(error, len(self.starts.get(i, [])))
        print(f"{self.head(i)}: FAILED ({why}); log: {log}", flush=True)
        self.messages.append(f"row {job.row} seed {job.seed} failed ({why}); its log: {log}")

    def cancel(self) -> None:
        """Ctrl-C: cancel every unfinished task (force: its worker is killed)."""
        self.report_starts()
        for i in self.todo:
            if i not in self.settled:
                with contextlib.suppress(Exception):
                    self.ray.cancel(self.refs[i], force=True)
                if i in self.starts:
                    print(f"{self.head(i)}: stopped (rerun to resume)", flush=True)


def _why(error: Exception, attempts: int) -> str:
    """A task's failure in one line: the job's own exception, or its lost worker."""
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(cause, type):
        text = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {text[-1] if text else ''}".rstrip(": ")
    name = type(error).__name__
    if name in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
        return f"{name}: its worker died in each of {attempts} attempts"
    text = str(error).strip().splitlines()
    return f"{name}: {text[0] if text else ''}".rstrip(": ")
