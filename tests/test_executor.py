"""The executor: plain tasks on local processes and on a real Ray cluster (no mocks).

Task functions below are module-level, so workers import them by name (the
executor never ships code). Ray tests run in a fresh network namespace with only
loopback (Ray would otherwise bind and probe the machine's outward address):
:func:`test_ray_in_a_loopback_namespace` starts this file's ``ray_inner`` tests
there with ``unshare -n``; they share one Ray head, and every process left in
the namespace is ended by its pid afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ssviz.errors import CheckpointError, SettingsError, SsvizError, TemplateError
from ssviz.executor import Blob, InlineExecutor, LocalExecutor, fetch, make_executor, stop_flag, task_name

ROOT = Path(__file__).resolve().parent.parent
INNER = os.environ.get("SSVIZ_RAY_INNER") == "1"


# --- task functions (imported by name in the workers) -------------------------------------------
def square(task):
    return {"x": task["x"], "y": task["x"] ** 2, "pid": os.getpid()}


def threads(task):
    import torch
    return torch.get_num_threads()


def picky(task):
    if task["x"] == 3:
        raise TemplateError("template 'x{d:1}' is bad for task 3")
    if task["x"] == 4:
        raise KeyError("a bug")
    return task["x"]


def die_once(task):
    """Writes a marker with its pid on the first attempt, then waits to be killed (or kills itself)."""
    marker = Path(task["dir"]) / f"started-{task['x']}"
    if task.get("victim") and not marker.exists():
        marker.write_text(str(os.getpid()))
        if task.get("suicide"):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(120)  # the test kills us long before
    return task["x"]


def always_die(task):
    if task.get("victim"):
        (Path(task["dir"]) / f"attempt-{os.getpid()}").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)
    return task["x"]


def obedient(task):
    """Runs until the run's stop flag is set (at most 60 s)."""
    from ssviz.progress import stop_requested
    (Path(task["dir"]) / f"running-{task['x']}").write_text(str(os.getpid()))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if stop_requested(stop_flag()):
            from ssviz.errors import StoppedError
            raise StoppedError("stopped")
        time.sleep(0.05)
    return "not stopped"


def read_blob(task):
    return len(fetch(task["blob"]))


def wait_for(path_glob: str, folder: Path, timeout: float = 120.0) -> list[Path]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(folder.glob(path_glob))
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {path_glob} in {folder} after {timeout} s")


def killer(folder: Path, glob: str):
    """A thread that SIGKILLs the worker whose pid a task wrote to its marker."""
    def run():
        marker = wait_for(glob, folder)[0]
        time.sleep(0.2)
        os.kill(int(marker.read_text()), signal.SIGKILL)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --- things that need no worker --------------------------------------------------------------
@pytest.mark.parametrize("fn", [lambda t: t, "tests.test_executor:nothing", "no_such_module:f", "nocolon",
                                 "tests.test_executor:ROOT"])
def test_only_importable_module_functions_are_tasks(fn):
    def inner(task):
        return task
    with pytest.raises(SettingsError):
        task_name(fn)
    with pytest.raises(SettingsError):
        task_name(inner)


def test_task_names():
    assert task_name(square) == "tests.test_executor:square"
    assert task_name("ssviz.exposure:shard_task") == "ssviz.exposure:shard_task"


@pytest.mark.parametrize("kw", [{"workers": 0}, {"workers": -1}, {"workers": 1.5}, {"retries": -1}])
def test_bad_settings(kw):
    with pytest.raises(SettingsError):
        LocalExecutor(**kw)


def test_make_executor_refuses_unknown_kinds_and_an_address_for_local():
    with pytest.raises(SettingsError, match="unknown executor"):
        make_executor("slurm")
    with pytest.raises(SettingsError, match="--address"):
        make_executor("local", address="127.0.0.1:6379")


# --- the inline executor (this process, one task after another) --------------------------------
def test_inline_map_runs_every_task_here_in_order():
    got, seen = [], []
    with InlineExecutor() as ex:
        report = ex.map(square, [{"x": x} for x in range(5)], on_result=lambda i, r: got.append((i, r)),
                        progress=lambda d, n: seen.append((d, n)))
    assert report.complete and report.done == 5 and not report.stopped and report.retried == 0
    assert [(i, r["y"]) for i, r in got] == [(x, x * x) for x in range(5)]
    assert {r["pid"] for _, r in got} == {os.getpid()}
    assert seen == [(d, 5) for d in range(1, 6)]
    assert ex.describe() == {"kind": "inline", "workers": 1} and ex.map(square, []).complete


