"""Run many independent tasks: in this process (inline), on this machine's processes (``local``) or on Ray.

Per-user studies, sweeps, repeated audits and sharded exact enumeration are all
many independent tasks. A caller hands :meth:`Executor.map` a task function and
plain data; every result comes back to the driver, in its thread, as it
arrives (``on_result``), so the driver stays the only writer of its DuckDB file
and a killed driver loses at most the tasks in flight.

* **Plain tasks, no shipped code.** A task function is a module-level function
  of an importable module, sent by name (``module:qualname``) and imported by
  the worker; closures and lambdas are refused. Arguments and results are plain
  data (numbers, strings, lists, dicts) and :class:`Blob` handles.
* **Data by content hash.** Models and corpora are shared once with
  :meth:`Executor.share` / :meth:`Executor.share_file` and travel as a
  :class:`Blob` (sha256, size, and a shared path or a Ray object); workers
  check the hash and keep what they built from it (a loaded model) per process.
* **Faults.** A worker process (or node) that dies mid-task has the task
  retried, at most ``retries`` more times, then reported failed; the rest go
  on. A task that raises a user error (:class:`~ssviz.errors.SsvizError`: bad
  corpus, bad template) fails at once with its message: retrying cannot help.
* **Resources.** Each task declares its CPUs; torch in that task uses as many
  threads.

:class:`InlineExecutor` runs the tasks in this process, one after another, under the
same contract: callers have one code path whether or not the user chose an executor.
``local`` (the CLI's default executor) needs no Ray: ``concurrent.futures`` process pools
started with ``spawn``, one process per slot, so a dead process is tied to its
one task and only that task is retried. ``ray`` imports Ray only when chosen:
``address`` ``HOST:PORT`` or ``auto`` joins a running cluster, none starts a
local instance.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ssviz.errors import MissingFileError, SettingsError, SsvizError
from ssviz.messages import clip, hide_credentials
from ssviz.progress import stop_requested

EXECUTORS = ("local", "ray")
DEFAULT_RETRIES = 2
POLL_SECONDS = 0.2
MESSAGE_LIMIT = 300

OnResult = Callable[[int, Any], None]


# --- data shared by content hash ---------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    """Bytes every worker can get (a checkpoint, a corpus), named by their sha256."""

    digest: str
    size: int
    path: str | None = None  # local: a file on a path every worker reads
    ref: Any = None           # ray: the object in Ray's object store
    data: bytes | None = field(default=None, repr=False, compare=False)  # inline: the bytes themselves
    obj: Any = field(default=None, repr=False, compare=False)  # inline: a model handed over as it is


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_cache: OrderedDict = OrderedDict()
_CACHE_ITEMS = 4
_cache_lock = threading.Lock()


def fetch(blob: Blob) -> bytes:
    """The bytes of ``blob`` in a worker, checked against its hash (a changed file is an error, not a silent mix)."""
    if blob.data is not None:
        data = blob.data
    elif blob.ref is not None:
        import ray
        data = ray.get(blob.ref)
    else:
        try:
            data = Path(blob.path).read_bytes()
        except OSError as e:
            raise MissingFileError(f"shared file {blob.path} cannot be read by a worker: {e.strerror or e}") from None
    if len(data) != blob.size or digest_of(data) != blob.digest:
        raise SsvizError(f"shared file {clip(str(blob.path or 'object'), 80)} changed while the run used it "
                         f"(its content hash differs): start the run again")
    return data


def shared_model(blob: Blob, name: str, dtype: str = "auto"):
    """The model :meth:`Executor.share_model` shared, loaded once per process (errors name it ``name``) on
    the device this worker was given (``auto``: the GPU Ray or the machine gives it), in ``dtype`` (the
    sharing process's, so every worker computes in the same precision)."""
    if blob.obj is not None:
        return blob.obj

    def load(data: bytes):
        import io

        from ssviz.models import load_model
        named = io.BytesIO(data)
        named.name = name
        return load_model(named, dtype=dtype)
    return cached(blob, f"model-{dtype}", load)


def cached(blob: Blob, kind: str, build: Callable[[bytes], Any]) -> Any:
    """``build(bytes)`` once per process per content hash (e.g. a model loaded from a checkpoint)."""
    key = (kind, blob.digest)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = build(fetch(blob))
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_ITEMS:
            _cache.popitem(last=False)
    return value


# --- what a task is ------------------------------------------------------------------------
def task_name(fn: Callable | str) -> str:
    """``module:qualname`` of a module-level function: what travels instead of code."""
    if isinstance(fn, str):
        name = fn
    else:
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        if not module or not qualname or "<" in qualname or "." in qualname or module == "__main__":
            raise SettingsError(f"a task must be a module-level function of an importable module, got "
                                f"{clip(repr(fn), 80)}")
        name = f"{module}:{qualname}"
    resolve(name)  # fails here, in the driver, rather than in every worker
    return name


def resolve(name: str) -> Callable:
    module, _, qualname = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError, ValueError):
        raise SettingsError(f"task function {clip(name, 100)} cannot be imported") from None
    if not callable(fn):
        raise SettingsError(f"task {clip(name, 100)} is not a function")
    return fn


