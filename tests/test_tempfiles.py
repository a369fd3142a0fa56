"""Private temp folders: 0700/0600, removed on exit, on an exception, on SIGTERM, and after kill -9 by the next start."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from ssviz import tempfiles
from ssviz.tempfiles import clean_stale, private_dir, private_file, session_dir


@pytest.fixture()
def tmp_root(tmp_path, monkeypatch):
    """Point the system temp folder at a fresh folder so only this test's folders are seen."""
    root = tmp_path / "systmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setattr(tempfiles, "_session", None)
    return root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ssviz_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("ssviz-"))


def test_private_dir_is_0700_with_0600_files_and_removed_after_the_block(tmp_root):
    old = os.umask(0)  # even a permissive umask must not widen them
    try:
        with private_dir("enron") as work:
            assert work.parent == tmp_root and work.name.startswith(f"ssviz-enron-{os.getpid()}-")
            assert mode(work) == 0o700
            f = private_file("mail.txt", b"raw mail", directory=work)
            assert mode(f) == 0o600 and f.read_bytes() == b"raw mail"
            with tempfiles.open_private(work / "corpus.txt", "a", encoding="utf-8") as h:
                h.write("text")
            assert mode(work / "corpus.txt") == 0o600
            assert (work / tempfiles.MARKER).read_text().split()[0] == str(os.getpid())
    finally:
        os.umask(old)
    assert not work.exists() and ssviz_dirs(tmp_root) == []


def test_removed_when_the_block_raises(tmp_root):
    with pytest.raises(RuntimeError):
        with private_dir() as work:
            (work / "x").write_text("secret mail")
            raise RuntimeError("boom")
    assert not work.exists()


def test_session_dir_is_reused_and_files_are_atomic_and_plain_names_only(tmp_root):
    a = private_file("results-1.duckdb", b"one")
    b = private_file("results-1.duckdb", b"two")
    assert a == b and a.read_bytes() == b"two" and a.parent == session_dir() and mode(a) == 0o600
    assert [p.name for p in a.parent.iterdir() if p.name.endswith(".part")] == []
    for bad in ("../x", "a/b", "..", ".", "", ".hidden"):
        with pytest.raises(ValueError):
            private_file(bad, b"x")
    with pytest.raises(ValueError):
        private_dir("../evil").__enter__()
    tempfiles._remove_all()
    assert not a.parent.exists()


CHILD = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, even when the tests run under nohup
    from ssviz.tempfiles import private_dir, private_file
    how = sys.argv[1]
    if how == "exit":
        private_file("upload.duckdb", b"uploaded")             # the session folder: removed at exit
        with private_dir("enron") as work:
            (work / "u.txt").write_text("mail")
            print(work, flush=True)
            sys.exit(0)
    if how == "raise":
        with private_dir("enron") as work:
            print(work, flush=True)
            raise SystemExit("fatal")
    with private_dir("enron") as work:
        (work / "u.txt").write_text("mail")
        print(work, flush=True)
        time.sleep(60)
""")


def run_child(tmp_root: Path, how: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp_root)}
    return subprocess.Popen([sys.executable, "-c", CHILD, how], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_child_exiting_or_failing_leaves_nothing(tmp_root, how):
    proc = run_child(tmp_root, how)
    out, err = proc.communicate(timeout=60)
    assert Path(out.strip()).parent == tmp_root
    assert ssviz_dirs(tmp_root) == [], err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_terminating_signal_removes_the_folder_and_still_terminates(tmp_root, sig):
    proc = run_child(tmp_root, "sleep")
    work = Path(proc.stdout.readline().strip())
    assert (work / "u.txt").exists()
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == -sig  # the signal's usual outcome, after the cleanup
    assert not work.exists() and ssviz_dirs(tmp_root) == []


def test_kill_9_leftovers_are_removed_by_the_next_start_and_live_ones_kept(tmp_root):
    killed = run_child(tmp_root, "sleep")
    stale = Path(killed.stdout.readline().strip())
    killed.kill()
    killed.wait()
    assert stale.exists()  # kill -9 runs no cleanup
    alive = run_child(tmp_root, "sleep")
    live = Path(alive.stdout.readline().strip())
    try:
        # a folder killed before its marker was written (pid only in the name), a reused pid
        # (a live pid, another start time), and things that are not ours to remove
        no_marker = tmp_root / f"ssviz-enron-{killed.pid}-AAAAAAAAAAAA"
        no_marker.mkdir()
        reused = tmp_root / "ssviz-enron-1-BBBBBBBBBBBB"
        reused.mkdir()
        (reused / tempfiles.MARKER).write_text("1 0\n")
        foreign = [tmp_root / "ssviz-results-abc.duckdb", tmp_root / "ssviz-enron-xyz", tmp_root / "other"]
        foreign[0].write_bytes(b"x")
        foreign[1].mkdir()
        foreign[2].mkdir()
        (tmp_root / f"ssviz-enron-{killed.pid}-CCCCCCCCCCCC").symlink_to(foreign[2])
        # the next ssviz process cleans up when it makes its first folder
        done = subprocess.run([sys.executable, "-c", "from ssviz.tempfiles import private_dir\n"
                               "with private_dir('enron'): pass"],
                              env={**os.environ, "TMPDIR": str(tmp_root)}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert not stale.exists() and not no_marker.exists()
        if Path("/proc/1/stat").exists():
            assert not reused.exists()
        assert live.exists() and (live / "u.txt").exists()
        assert all(p.exists() for p in foreign)
        assert (tmp_root / f"ssviz-enron-{killed.pid}-CCCCCCCCCCCC").is_symlink()
    finally:
        alive.kill()
        alive.wait()
    assert [p for p in clean_stale()] == [live]


def test_fork_child_does_not_remove_the_parents_folder(tmp_root):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    with private_dir("enron") as work:
        pid = os.fork()
        if pid == 0:  # the child exits through the at-exit path of its own
            try:
                tempfiles._remove_all()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert work.exists()
    assert not work.exists()


def test_clean_stale_is_quick_on_a_crowded_temp_folder(tmp_root):
    for i in range(2000):
        (tmp_root / f"other-{i}").touch()
    t0 = time.perf_counter()
    assert clean_stale() == []
    assert time.perf_counter() - t0 < 2