def test_inline_failures_are_reported_like_on_the_other_executors():
    got, errors = {}, []
    report = InlineExecutor().map(picky, [{"x": x} for x in range(8)], on_result=lambda i, r: got.setdefault(i, r),
                                  on_error=errors.append)
    assert sorted(got) == [0, 1, 2, 5, 6, 7] and not report.complete and len(errors) == 2
    user, bug = sorted(report.failed, key=lambda f: f.index)
    assert (user.index, user.user, user.attempts, user.error) == (3, True, 1, "TemplateError")
    assert isinstance(user.exception(), TemplateError)
    assert str(user.exception()) == "template 'x{d:1}' is bad for task 3"
    assert (bug.index, bug.user, bug.error) == (4, False, "KeyError") and "Traceback" not in str(bug)
    report = InlineExecutor().map(picky, [{"x": 3}] + [{"x": x} for x in range(5, 9)], fail_fast=True)
    assert report.stopped and len(report.failed) == 1 and report.done == 0  # nothing started after the failure


def test_inline_refuses_what_the_others_refuse():
    with pytest.raises(SettingsError):
        InlineExecutor().map(lambda t: t, [{}])
    with pytest.raises(SettingsError, match="CPUs"):
        InlineExecutor().map(square, [{"x": 1}], cpus=(os.cpu_count() or 1) + 1)
    with pytest.raises(SettingsError):
        InlineExecutor(retries=-1)


def flagged(task):
    """Whether the task sees a stop flag, and its value; asks for the stop when told to."""
    flag = stop_flag()
    if task.get("stop"):
        task["stop"].set()
    return None if flag is None else bool(flag())


def test_inline_stop_ends_the_run_between_tasks_and_keeps_what_finished():
    stop = threading.Event()
    got = []
    report = InlineExecutor().map(flagged, [{}, {"stop": stop}, {}, {}], stop=stop,
                                  on_result=lambda i, r: got.append(i))
    assert report.stopped and got == [0, 1] and not report.failed  # the task that asked finished and is kept
    assert stop_flag() is None  # outside a run
    out = []
    InlineExecutor().map(flagged, [{}], on_result=lambda i, r: out.append(r))
    assert out == [None]  # no stop given: the task sees none, as when called directly


def test_inline_stop_inside_a_task_is_a_stop_not_a_failure(tmp_path):
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    got = []
    report = InlineExecutor().map(obedient, [{"x": x, "dir": str(tmp_path)} for x in range(3)], stop=stop,
                                  on_result=lambda i, r: got.append(r))
    assert report.stopped and not report.failed and got == [] and time.monotonic() - t0 < 30
    assert len(list(tmp_path.glob("running-*"))) == 1


def nested(task):
    """An inline run inside an inline task: each level's tasks see their own run's flag."""
    inner = []
    InlineExecutor().map(flagged, [{}], stop=lambda: task["inner_stopped"],
                         on_result=lambda i, r: inner.append(r))
    return {"inner": inner, "outer": bool(stop_flag()())}


def test_inline_runs_nest():
    out = []
    InlineExecutor().map(nested, [{"inner_stopped": False}], stop=lambda: False, on_result=lambda i, r: out.append(r))
    assert out == [{"inner": [False], "outer": False}]


def test_inline_shared_data_is_fetched_here_and_checked(tmp_path):
    ex = InlineExecutor()
    data = os.urandom(10_000)
    blob = ex.share(data)
    assert blob.path is None and blob.ref is None and fetch(blob) == data and str(len(data)) in repr(blob)
    assert data.hex()[:16] not in repr(blob)  # the bytes stay out of the repr
    out = []
    ex.map(read_blob, [{"blob": blob}], on_result=lambda i, r: out.append(r))
    assert out == [10_000]
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    blob = ex.share_file(path)
    path.write_bytes(data[:-1] + b"!")
    report = ex.map(read_blob, [{"blob": blob}])
    assert report.failed and "changed" in report.failed[0].message and report.failed[0].user