_stop_event = None  # set in local worker processes: the driver's cooperative stop flag
_parent = None


class _InlineRuns(threading.local):
    """Per thread: the stop flags of the inline runs in progress, innermost last (a task may run its own)."""

    def __init__(self):
        self.stops: list = []


_inline = _InlineRuns()


def _stopped() -> bool:
    # a driver that died (killed, crashed) cannot set the event: its workers notice the orphaning instead
    return _stop_event.is_set() or os.getppid() != _parent


def stop_flag():
    """The stop flag of the run this task belongs to (pass it as ``stop=`` to long loops); None outside one.

    In an inline run it is the caller's own flag (None when the caller gave none), so a task stops
    exactly as the same work called directly would.
    """
    if _inline.stops:
        return _inline.stops[-1]
    return _stopped if _stop_event is not None else None


def _init_worker(threads: int, stop_event) -> None:
    global _stop_event, _parent
    _stop_event, _parent = stop_event, os.getppid()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch
    torch.set_num_threads(threads)


def _preload(name: str) -> None:
    resolve(name)


def run_task(name: str, task: Any, cpus: int) -> tuple:
    """Worker side of the process and Ray executors: the task's :func:`outcome` with ``cpus`` torch threads."""
    import torch
    if torch.get_num_threads() != cpus:
        torch.set_num_threads(cpus)
    return outcome(resolve(name), task, "a worker")


def outcome(fn: Callable, task: Any, where: str) -> tuple:
    """``("ok", fn(task))`` or ``("error", class, message, user)``; ``where`` names the place for running out of memory.

    Errors come back as plain data (never a pickled exception or traceback), so
    a user error keeps its one-line message whatever the backend. Interrupts
    (Ctrl-C) are not caught: they end the run.
    """
    try:
        return ("ok", fn(task))
    except SsvizError as e:  # a StoppedError too: the run tells its own stop from any other
        return ("error", type(e).__name__, clip(str(e), MESSAGE_LIMIT), True)
    except MemoryError:
        return ("error", "MemoryError", f"out of memory in {where}", False)
    except Exception as e:  # a bug: reported with its type, the run goes on
        return ("error", type(e).__name__, clip(str(e), MESSAGE_LIMIT), False)


# --- what a run reports ------------------------------------------------------------------
@dataclass
class TaskFailure:
    index: int
    error: str      # class name of the error
    message: str
    user: bool      # the input's fault (an SsvizError): failed at once, not retried
    attempts: int

    def __str__(self) -> str:
        return f"task {self.index}: {self.message}" if self.user else f"task {self.index}: {self.error}: {self.message}"

    def exception(self) -> SsvizError:
        """The failure as the error class it was raised with (ssviz's own classes), for one-line reporting."""
        from ssviz import errors
        cls = getattr(errors, self.error, None)
        if not (isinstance(cls, type) and issubclass(cls, SsvizError)):
            cls = SsvizError
        return cls(self.message if self.user else f"a task failed: {self.error}: {self.message}")


