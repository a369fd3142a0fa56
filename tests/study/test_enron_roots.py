"""An archive holding more than one maildir root: users of the same name must never merge."""

from __future__ import annotations

import pytest

from ssviz.enron.maildir import build_corpora, member_root
from ssviz.errors import SsvizError
from tests.study.test_enron_maildir import make_tar, make_zip, message

TWO_ROOTS = [
    {"a/maildir/doe-j/sent/1.": message("From the first tree."), "b/maildir/doe-j/sent/1.": message("From the second.")},
    {"maildir/doe-j/sent/1.": message("Under maildir."), "doe-j/sent/2.": message("At the top.")},
    {"maildir/doe-j/sent/1.": message("Outer tree."),
     "maildir/doe-j/sent/maildir/doe-j/sent/2.": message("A tree inside a sent folder.")},
    {"x/maildir/doe-j/sent_items/1.": message("One."), "y/maildir/smith-b/sent/1.": message("Two."),
     "y/maildir/doe-j/_sent_mail/1.": message("Three.")},
]


@pytest.mark.parametrize("members", TWO_ROOTS)
@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_two_maildir_roots_are_refused_in_one_line(tmp_path, members, kind):
    path = tmp_path / f"mail.{kind}"
    if kind == "zip":
        make_zip(path, members)
    else:
        make_tar(path, members, mode="w:gz" if kind == "tar.gz" else "w")
    with pytest.raises(SsvizError, match="more than one maildir root") as info:
        build_corpora(path, tmp_path / "out")
    assert "\n" not in str(info.value) and "mail." in str(info.value)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_zip_is_refused_before_any_mail_is_written(tmp_path, kind):
    path = tmp_path / f"mail.{kind}"
    (make_zip if kind == "zip" else make_tar)(path, TWO_ROOTS[0])
    with pytest.raises(SsvizError):
        build_corpora(path, tmp_path / "out")
    if kind == "zip":
        assert not any((tmp_path / "out").glob("*.txt"))


@pytest.mark.parametrize("members", [
    {"maildir/doe-j/sent/1.": message("One."), "maildir/smith-b/sent/1.": message("Two."), "readme.txt": b"hi"},
    {"enron/maildir/doe-j/sent/1.": message("One."), "enron/maildir/doe-j/inbox/1.": message("Not sent."),
     "other/notes/x.txt": b"not mail"},
    {"doe-j/sent/1.": message("One."), "smith-b/sent/1.": message("Two.")},
])
def test_one_root_reads_as_before(tmp_path, members):
    corpora = build_corpora(make_zip(tmp_path / "m.zip", members), tmp_path / "out")
    assert corpora and all(c.messages >= 1 for c in corpora.values())


def test_member_root():
    assert member_root("a/maildir/doe-j/sent/1.") == "a/maildir/"
    assert member_root("doe-j/sent/1.") == ""
    assert member_root("maildir\\doe-j\\sent\\1.") == "maildir/"
