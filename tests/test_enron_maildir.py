"""Maildir ingestion: layout, encodings, quoted text, filters, duplicates, archives."""

from __future__ import annotations

import tarfile
import zipfile

import pytest

from ssviz.enron.maildir import build_corpora, clean_message, iter_raw_messages, split_member, strip_quoted
from ssviz.enron.scanner import MESSAGE_SEPARATOR
from ssviz.errors import SsvizError

HEAD = "Message-ID: <{n}.JavaMail>\nFrom: jane.doe@enron.com\nTo: {to}\nSubject: {subject}\n\n"


def message(body: str, n: int = 1, to: str = "bob.smith@enron.com", subject: str = "hi") -> bytes:
    return (HEAD.format(n=n, to=to, subject=subject) + body).encode("utf-8")


@pytest.fixture()
def maildir(tmp_path):
    """doe-j: nested sent folders, trailing-dot names, a latin-1 file, a reply, a duplicate, an announcement."""
    root = tmp_path / "maildir" / "doe-j"
    files = {
        "sent/1.": message("Budget is approved."),
        "sent/2.": message("Same text twice.", 2),
        "_sent_mail/2.": message("Same text twice.", 2),                       # duplicate across folders
        "sent_items/2001/q3/10.": message("Nested folder text.", 3),          # nested subfolders
        "sent/3.": HEAD.format(n=4, to="x@enron.com", subject="m").encode() + "Meet at the café.".encode("latin-1"),
        "sent/4.": message("My answer is yes.\n\n -----Original Message-----\nFrom: Bob\nSent: Monday\n\n"
                           "Bob's question with SSN 219-09-9999.", 5),
        "sent/5.": message("Cake in the lobby!", 6, to="all.employees@enron.com"),  # company-wide
        "inbox/1.": message("Inbox mail is not this user's writing.", 7),
        "sent/.DS_Store": b"junk",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    other = tmp_path / "maildir" / "roe-k" / "SENT"
    other.mkdir(parents=True)
    (other / "1.").write_bytes(message("Case-insensitive folder names.", 8))
    return tmp_path


def corpus_texts(source, tmp_path, name="out", **kw) -> dict[str, str]:
    return {u: c.text() for u, c in build_corpora(source, tmp_path / name, **kw).items()}


def test_directory_layout_encodings_quotes_filters_duplicates(maildir, tmp_path):
    corpora = build_corpora(maildir, tmp_path / "out")
    jane = corpora["doe-j"]
    messages = jane.text().split(MESSAGE_SEPARATOR)
    assert sorted(messages) == sorted(["Budget is approved.", "Same text twice.", "Nested folder text.",
                                       "Meet at the café.", "My answer is yes."])
    assert jane.messages == 5 and jane.chars == len(jane.text())
    assert jane.dropped["duplicate"] == 1 and jane.dropped["automated"] == 1
    assert "219-09-9999" not in jane.text() and "Inbox" not in jane.text()
    assert corpora["roe-k"].text() == "Case-insensitive folder names."


def test_users_filter_and_missing_source(maildir, tmp_path):
    assert list(corpus_texts(maildir, tmp_path, users=["roe-k"])) == ["roe-k"]
    with pytest.raises(SsvizError, match="not found"):
        build_corpora(tmp_path / "nope", tmp_path / "out")


def test_tar_gz_and_zip_give_the_same_corpora_as_the_directory(maildir, tmp_path):
    expected = corpus_texts(maildir, tmp_path, "dir")
    tgz = tmp_path / "enron.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(maildir / "maildir", arcname="enron_mail_20150507/maildir")
    zpath = tmp_path / "enron.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted((maildir / "maildir").rglob("*")):
            if f.is_file():
                zf.write(f, "maildir/" + str(f.relative_to(maildir / "maildir")))
    assert corpus_texts(tgz, tmp_path, "tgz") == expected
    assert corpus_texts(zpath, tmp_path, "zip") == expected


def test_not_an_archive(tmp_path):
    bad = tmp_path / "mail.txt"
    bad.write_text("hello")
    with pytest.raises(SsvizError, match="neither a directory"):
        list(iter_raw_messages(bad))


def test_member_paths():
    assert split_member(("x", "maildir", "allen-p", "sent_items", "a", "12.")) == ("allen-p", "sent_items/a", "12.")
    assert split_member(("allen-p", "sent", "1.")) == ("allen-p", "sent", "1.")
    assert split_member(("allen-p", "inbox", "1.")) is None
    assert split_member(("allen-p", "sent", ".hidden")) is None


@pytest.mark.parametrize("quoted", [
    "\n-----Original Message-----\nFrom: Bob\nold text",
    "\n---------------------- Forwarded by Jane Doe/HOU/ECT on 05/14/2001 10:00 AM ---\nold text",
    "\nTim Belden@ECT\n05/14/2001 10:00 AM\nTo: Jane Doe/HOU/ECT@ECT\ncc:\nSubject: old text",
    "\nFrom: Bob Smith\nSent: Monday, May 14, 2001 10:00 AM\nold text",
    "\nOn Monday, Bob wrote:\nold text",
    "\n> old text\n> more old text",
])
def test_quoted_and_forwarded_text_is_cut(quoted):
    assert strip_quoted("New text." + quoted).strip() == "New text."


def test_automated_mail_and_attachments():
    assert clean_message(message("I am away.", subject="Out of Office AutoReply")) == (None, "automated")
    auto = b"From: no.address@enron.com\nTo: a@enron.com\n\nSystem notice"
    assert clean_message(auto) == (None, "automated")
    many = message("hello", to=", ".join(f"u{i}@enron.com" for i in range(60)))
    assert clean_message(many) == (None, "automated")
    mime = (b"From: jane@enron.com\nTo: bob@enron.com\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nSee attached <<deal.xls>>.\n"
            b"--XX\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\nSSN 219-09-9999\n"
            b"--XX\nContent-Type: application/pdf\n\nJVBERi0=\n--XX--\n")
    assert clean_message(mime) == ("See attached .", "")