@dataclass
class MapReport:
    total: int
    done: int = 0
    failed: list[TaskFailure] = field(default_factory=list)
    retried: int = 0
    stopped: bool = False
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.done == self.total and not self.failed


class _Run:
    """Bookkeeping shared by every backend: attempts, callbacks, stop."""

    def __init__(self, tasks: list, retries: int, on_result, on_error, progress, stop, fail_fast: bool):
        self.tasks, self.retries = tasks, retries
        self.on_result, self.on_error, self.progress = on_result, on_error, progress
        self.stop, self.fail_fast = stop, fail_fast
        self.attempts = [0] * len(tasks)
        self.report = MapReport(len(tasks))
        self.pending = deque(range(len(tasks)))
        self.started = time.monotonic()

    def should_stop(self) -> bool:
        if stop_requested(self.stop):
            self.report.stopped = True
        return self.report.stopped

    def finished(self, i: int, out: tuple) -> None:
        if out[0] == "ok":
            self.report.done += 1
            if self.on_result:
                self.on_result(i, out[1])
        elif out[1] == "StoppedError" and self.report.stopped:
            pass  # this run's own stop reached the task
        else:
            self.fail(TaskFailure(i, out[1], out[2], bool(out[3]), self.attempts[i]))
        if self.progress:
            self.progress(self.report.done, self.report.total)

    def died(self, i: int, why: str) -> None:
        """The task's worker died: run it again, unless it already had all its attempts."""
        if self.attempts[i] <= self.retries:
            self.report.retried += 1
            self.pending.appendleft(i)
        else:
            self.fail(TaskFailure(i, "WorkerDied", clip(why, MESSAGE_LIMIT), False, self.attempts[i]))

    def fail(self, failure: TaskFailure) -> None:
        self.report.failed.append(failure)
        if self.on_error:
            self.on_error(failure)
        if self.fail_fast:
            self.report.stopped = True

    def close(self) -> MapReport:
        self.report.seconds = time.monotonic() - self.started
        return self.report


