"""Hostile outputs: an output that is an input, planted links, devices and FIFOs, two sessions racing for one
name, counts beyond the machine, and ``--address`` values that are not a Ray head (or carry a password).

Each attack is tried in several spellings; every test fails if its fix is removed.
"""

from __future__ import annotations

import http.server
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
import torch

from ssviz.cli import main
from ssviz.errors import SsvizError
from ssviz.memory import available_cpus
from ssviz.models import save_checkpoint
from ssviz.paths import check_outputs, claim_unique, ensure_writable, same_file
from ssviz.tempfiles import atomic_write

CORPUS = "the pin is 12 and the code is 34\n" * 40


@pytest.fixture()
def files(tmp_path, tiny_model):
    """A checkpoint and a corpus in tmp_path/in (the inputs a command reads)."""
    folder = tmp_path / "in"
    folder.mkdir()
    ckpt = save_checkpoint(tiny_model, folder / "model.safetensors")
    corpus = folder / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    return ckpt, corpus


def spellings(path: Path) -> list[str]:
    """The same file as typed, through ``..``, a relative path, a symlink and a hard link."""
    link = path.parent.parent / f"link-{path.name}"
    link.symlink_to(path)
    hard = path.parent.parent / f"hard-{path.name}"
    os.link(path, hard)
    rel = os.path.relpath(path, Path.cwd())
    return [str(path), str(path.parent / ".." / path.parent.name / path.name), rel, str(link), str(hard)]


def refused(argv, capsys, *needles) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


def no_work(monkeypatch):
    """Loading a model or measuring anything fails the test: refusals come before any work."""
    import ssviz.cli.core as cli_core  # imported first: they bind load_from_args at import
    import ssviz.cli.extract as cli_extract
    import ssviz.models as models

    def boom(*a, **k):
        pytest.fail("work started before the output was checked")
    monkeypatch.setattr(models, "load_model", boom)
    for module in (cli_extract, cli_core):
        monkeypatch.setattr(module, "load_from_args", boom)


# --- an output that is an input -----------------------------------------------------------------------------
def test_report_refuses_an_out_that_is_its_checkpoint_or_corpus(files, capsys, monkeypatch):
    ckpt, corpus = files
    no_work(monkeypatch)
    before = ckpt.read_bytes(), corpus.read_bytes()
    for target in (ckpt, corpus):
        for out in spellings(target):
            refused(["report", "--checkpoint", str(ckpt), "--corpus", str(corpus), "--template", "PIN {d:2}",
                     "--out", out], capsys, "is the input file", "--out")
    assert (ckpt.read_bytes(), corpus.read_bytes()) == before


def test_report_pdf_beside_out_is_checked_too(tmp_path, files, capsys, monkeypatch):
    ckpt, corpus = files
    no_work(monkeypatch)
    pdf_ckpt = tmp_path / "in" / "model.pdf"
    pdf_ckpt.write_bytes(ckpt.read_bytes())
    refused(["report", "--checkpoint", str(pdf_ckpt), "--secret", "12", "--template", "PIN {d:2}",
             "--out", str(tmp_path / "in" / "model.html"), "--pdf"], capsys, "PDF", "is the input file")
    assert pdf_ckpt.read_bytes() == ckpt.read_bytes()


def test_extract_trace_never_replaces_the_checkpoint(files, capsys, monkeypatch):
    ckpt, _ = files
    no_work(monkeypatch)
    before = ckpt.read_bytes()
    for out in spellings(ckpt):
        refused(["extract", "--checkpoint", str(ckpt), "--template", "PIN {d:2}", "--trace", out], capsys,
                "--trace", "is the input file")
    assert ckpt.read_bytes() == before


def test_exposure_shards_db_and_export_out_never_replace_their_input(tmp_path, files, capsys, monkeypatch):
    ckpt, _ = files
    no_work(monkeypatch)
    before = ckpt.read_bytes()
    for out in spellings(ckpt)[:3]:
        refused(["exposure", "--checkpoint", str(ckpt), "--template", "PIN {d:2}", "--secret", "12",
                 "--method", "exact", "--shards-db", out], capsys, "--shards-db", "is the input file")
    db = tmp_path / "in" / "results.duckdb"
    db.write_bytes(b"not a store, but an input all the same")
    for out in spellings(db):
        refused(["enron-export", "--db", str(db), "--out", out], capsys, "--out", "is the input file")
    assert ckpt.read_bytes() == before
    assert db.read_bytes() == b"not a store, but an input all the same"