def test_ctrl_c_in_an_inline_task_ends_the_run_and_keeps_what_finished():
    got = []
    with pytest.raises(KeyboardInterrupt):
        InlineExecutor().map(interrupted, [{"x": 0}, {"x": 1, "interrupt": True}, {"x": 2}],
                             on_result=lambda i, r: got.append(r))
    assert got == [0] and stop_flag() is None


def interrupted(task):
    if task.get("interrupt"):
        raise KeyboardInterrupt
    return task["x"]


# --- the local executor (one shared pool of spawned processes) ---------------------------------
@pytest.fixture(scope="module")
def local():
    with LocalExecutor(workers=2, retries=2) as ex:
        yield ex


@pytest.mark.slow
def test_local_map_returns_every_result_once_by_index(local):
    got, seen = {}, []
    report = local.map(square, [{"x": x} for x in range(12)], on_result=lambda i, r: got.setdefault(i, r),
                       progress=lambda d, n: seen.append((d, n)))
    assert report.complete and report.done == 12 and not report.failed
    assert {i: r["y"] for i, r in got.items()} == {x: x * x for x in range(12)}
    assert seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len({r["pid"] for r in got.values()}) <= 2  # two slots, processes reused
    assert os.getpid() not in {r["pid"] for r in got.values()}
    assert local.map(square, []).complete


@pytest.mark.slow
def test_torch_threads_match_the_cpus_a_task_declares(local):
    for cpus in (1, 2):
        out = []
        local.map(threads, [{}] * 2, cpus=cpus, on_result=lambda i, r: out.append(r))
        assert out == [cpus, cpus]
    with pytest.raises(SettingsError, match="3 CPUs"):
        local.map(threads, [{}], cpus=3)


@pytest.mark.slow
def test_a_user_error_fails_its_task_at_once_and_the_rest_go_on(local):
    got, errors = {}, []
    report = local.map(picky, [{"x": x} for x in range(8)], on_result=lambda i, r: got.setdefault(i, r),
                       on_error=errors.append)
    assert sorted(got) == [0, 1, 2, 5, 6, 7]
    by_index = {f.index: f for f in report.failed}
    user, bug = by_index[3], by_index[4]
    assert user.user and user.attempts == 1 and user.error == "TemplateError"
    assert user.message == "template 'x{d:1}' is bad for task 3"
    assert isinstance(user.exception(), TemplateError) and str(user.exception()) == user.message
    assert not bug.user and bug.attempts == 1 and bug.error == "KeyError"  # a bug is not retried either
    assert "Traceback" not in str(bug) and len(errors) == 2 and not report.complete


@pytest.mark.slow
def test_fail_fast_stops_the_run_at_the_first_failure(local):
    report = local.map(picky, [{"x": 3}] + [{"x": x} for x in range(5, 40)], fail_fast=True)
    assert report.stopped and len(report.failed) == 1 and report.done < 35


@pytest.mark.slow
@pytest.mark.parametrize("suicide", [False, True], ids=["killed", "self-kill"])
def test_a_worker_killed_mid_task_is_retried_and_nothing_is_lost(local, tmp_path, suicide):
    tasks = [{"x": x, "dir": str(tmp_path), "victim": x == 2, "suicide": suicide} for x in range(6)]
    if not suicide:
        killer(tmp_path, "started-2")
    got = {}
    report = local.map(die_once, tasks, on_result=lambda i, r: got.setdefault(i, r))
    assert report.complete and got == {x: x for x in range(6)}
    assert report.retried == 1
    assert local.map(square, [{"x": 5}]).complete  # the replaced slot works


@pytest.mark.slow
def test_a_task_that_always_kills_its_worker_fails_after_bounded_retries(tmp_path):
    with LocalExecutor(workers=2, retries=1) as ex:
        got = {}
        report = ex.map(always_die, [{"x": x, "dir": str(tmp_path), "victim": x == 1} for x in range(4)],
                        on_result=lambda i, r: got.setdefault(i, r))
    assert sorted(got) == [0, 2, 3]
    [failure] = report.failed
    assert failure.index == 1 and failure.attempts == 2 and failure.error == "WorkerDied" and not failure.user
    assert len(list(tmp_path.glob("attempt-*"))) == 2