# --- the executors -----------------------------------------------------------------------
class Executor(ABC):
    """Runs plain tasks; use as a context manager (``with make_executor(...) as ex:``)."""

    kind: str
    cpus: int  # CPUs available to tasks

    def __init__(self, retries: int = DEFAULT_RETRIES):
        if not isinstance(retries, int) or retries < 0:
            raise SettingsError(f"retries must be a whole number >= 0, got {clip(repr(retries), 40)}")
        self.retries = retries

    def share(self, data: bytes) -> Blob:
        """Make ``data`` available to every worker once, by content hash."""
        return self._share(bytes(data), digest_of(data))

    def share_model(self, model) -> Blob:
        """Make ``model`` available to every worker: its saved bytes (see :func:`shared_model`)."""
        from ssviz.models import model_bytes
        return self.share(model_bytes(model))

    def share_file(self, path) -> Blob:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"file not found: {path}")
        data = path.read_bytes()
        return self._share_file(path, data, digest_of(data))

    def map(self, fn: Callable | str, tasks: Iterable, *, cpus: int = 1, on_result: OnResult | None = None,
            on_error: Callable[[TaskFailure], None] | None = None, progress=None, stop=None,
            fail_fast: bool = False) -> MapReport:
        """Run ``fn(task)`` for every task; ``on_result(index, result)`` in this thread as each arrives.

        ``progress(done, total)`` after each task; ``stop`` (an Event or a callable) ends the run early
        (tasks in flight are interrupted; :attr:`MapReport.stopped`). With ``fail_fast`` the first failed
        task stops the run. Results of tasks that finished are never lost to a later failure.
        """
        name = task_name(fn)
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise SettingsError(f"cpus per task must be a whole number >= 1, got {clip(repr(cpus), 40)}")
        if cpus > self.cpus:
            raise SettingsError(f"a task asks for {cpus} CPUs; this {self.kind} executor has {self.cpus}")
        run = _Run(list(tasks), self.retries, on_result, on_error, progress, stop, fail_fast)
        if run.tasks:
            self._map(name, run, cpus)
        return run.close()

    @abstractmethod
    def _map(self, name: str, run: _Run, cpus: int) -> None: ...

    @abstractmethod
    def _share(self, data: bytes, digest: str) -> Blob: ...

    @abstractmethod
    def _share_file(self, path: Path, data: bytes, digest: str) -> Blob: ...

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"kind": self.kind, "cpus": self.cpus}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlineExecutor(Executor):
    """The tasks in this process, one after another: the executor of a run for which none was chosen.

    Same contract as the others: ``on_result`` in task order as each finishes, a task's error
    reported as a :class:`TaskFailure` (``fail_fast`` stops the run), and the run's ``stop`` seen
    between tasks and, through :func:`stop_flag`, inside them. Tasks use this process's torch
    threads, whatever ``cpus`` they declare. No worker can die, so ``retries`` never applies; a
    task that ends the process ends the run.
    """

    kind = "inline"

    def __init__(self, retries: int = DEFAULT_RETRIES):
        super().__init__(retries)
        self.cpus = os.cpu_count() or 1

    def _share(self, data: bytes, digest: str) -> Blob:
        return Blob(digest, len(data), data=data)

    def _share_file(self, path: Path, data: bytes, digest: str) -> Blob:
        return Blob(digest, len(data), path=str(path.resolve()))  # read again where a task fetches it

    def share_model(self, model) -> Blob:
        """The model itself: a task in this process uses it as it is (no copy to load, any model, even one
        that cannot be saved). Named by its saved bytes' hash where it has them, so stored results resume."""
        from ssviz.models import model_bytes
        try:
            digest = digest_of(model_bytes(model))
        except SsvizError:
            digest = f"object-{id(model):x}"
        return Blob(digest, 0, obj=model)

    def _map(self, name: str, run: _Run, cpus: int) -> None:
        fn = resolve(name)
        _inline.stops.append(run.should_stop if run.stop is not None else None)
        try:
            while run.pending and not run.should_stop():
                i = run.pending.popleft()
                run.attempts[i] += 1
                out = outcome(fn, run.tasks[i], "this process")
                run.should_stop()  # a stop the task saw: its StoppedError is this run's stop, not a failure
                run.finished(i, out)
        finally:
            _inline.stops.pop()

    def describe(self) -> dict:
        return {"kind": self.kind, "workers": 1}