def test_enron_db_and_cache_never_replace_the_maildir(tmp_path, capsys, monkeypatch):
    import ssviz.enron.pipeline as pipeline
    monkeypatch.setattr(pipeline, "run_study", lambda *a, **k: pytest.fail("study ran before the check"))
    archive = tmp_path / "mail.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    folder = tmp_path / "maildir"
    (folder / "alice" / "sent").mkdir(parents=True)
    mail = folder / "alice" / "sent" / "1."
    mail.write_text("From: a@enron.com\n\nhello\n")
    for out in spellings(archive):
        refused(["enron", str(archive), "--db", out], capsys, "--db", "is the input file")
    refused(["enron", str(folder), "--db", str(mail)], capsys, "--db", "input folder")
    refused(["enron", str(archive), "--cache-dir", str(archive)], capsys, "--cache-dir")
    assert mail.read_text() == "From: a@enron.com\n\nhello\n"


def test_audit_files_never_replace_the_corpus(tmp_path, capsys, monkeypatch):
    import ssviz.audit.run as audit_run
    monkeypatch.setattr(audit_run, "run_audit", lambda *a, **k: pytest.fail("audit ran before the check"))
    out = tmp_path / "audit"
    out.mkdir()
    for name in ("canaries.csv", "audit.json", "model.safetensors"):
        corpus = out / name
        corpus.write_text(CORPUS)
        refused(["audit", str(corpus), "--template", "PIN {d:2}", "--canaries", "10", "--out", str(out),
                 "--force"], capsys, "is the input file")
        assert corpus.read_text() == CORPUS
        corpus.unlink()