@pytest.mark.slow
def test_stop_interrupts_tasks_in_flight_and_starts_no_more(local, tmp_path):
    stop = threading.Event()

    def stopper():
        wait_for("running-*", tmp_path)
        stop.set()
    threading.Thread(target=stopper, daemon=True).start()
    t0 = time.monotonic()
    got = []
    report = local.map(obedient, [{"x": x, "dir": str(tmp_path)} for x in range(6)], stop=stop,
                       on_result=lambda i, r: got.append(r))
    assert report.stopped and time.monotonic() - t0 < 30
    assert got == [] and not report.failed  # a stop is not a failure
    assert len(list(tmp_path.glob("running-*"))) <= 2


@pytest.mark.slow
def test_shared_data_travels_by_content_hash(local, tmp_path):
    data = os.urandom(100_000)
    blob = local.share(data)
    out = []
    local.map(read_blob, [{"blob": blob}], on_result=lambda i, r: out.append(r))
    assert out == [100_000] and blob.path and Path(blob.path).stat().st_mode & 0o077 == 0
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    blob = local.share_file(path)
    path.write_bytes(data[:-1] + b"!")  # changed under the run: refused, not silently mixed
    report = local.map(read_blob, [{"blob": blob}])
    assert report.failed and "changed" in report.failed[0].message and report.failed[0].user
    with pytest.raises(SsvizError, match="changed"):
        fetch(Blob(blob.digest, blob.size, path=str(path)))


# --- Ray, in a loopback-only network namespace ---------------------------------------------------
def _can_unshare() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    probe = subprocess.run(_unshare(["true"]), capture_output=True, timeout=30)
    return probe.returncode == 0


def _unshare(argv: list[str]) -> list[str]:
    # as root a plain network namespace; otherwise inside a user namespace mapped to root
    return ["unshare", "-n" if os.geteuid() == 0 else "-rn", "--", *argv]


def _host_namespaces() -> set[str]:
    """Network namespaces that are not ours alone: the one the outer test ran in, and init's."""
    hosts = {os.environ.get("SSVIZ_HOST_NETNS", "")}
    try:
        hosts.add(os.readlink("/proc/1/ns/net"))
    except OSError:  # unreadable from inside a user namespace: the outer test's value stands
        pass
    return hosts - {""}