class LocalExecutor(Executor):
    """Processes on this machine: one single-process pool per slot (spawned: no state forked from the driver)."""

    kind = "local"

    def __init__(self, workers: int | None = None, retries: int = DEFAULT_RETRIES):
        super().__init__(retries)
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise SettingsError(f"workers must be a whole number >= 1, got {clip(repr(workers), 40)}")
        from ssviz.memory import cap_to_cpus
        # never more slots (each a spawned process and a queue entry) than CPUs: --workers 10^9 is a typo
        self.cpus = cap_to_cpus(workers, "workers") if workers else os.cpu_count() or 1
        import multiprocessing
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._pools: list[ProcessPoolExecutor | None] = []
        self._threads = 1
        self._shared_dir: Path | None = None

    def _share(self, data: bytes, digest: str) -> Blob:
        from ssviz.tempfiles import make_private_dir, private_file
        if self._shared_dir is None:
            self._shared_dir = make_private_dir("shared")
        path = self._shared_dir / digest
        if not path.exists():
            private_file(digest, data, self._shared_dir)
        return Blob(digest, len(data), path=str(path))

    def _share_file(self, path: Path, data: bytes, digest: str) -> Blob:
        return Blob(digest, len(data), path=str(path.resolve()))  # every local worker can read it

    def _pool(self, slot: int, cpus: int) -> ProcessPoolExecutor:
        if cpus != self._threads:  # threads are set when a process starts: new processes for a new size
            self._shutdown_pools()
            self._threads = cpus
        while len(self._pools) <= slot:
            self._pools.append(None)
        if self._pools[slot] is None:
            self._pools[slot] = ProcessPoolExecutor(1, mp_context=self._ctx, initializer=_init_worker,
                                                    initargs=(cpus, self._stop))
        return self._pools[slot]

    def _warm(self, name: str, slots: int, cpus: int) -> None:
        """Start every slot's process at once, importing the task's module (torch: seconds each, so in parallel)."""
        for slot in range(slots):
            self._pool(slot, cpus).submit(_preload, name)

    def _drop(self, slot: int) -> None:
        pool, self._pools[slot] = self._pools[slot], None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _map(self, name: str, run: _Run, cpus: int) -> None:
        slots = max(1, self.cpus // cpus)
        self._stop.clear()
        running: dict = {}  # future -> (slot, task index)
        free = deque(range(slots))
        self._warm(name, slots, cpus)
        try:
            while running or (run.pending and not run.should_stop()):
                while free and run.pending and not run.should_stop():
                    slot, i = free.popleft(), run.pending.popleft()
                    run.attempts[i] += 1
                    try:
                        fut = self._pool(slot, cpus).submit(run_task, name, run.tasks[i], cpus)
                    except BrokenProcessPool:
                        self._drop(slot)
                        fut = self._pool(slot, cpus).submit(run_task, name, run.tasks[i], cpus)
                    running[fut] = (slot, i)
                if run.should_stop():
                    self._stop.set()  # tasks in flight see it at their next check
                done, _ = wait(list(running), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for fut in done:
                    slot, i = running.pop(fut)
                    free.append(slot)
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        self._drop(slot)
                        if not run.report.stopped:
                            run.died(i, "its worker process died")
                        continue
                    run.finished(i, out)
        finally:
            if running:  # an exception in a callback, or KeyboardInterrupt: do not leave work running
                self._stop.set()
                for slot, _ in running.values():
                    self._drop(slot)

    def _shutdown_pools(self) -> None:
        for slot in range(len(self._pools)):
            self._drop(slot)

    def close(self) -> None:
        self._stop.set()
        for pool in self._pools:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pools = []
        if self._shared_dir is not None:
            from ssviz.tempfiles import remove_private_dir
            remove_private_dir(self._shared_dir)
            self._shared_dir = None

    def describe(self) -> dict:
        return {"kind": self.kind, "cpus": self.cpus}


ADDRESS_SECONDS = 10.0  # how long --address may take to answer like a Ray head before it is refused
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _h2_answer(host: str, port: int, timeout: float) -> bytes:
    """The first 9 bytes a server answers to an HTTP/2 connection preface (fewer if it closes)."""
    import socket
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        s.sendall(_H2_PREFACE)
        head = b""
        while len(head) < 9:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = s.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
        return head


def probe_ray_address(address: str, timeout: float = ADDRESS_SECONDS) -> None:
    """Refuse, within about ``timeout`` seconds, an ``--address`` that is not a Ray head (or Ray client server).

    Ray itself retries an unreachable or silent address for minutes. A Ray head speaks gRPC, so it answers an
    HTTP/2 preface with a SETTINGS frame: a closed port, a web server, or a port that accepts and never answers
    are refused here with one line naming the address (credentials hidden). ``auto`` is left to Ray.
    """
    shown = hide_credentials(clip(address, 120))
    if address in ("auto", "local"):
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.rsplit("@", 1)[-1].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"--address {shown}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    answer: list = []

    def run() -> None:
        try:
            answer.append(_h2_answer(host, int(port), timeout))
        except BaseException as e:  # reported by the caller's thread
            answer.append(e)

    worker = threading.Thread(target=run, name="ssviz-address-probe", daemon=True)
    worker.start()
    worker.join(timeout + 2.0)  # name resolution is not bounded by the socket timeout: the join is
    got = answer[0] if answer else TimeoutError()
    if isinstance(got, TimeoutError):
        raise SsvizError(f"no Ray head at --address {shown}: no answer within {timeout:g} s")
    if isinstance(got, OSError):
        raise SsvizError(f"no Ray head at --address {shown}: {got.strerror or type(got).__name__}")
    if isinstance(got, BaseException):
        raise SsvizError(f"no Ray head at --address {shown}: {type(got).__name__}")
    if len(got) < 9 or got[3] != 0x4 or int.from_bytes(got[5:9], "big") & 0x7FFFFFFF:
        raise SsvizError(f"no Ray head at --address {shown}: it does not answer as a Ray head (gRPC), "
                         f"e.g. a web server or another service")


class RayExecutor(Executor):
    """Tasks on a Ray cluster: ``address`` joins one (``HOST:PORT`` or ``auto``), None starts a local instance."""

    kind = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, retries: int = DEFAULT_RETRIES):
        super().__init__(retries)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise SettingsError("the ray executor needs Ray: pip install 'ray==2.60.0'") from None
        self._ray = ray
        self._owner = False
        if not ray.is_initialized():
            try:
                if address:
                    probe_ray_address(address)  # seconds, not Ray's minutes of retries
                    ray.init(address=address, log_to_driver=False, logging_level="error")
                else:
                    from ssviz.memory import cap_to_cpus
                    ray.init(address="local", num_cpus=cap_to_cpus(workers, "workers") if workers else
                             os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                             logging_level="error")
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"at {clip(address, 80)}" if address else "on this machine"
                detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise SsvizError(hide_credentials(f"cannot start or reach Ray {where}: {clip(detail, 200)}")) from None
            self._owner = True
        cluster = int(ray.cluster_resources().get("CPU", 0))
        if cluster < 1:
            raise SsvizError("the Ray cluster has no CPUs to run tasks")
        self.cpus = min(cluster, workers) if workers else cluster
        self.address = hide_credentials(address) if address else address  # shown in results: no password
        self._remote = ray.remote(run_task)

    def _share(self, data: bytes, digest: str) -> Blob:
        return Blob(digest, len(data), ref=self._ray.put(data))

    def _share_file(self, path: Path, data: bytes, digest: str) -> Blob:
        return Blob(digest, len(data), path=str(path), ref=self._ray.put(data))  # other nodes lack the path

    def _map(self, name: str, run: _Run, cpus: int) -> None:
        ray = self._ray
        from ray.exceptions import RayError, TaskCancelledError
        slots = max(1, self.cpus // cpus)
        remote = self._remote.options(num_cpus=cpus, max_retries=self.retries, retry_exceptions=False)
        running: dict = {}  # ObjectRef -> task index
        try:
            while running or (run.pending and not run.should_stop()):
                while len(running) < slots and run.pending and not run.should_stop():
                    i = run.pending.popleft()
                    run.attempts[i] += 1
                    running[remote.remote(name, run.tasks[i], cpus)] = i
                if run.should_stop():
                    for ref in running:
                        ray.cancel(ref, force=True)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    i = running.pop(ref)
                    try:
                        out = ray.get(ref)
                    except TaskCancelledError:
                        continue
                    except RayError as e:  # the worker or its node died and Ray's own retries ran out
                        if run.report.stopped:
                            continue
                        run.attempts[i] = self.retries + 1
                        run.died(i, f"its Ray worker died ({type(e).__name__})")
                        continue
                    run.finished(i, out)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owner and self._ray.is_initialized():
            self._ray.shutdown()
        self._owner = False

    def describe(self) -> dict:
        return {"kind": self.kind, "cpus": self.cpus, "address": self.address}


def make_executor(kind: str = "local", *, address: str | None = None, workers: int | None = None,
                  retries: int = DEFAULT_RETRIES) -> Executor:
    """The executor the CLI's ``--executor``, ``--address`` and ``--workers`` ask for."""
    if kind not in EXECUTORS:
        raise SettingsError(f"unknown executor {clip(repr(kind), 40)}: expected one of {', '.join(EXECUTORS)}")
    if kind == "local":
        if address:
            raise SettingsError("--address is for --executor ray")
        return LocalExecutor(workers, retries)
    return RayExecutor(address, workers, retries)