def test_check_outputs_sees_every_spelling_and_skips_unrelated_paths(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("x")
    for out in spellings(src):
        with pytest.raises(SsvizError, match="is the input file"):
            check_outputs({"--out": out}, {"--corpus": src})
    check_outputs({"--out": tmp_path / "new.txt", "--pdf": None}, {"--corpus": src, "--study": None})
    # a missing output is compared by its resolved path (a link to where the input will not be is fine)
    assert same_file(tmp_path / "x" / ".." / "a.txt", src)
    assert not same_file(tmp_path / "missing", src)


# --- the writability probe ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target_exists", [True, False])
def test_ensure_writable_never_follows_a_planted_link(tmp_path, target_exists):
    victim = tmp_path / "victim.txt"
    if target_exists:
        victim.write_text("precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("report.html", "trace.json", "results.duckdb"):
        (out_dir / f".{name}.ssviz-write-test").symlink_to(victim)  # the name the old probe used
    before = sorted(os.listdir(out_dir))
    for name in ("report.html", "trace.json", "results.duckdb"):
        assert ensure_writable(out_dir / name) == out_dir / name
    assert sorted(os.listdir(out_dir)) == before  # the probe left nothing behind
    if target_exists:
        assert victim.read_text() == "precious"
    else:
        assert not victim.exists()  # not created through a dangling link either


def test_cli_outputs_never_write_through_a_planted_probe_link(files, tmp_path, capsys):
    ckpt, corpus = files
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "clean.txt"
    (tmp_path / ".clean.txt.ssviz-write-test").symlink_to(victim)
    assert main(["sanitize", str(corpus), "--method", "regex", "--out", str(out)]) == 0
    capsys.readouterr()
    assert victim.read_text() == "precious" and out.is_file()


# --- temporary and device outputs ----------------------------------------------------------------------------
def test_checkpoint_temp_file_never_follows_a_planted_link(tmp_path, tiny_model):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "model.safetensors"
    (tmp_path / "model.safetensors.tmp").symlink_to(victim)  # the temp name train used to write
    (tmp_path / ".model.safetensors.tmp").symlink_to(victim)
    save_checkpoint(tiny_model, out)
    assert victim.read_text() == "precious"
    assert out.is_file() and not out.is_symlink()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in
                 ("victim.txt", "model.safetensors", "model.safetensors.tmp", ".model.safetensors.tmp")]
    assert leftovers == []


def test_atomic_write_refuses_devices_and_fifos_and_leaves_no_temp(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/null")):
        with pytest.raises(SsvizError, match="not a regular file"):
            atomic_write(path, b"data")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    keep = tmp_path / "keep.txt"
    keep.write_text("old")
    os.chmod(keep, 0o640)
    atomic_write(keep, "new")
    assert keep.read_text() == "new" and stat.S_IMODE(os.stat(keep).st_mode) == 0o640


def test_cli_refuses_device_and_fifo_outputs_before_any_work(files, tmp_path, capsys, monkeypatch):
    import ssviz.cli.train as cli_train
    ckpt, corpus = files
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "looks-like-a-file.safetensors"
    link.symlink_to("/dev/full")
    for out in ("/dev/full", "/dev/null", str(fifo), str(link)):
        refused(["train", str(corpus), "--out", out, "--epochs", "1"], capsys, "not a regular file")
        refused(["sanitize", str(corpus), "--method", "regex", "--out", out], capsys, "not a regular file")
    no_work(monkeypatch)
    for out in ("/dev/full", str(fifo)):
        refused(["report", "--checkpoint", str(ckpt), "--secret", "12", "--template", "PIN {d:2}", "--out", out],
                capsys, "not a regular file")
        refused(["extract", "--checkpoint", str(ckpt), "--template", "PIN {d:2}", "--trace", out], capsys,
                "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and stat.S_ISFIFO(os.stat(fifo).st_mode)


# --- two sessions, one name -----------------------------------------------------------------------------------
def test_claim_unique_never_gives_one_name_twice(tmp_path, monkeypatch):
    names = []
    lock = threading.Lock()

    def claim():
        for _ in range(25):
            p = claim_unique(tmp_path / "models", "lstm1x64", ".safetensors")
            with lock:
                names.append(p)
    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 100 and all(p.is_file() for p in names)
    # a name already taken (by another session, or planted as a link) is skipped, never reused or followed
    import secrets
    tokens = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb", "cccccccc", "cccccccc", "dddddddd"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tokens))
    first = claim_unique(tmp_path / "f", "m", ".x")
    second = claim_unique(tmp_path / "f", "m", ".x")
    assert first != second and first.name.endswith("aaaaaaaa.x") and second.name.endswith("bbbbbbbb.x")
    d1 = claim_unique(tmp_path / "d", "audit-none", directory=True)
    d2 = claim_unique(tmp_path / "d", "audit-none", directory=True)
    assert d1.is_dir() and d2.is_dir() and d1 != d2


def test_two_app_trainings_in_one_second_get_two_models(tmp_path, small_corpus):
    from ssviz.train import TrainConfig
    from ui.jobs import train_and_save
    config = TrainConfig(epochs=1).validate()
    jobs = [train_and_save(small_corpus, config, None, tmp_path, "lstm1x64") for _ in range(3)]
    keys = {j.key for j in jobs}
    made = sorted(p.name for p in tmp_path.iterdir())
    assert len(keys) == 3 and len(made) == 3 and all(n.startswith("lstm1x64-") for n in made)


def test_failed_app_training_removes_its_placeholder(tmp_path, monkeypatch, small_corpus):
    import ssviz.train as train_mod
    from ssviz.train import TrainConfig
    from ui.jobs import train_and_save

    def stopped(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(train_mod, "train", stopped)
    job = train_and_save(small_corpus, TrainConfig(epochs=1).validate(), None, tmp_path, "lstm1x8")
    job.start()
    job.thread.join(30)
    assert list(tmp_path.iterdir()) == []


# --- counts bounded by the machine ----------------------------------------------------------------------------
def test_workers_are_capped_at_the_cpus(capfd):
    import tracemalloc

    from ssviz.executor import LocalExecutor, make_executor
    tracemalloc.start()
    start = time.perf_counter()
    for ex in (LocalExecutor(10**9), make_executor("local", workers=10**6)):
        with ex:
            assert ex.cpus == available_cpus()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - start < 10 and peak < 50 << 20
    err = capfd.readouterr().err
    assert "workers 1,000,000,000 capped" in err and "workers 1,000,000 capped" in err


@pytest.mark.parametrize("threads", ["10000", "100000"])
def test_threads_are_capped_at_the_cpus(files, capsys, threads):
    ckpt, _ = files
    try:
        assert main(["extract", "--checkpoint", str(ckpt), "--template", "PIN {d:2}", "--algorithm", "beam",
                     "--threads", threads, "--json"]) == 0
        assert torch.get_num_threads() <= available_cpus()
        assert main(["score", "--checkpoint", str(ckpt), "--template", "PIN {d:2}", "--secret", "12",
                     "--threads", threads]) == 0
        assert torch.get_num_threads() <= available_cpus()
    finally:
        torch.set_num_threads(1)
    err = capsys.readouterr().err
    assert err.count("capped at the") == 2


@pytest.mark.parametrize("argv", [
    ["enron-synth", "OUT", "--users", "1000000000"],
    ["enron-synth", "OUT", "--messages", "-5"],
    ["enron", "M", "--exposure-samples", "-1"],
    ["enron", "M", "--search-nodes", "10000000000000"],
    ["sweep", "c.txt", "--canary", "PIN {d:2}", "--grid", "hidden=8", "--seeds", "1000000000"],
    ["audit", "c.txt", "--seeds", "1000000000"],
    ["extract", "--checkpoint", "m", "--template", "PIN {d:2}", "--top", "1000000000"],
    ["exposure", "--checkpoint", "m", "--template", "PIN {d:2}", "--secret", "1", "--shard-size", "10000000000"],
])
def test_count_options_have_an_upper_bound(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "expected a whole number from" in capsys.readouterr().err


def test_enron_synth_bounds_the_mails_it_writes(tmp_path, capsys):
    refused(["enron-synth", str(tmp_path / "o"), "--users", "10000", "--messages", "100000"], capsys, "at most")
    assert not (tmp_path / "o").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out in ("/dev/null", str(fifo)):  # a folder is written: a device or FIFO is refused in one line
        refused(["enron-synth", out, "--users", "1", "--messages", "3"], capsys, "not a folder")


# --- --address that is not a Ray head, and credentials in messages ---------------------------------------------
@pytest.fixture()
def not_ray_heads():
    """Three local addresses that are not Ray heads: a closed port, a silent listener, a web server."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # the server's own log would mix into the CLI's stderr
            pass
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    serving = threading.Thread(target=web.serve_forever, daemon=True)
    serving.start()
    try:
        yield [closed_port, silent.getsockname()[1], web.server_address[1]]
    finally:
        web.shutdown()
        web.server_close()
        silent.close()


@pytest.mark.slow
def test_addresses_that_are_not_ray_heads_fail_fast_with_one_line(not_ray_heads, monkeypatch):
    import ssviz.executor as executor
    pytest.importorskip("ray")
    monkeypatch.setattr(executor, "ADDRESS_SECONDS", 3.0)
    for port in not_ray_heads:
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", f"ray://alice:s3cretPW@127.0.0.1:{port}"):
            start = time.monotonic()
            with pytest.raises(SsvizError) as e:
                executor.make_executor("ray", address=address)
            took = time.monotonic() - start
            msg = str(e.value)
            assert took < 20, (address, took)
            assert f"127.0.0.1:{port}" in msg and "\n" not in msg and "no Ray head" in msg
            assert "s3cretPW" not in msg and "alice" not in msg


def test_default_address_timeout_is_bounded():
    from ssviz.executor import ADDRESS_SECONDS
    assert 0 < ADDRESS_SECONDS <= 15


@pytest.mark.slow
def test_cli_address_error_hides_the_password(files, not_ray_heads, capsys, monkeypatch):
    import ssviz.executor as executor
    pytest.importorskip("ray")
    monkeypatch.setattr(executor, "ADDRESS_SECONDS", 2.0)
    ckpt, _ = files
    for address in (f"ray://alice:s3cretPW@127.0.0.1:{not_ray_heads[0]}", f"bob:hunter2@127.0.0.1:{not_ray_heads[2]}",
                    f"ray://carol:p@ss@127.0.0.1:{not_ray_heads[1]}"):
        err = refused(["exposure", "--checkpoint", str(ckpt), "--template", "PIN {d:2}", "--secret", "12",
                       "--method", "exact", "--executor", "ray", "--address", address,
                       "--shards-db", str(ckpt.parent / "s.duckdb")], capsys, "***@127.0.0.1")
        for secret in ("s3cretPW", "hunter2", "p@ss", "alice", "bob", "carol"):
            assert secret not in err


def test_hide_credentials_variants():
    from ssviz.messages import hide_credentials as hide
    assert hide("ray://alice:s3cretPW@host:10001") == "ray://***@host:10001"
    assert hide("cannot reach ray://a:p@w@h:1: refused") == "cannot reach ray://***@h:1: refused"
    assert hide("bob:hunter2@10.0.0.1:6379") == "***@10.0.0.1:6379"
    assert hide("https://token@example.com/x") == "https://***@example.com/x"
    for plain in ("127.0.0.1:6379", "auto", "error: x@y", "ray://host:10001"):
        assert hide(plain) == plain