def _loopback_only() -> bool:
    """Whether this network namespace has no interface but loopback (a fresh ``unshare -n`` one)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines} == {"lo"}


def _private_namespace() -> str:
    """This process's network namespace, refusing any other: only a namespace made for these tests
    (by ``unshare -n``) holds nothing but processes they started, which may all be ended."""
    ns = os.readlink("/proc/self/ns/net")
    if not INNER or not os.environ.get("SSVIZ_HOST_NETNS") or ns in _host_namespaces() or not _loopback_only():
        raise RuntimeError("not in a private network namespace: refusing to start or end Ray processes")
    return ns


def _processes_in_namespace(ns: str) -> list[int]:
    """Pids of processes in network namespace ``ns`` other than this one and its ancestors."""
    if ns != _private_namespace():
        raise RuntimeError("refusing to list a network namespace other than this test's private one")
    mine = {os.getpid()}
    pid = os.getppid()
    while pid > 1:
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in mine:
            try:
                if os.readlink(entry / "ns" / "net") == ns:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_ray_in_a_loopback_namespace(tmp_path):
    """Starts the ``ray_inner`` tests below in a fresh network namespace (only loopback, nothing leaves
    the machine) and checks they ran, passed, and left no process behind."""
    if not _can_unshare():
        if os.environ.get("SSVIZ_REQUIRE_RAY") == "1":
            pytest.fail("Ray tests must run here: need ray, unshare and ip (root or user namespaces)")
        pytest.skip("needs ray, unshare and ip (root or user namespaces) for a loopback-only namespace")
    # token auth off: the namespace is reachable from nowhere, and no token file is written to the home folder
    env = {**os.environ, "SSVIZ_RAY_INNER": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": str(ROOT),
           "SSVIZ_HOST_NETNS": os.readlink("/proc/self/ns/net"),
           "SSVIZ_DATA_DIR": str(tmp_path / "data")}
    script = (f"ip link set lo up && cd {ROOT} && exec {sys.executable} -m pytest -q -p no:cacheprovider "
              f"-x tests/test_executor.py -k ray_inner -m slow")
    proc = subprocess.run(_unshare(["bash", "-c", script]), env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert re.search(r"\b6 passed\b", proc.stdout), tail


@pytest.fixture(scope="module")
def ray_head():
    """One Ray head on 127.0.0.1 for all inner tests: 2 CPUs, no dashboard, no usage stats."""
    if not INNER:  # before anything: outside the private namespace nothing may be started (or ended)
        pytest.skip("runs inside test_ray_in_a_loopback_namespace")
    ns = _private_namespace()
    temp = Path(tempfile.mkdtemp(prefix="ssray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = 6390
    try:
        start = subprocess.run(["ray", "start", "--head", "--port", str(port), "--num-cpus", "2",
                                "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)],
                               capture_output=True, text=True, timeout=300)
        assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        try:
            import ray
            ray.shutdown()
        except ImportError:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # everything in this namespace is ours: end it by pid
            for pid in _processes_in_namespace(ns):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(2)
        left = _processes_in_namespace(ns)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"processes left in the Ray namespace: {left}"


def _inner():
    if not INNER:
        pytest.skip("runs inside test_ray_in_a_loopback_namespace")


def _cli_json(*argv) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ssviz", *argv, "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_ray_inner_sharded_enumeration_equals_local_and_plain(ray_head, tmp_path, tiny_model):
    _inner()
    from ssviz import exposure
    from ssviz.models import save_checkpoint
    from ssviz.templates import Template
    ckpt = str(save_checkpoint(tiny_model, tmp_path / "tiny.safetensors"))
    t, secret = Template("My PIN is {d:4}"), "0417"
    args = ["exposure", "--checkpoint", ckpt, "--template", t.text, "--secret", secret, "--shard-size", "1500",
            "--threads", "1"]
    on_ray = _cli_json(*args, "--executor", "ray", "--address", ray_head, "--shards-db", str(tmp_path / "r.duckdb"))
    local = _cli_json(*args, "--executor", "local", "--workers", "2", "--shards-db", str(tmp_path / "l.duckdb"))
    plain = exposure.exact(tiny_model, t, secret, chunk_size=1500).to_json()
    assert on_ray["shards"]["executor"]["kind"] == "ray" and on_ray["shards"]["shards"] == 7
    assert local["shards"]["executor"]["kind"] == "local"
    for key in plain:
        if key != "shards":
            assert on_ray[key] == local[key] == plain[key], key  # value for value
    assert plain["rank"] >= 1 and sum(plain["histogram"]["counts"]) == t.space_size


@pytest.mark.slow
def test_ray_inner_a_killed_worker_is_retried_and_nothing_is_lost(ray_head, tmp_path):
    _inner()
    from ssviz.executor import RayExecutor
    with RayExecutor(address=ray_head, retries=2) as ex:
        assert ex.cpus == 2
        killer(tmp_path, "started-1")
        got = {}
        report = ex.map(die_once, [{"x": x, "dir": str(tmp_path), "victim": x == 1} for x in range(5)],
                        on_result=lambda i, r: got.setdefault(i, r))
    assert report.complete and got == {x: x for x in range(5)}


@pytest.mark.slow
def test_ray_inner_a_user_error_fails_fast_with_its_message(ray_head):
    _inner()
    from ssviz.executor import RayExecutor
    with RayExecutor(address=ray_head) as ex:
        got = {}
        report = ex.map(picky, [{"x": x} for x in range(6)], on_result=lambda i, r: got.setdefault(i, r))
        assert sorted(got) == [0, 1, 2, 5]
        user = next(f for f in report.failed if f.index == 3)
        assert user.user and user.attempts == 1 and user.message == "template 'x{d:1}' is bad for task 3"
        blob = ex.share(b"x" * 1000)
        out = []
        ex.map(read_blob, [{"blob": blob}] * 2, on_result=lambda i, r: out.append(r))
        assert out == [1000, 1000] and blob.ref is not None


@pytest.mark.slow
def test_ray_inner_a_bad_model_fails_the_run_with_one_line(ray_head, tmp_path, tiny_model):
    _inner()
    import copy

    import torch

    from ssviz import exposure
    from ssviz.executor import RayExecutor
    from ssviz.templates import Template
    bad = copy.deepcopy(tiny_model)  # finite but huge weights: refused where the worker loads it
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in (bad.head.weight, bad.embedding.weight):
            w.copy_(torch.randn(w.shape, generator=gen).sign() * 3e38)
    with RayExecutor(address=ray_head) as ex, pytest.raises(CheckpointError, match="NaN or infinite"):
        exposure.exact(bad, Template("My PIN is {d:3}"), "123", executor=ex, shard_size=200)


# --- the study, sweeps and repeated audits on Ray equal the local executor's --------------------------
STUDY_ARGS = ["--layers", "1", "--hidden", "24", "--embedding-dim", "8", "--epochs", "2", "--lr", "0.01",
              "--patience", "0", "--exposure-samples", "200", "--search-nodes", "200", "--extraction-nodes", "200"]


def _ray_tasks_running() -> list[int]:
    """Pids of Ray workers running a task now (Ray titles a busy worker ``ray::<function>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::run_task"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_ray_inner_a_study_equals_local_even_when_a_worker_is_killed(ray_head, tmp_path):
    _inner()
    mail = tmp_path / "mail"
    _cli_json("enron-synth", str(mail), "--users", "3", "--messages", "40", "--seed", "2", "--times", "2,12,30")
    local = _cli_json("enron", str(mail / "maildir"), "--db", str(tmp_path / "l.duckdb"), "--executor", "local",
                      "--workers", "2", "--cache-dir", str(tmp_path / "lc"), *STUDY_ARGS)
    cmd = [sys.executable, "-m", "ssviz", "enron", str(mail / "maildir"), "--db", str(tmp_path / "r.duckdb"),
           "--executor", "ray", "--address", ray_head, "--cache-dir", str(tmp_path / "rc"), *STUDY_ARGS, "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    deadline = time.monotonic() + 300
    while proc.poll() is None and not killed and time.monotonic() < deadline:
        busy = _ray_tasks_running()
        if busy:
            time.sleep(0.5)  # mid-task: the user's training has started
            for pid in busy[:1]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert killed, "no Ray worker was seen running a task"
    on_ray = json.loads(out)
    key = lambda r: (r["user"], r["type"], r["last4"])  # noqa: E731
    planted = json.loads((mail / "ground_truth.json").read_text())["secrets"]
    assert len(local["secrets"]) == len(planted) >= 3  # every planted secret, none lost to the kill
    assert sorted(on_ray["secrets"], key=key) == sorted(local["secrets"], key=key)  # value for value


@pytest.mark.slow
def test_ray_inner_a_sweep_and_repeated_audits_equal_local(ray_head, tmp_path, small_corpus):
    _inner()
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:4_000], encoding="utf-8")
    train = ["--layers", "1", "--hidden", "8", "--embedding-dim", "8", "--epochs", "1", "--patience", "0"]
    sweep = ["sweep", str(corpus), "--canary", "PIN {d:2}", "--secret", "42", "--grid", "hidden=8,12",
             "--seeds", "2", *train]
    on_ray = _cli_json(*sweep, "--db", str(tmp_path / "r.duckdb"), "--executor", "ray", "--address", ray_head)
    local = _cli_json(*sweep, "--db", str(tmp_path / "l.duckdb"), "--executor", "local", "--workers", "2")
    assert on_ray["computed"] == local["computed"] == 4 and on_ray["sweep"] == local["sweep"]
    drop = lambda cells: [{k: v for k, v in c.items() if k != "seconds_mean"} for c in cells]  # noqa: E731
    assert drop(on_ray["cells"]) == drop(local["cells"])
    audit = ["audit", str(corpus), "--template", "My PIN is {d:3}", "--canaries", "20", "--insertions", "2",
             "--seeds", "2", *train]
    a = _cli_json(*audit, "--out", str(tmp_path / "ar"), "--executor", "ray", "--address", ray_head)
    b = _cli_json(*audit, "--out", str(tmp_path / "al"))  # one after another, in the process itself
    same = ("canaries", "included", "auc", "tpr_at_fpr", "epsilon_lower", "mia_auc", "seed")
    assert [{k: r[k] for k in same} for r in a["results"]] == [{k: r[k] for k in same} for r in b["results"]]
    assert a["computed"] == 2 and a["spread"]["auc"]["n"] == 2
