"""Reading a maildir (directory, ``.tar.gz`` or ``.zip``) into one text corpus per user.

Layout (the public Enron release): ``maildir/<user>/<folder>[/<sub>...]/<n>.``
(file names end in a dot). Preprocessing follows the paper's section 7.2:

* sent folders only (``sent``, ``_sent_mail``, ``sent_items``, any case, nested
  subfolders included);
* the body only: no headers, no attachments (non-text MIME parts and
  ``<<file.doc>>`` markers), decoded as UTF-8, else latin-1;
* the text being replied to or forwarded is cut (``-----Original Message-----``,
  ``Forwarded by``, Lotus Notes and Outlook header blocks, ``... wrote:``,
  ``>`` lines);
* automated mail and mail sent to the whole company are dropped;
* duplicates (Enron keeps most sent mail in two folders) are dropped.

Everything streams: archives are read member by member and each user's corpus
is appended to its own file, so memory holds one message at a time (plus a set
of body hashes per user to drop duplicates).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ssviz.enron.scanner import MESSAGE_SEPARATOR
from ssviz.errors import SsvizError, StoppedError, stop_requested

SENT_FOLDERS = frozenset({"sent", "_sent_mail", "sent_items"})
MAX_MESSAGE_BYTES = 5_000_000  # larger files are attachment dumps, not mail someone typed
COMPANY_WIDE = re.compile(r"all[._ ]?(employees|enron|worldwide|users|ena|houston)|everyone@|"
                          r"enron\.announcements|announcements?@|distribution@", re.IGNORECASE)
AUTOMATED_SENDER = re.compile(r"no[._-]?reply|no\.address|mailer-daemon|postmaster|announce|"
                              r"arsystem|outlook\.team|bounce", re.IGNORECASE)
AUTOMATED_SUBJECT = re.compile(r"^\s*(out of (the )?office|auto(matic)?[ -]?reply|undeliver|delivery (status|failure))",
                               re.IGNORECASE)
MAX_RECIPIENTS = 50
_QUOTE_STARTS = re.compile("|".join((
    r"^[ \t]*-+ *Original Message *-+",
    r"^[ \t]*-+ *Forwarded by",
    r"^[ \t]*-{3,} *Forwarded",
    r"^[ \t]*Begin forwarded message",
    r"^[ \t]*-+ *Inline attachment follows",
    r"^[ \t]*From: .*\n[ \t]*(Sent|Date): ",                                        # Outlook
    r"^[^\n]*\S@\S+[ \t]*\n[ \t]*\d{1,2}/\d{1,2}/\d{2,4} \d{1,2}:\d{2} ?[AP]M",          # Lotus Notes
    r"^[ \t]*\"?[^\n\"]{1,80}\"? <[^>\n]+> on \d{1,2}/\d{1,2}/\d{2,4}",
    r"^[ \t]*To: [^\n]*\n[ \t]*cc: ",
    r"^[^\n]*\bwrote: *$",
)), re.IGNORECASE | re.MULTILINE)
_ATTACHMENT_MARK = re.compile(r"<<[^<>\n]{1,200}>>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class RawMessage:
    user: str
    folder: str   # the path below the user, e.g. "sent_items/2001"
    name: str
    data: bytes


@dataclass
class UserCorpus:
    """One user's kept mail, written to ``path`` (messages joined by a blank-lines separator)."""

    user: str
    path: Path
    messages: int = 0
    chars: int = 0
    dropped: dict = field(default_factory=lambda: {"duplicate": 0, "automated": 0, "empty": 0, "too_large": 0})

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8") if self.path.exists() else ""


# --- locating messages ---------------------------------------------------------------------
def split_member(parts: tuple[str, ...]) -> tuple[str, str, str] | None:
    """``(user, folder, name)`` of a message path, or None when it is not in a sent folder.

    Paths are read relative to the last ``maildir`` component when there is
    one, else relative to the archive or directory root.
    """
    parts = tuple(p for p in parts if p not in ("", "."))
    if "maildir" in parts:
        parts = parts[len(parts) - parts[::-1].index("maildir"):]
    if len(parts) < 3 or parts[-1].startswith(".") or ".." in parts:
        return None
    user, folders, name = parts[0], parts[1:-1], parts[-1]
    if folders[0].lower() not in SENT_FOLDERS:
        return None
    return user, "/".join(folders), name


def _wanted(user: str, users) -> bool:
    return users is None or user in users


def iter_raw_messages(source, users=None) -> Iterator[RawMessage]:
    """Sent messages of ``source`` (a directory, ``.tar``/``.tar.gz``/``.tgz`` or ``.zip``), streamed."""
    path = Path(source)
    users = set(users) if users else None
    if path.is_dir():
        yield from _iter_dir(path, users)
    elif path.is_file() and zipfile.is_zipfile(path):
        yield from _iter_zip(path, users)
    elif path.is_file() and _is_tar(path):
        yield from _iter_tar(path, users)
    elif path.exists():
        raise SsvizError(f"{path} is neither a directory, a .tar(.gz) nor a .zip archive")
    else:
        raise SsvizError(f"maildir not found: {path}")


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _iter_dir(path: Path, users) -> Iterator[RawMessage]:
    root = path / "maildir" if (path / "maildir").is_dir() else path
    for user_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if not _wanted(user_dir.name, users):
            continue
        for folder in sorted(p for p in user_dir.iterdir() if p.is_dir() and p.name.lower() in SENT_FOLDERS):
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames.sort()
                for fname in sorted(filenames, key=_natural):
                    f = Path(dirpath) / fname
                    hit = split_member(f.relative_to(root).parts)
                    if hit is None or not f.is_file():
                        continue
                    yield _read_limited(hit, f.stat().st_size, f.read_bytes)


def _iter_zip(path: Path, users) -> Iterator[RawMessage]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            hit = split_member(tuple(info.filename.replace("\\", "/").split("/")))
            if hit and _wanted(hit[0], users):
                yield _read_limited(hit, info.file_size, lambda: zf.read(info))


def _iter_tar(path: Path, users) -> Iterator[RawMessage]:
    with tarfile.open(path, mode="r|*") as tf:  # stream mode: one pass, no index held
        for member in tf:
            if not member.isfile():
                continue
            hit = split_member(tuple(member.name.split("/")))
            if hit and _wanted(hit[0], users):
                yield _read_limited(hit, member.size, lambda: tf.extractfile(member).read())


def _read_limited(hit, size: int, read) -> RawMessage:
    user, folder, name = hit
    return RawMessage(user, folder, name, b"" if size > MAX_MESSAGE_BYTES else read())


def _natural(name: str):
    """``2.`` before ``10.``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --- one message -------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """UTF-8 when it is, latin-1 otherwise (every byte string is valid latin-1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def is_automated(msg) -> bool:
    """Automated or company-wide mail, which the paper filters out."""
    sender = str(msg.get("From", "")) + " " + str(msg.get("X-From", ""))
    recipients = " ".join(str(msg.get(h, "")) for h in ("To", "Cc", "X-To"))
    if AUTOMATED_SENDER.search(sender) or COMPANY_WIDE.search(recipients):
        return True
    if AUTOMATED_SUBJECT.search(str(msg.get("Subject", ""))):
        return True
    if str(msg.get("Auto-Submitted", "no")).strip().lower() != "no":
        return True
    if str(msg.get("Precedence", "")).strip().lower() in ("bulk", "list", "junk"):
        return True
    return recipients.count("@") > MAX_RECIPIENTS


def message_body(msg) -> str:
    """The typed text of a message: text/plain parts that are not attachments."""
    texts = []
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if part.is_multipart() or part.get_content_type() not in ("text/plain", "text"):
            continue
        if "attachment" in str(part.get("Content-Disposition", "")).lower():
            continue
        payload = part.get_payload(decode=True)
        if payload:
            texts.append(decode_text(payload))
    return "\n".join(texts)


def strip_quoted(body: str) -> str:
    """Cut replied-to and forwarded text; drop ``>`` lines and attachment markers."""
    m = _QUOTE_STARTS.search(body)
    if m:
        body = body[:m.start()]
    body = _ATTACHMENT_MARK.sub("", body)
    return "\n".join(line for line in body.split("\n") if not line.lstrip().startswith(">"))


def normalize(body: str) -> str:
    """Unix newlines, no control characters or trailing spaces, at most one blank line in a row
    (so the corpus separator of three newlines only ever separates messages)."""
    body = _CONTROL.sub("", body.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
    body = "\n".join(line.rstrip() for line in body.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def clean_message(data: bytes) -> tuple[str | None, str]:
    """``(body, "")`` for a message to keep, ``(None, reason)`` for one to drop."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if is_automated(msg):
        return None, "automated"
    body = normalize(strip_quoted(message_body(msg)))
    return (body, "") if body else (None, "empty")


# --- corpora ---------------------------------------------------------------------------
def safe_name(user: str) -> str:
    name = re.sub(r"[^\w.-]", "_", user)
    return name if name.strip(".") else "_"


def build_corpora(source, out_dir, *, users=None, on_user: Callable[[UserCorpus], None] | None = None,
                  stop=None) -> dict[str, UserCorpus]:
    """Write ``<out_dir>/<user>.txt`` for every user with sent mail; return their sizes.

    ``on_user`` is called as each user's mail is finished (for progress).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpora: dict[str, UserCorpus] = {}
    seen: dict[str, set[bytes]] = {}
    current, handle = None, None
    try:
        for raw in iter_raw_messages(source, users):
            if stop_requested(stop):
                raise StoppedError("stopped while reading the maildir")
            if raw.user != current:
                if handle:
                    handle.close()
                    if on_user:
                        on_user(corpora[current])
                current = raw.user
                if raw.user not in corpora:
                    path = out_dir / f"{safe_name(raw.user)}.txt"
                    path.write_text("", encoding="utf-8")
                    corpora[raw.user] = UserCorpus(raw.user, path)
                    seen[raw.user] = set()
                handle = corpora[raw.user].path.open("a", encoding="utf-8")
            corpus = corpora[raw.user]
            if not raw.data:
                corpus.dropped["too_large"] += 1
                continue
            body, reason = clean_message(raw.data)
            if body is None:
                corpus.dropped[reason] += 1
                continue
            digest = hashlib.sha1(body.encode("utf-8")).digest()
            if digest in seen[raw.user]:
                corpus.dropped["duplicate"] += 1
                continue
            seen[raw.user].add(digest)
            handle.write((MESSAGE_SEPARATOR if corpus.messages else "") + body)
            corpus.messages += 1
            corpus.chars += len(body) + (len(MESSAGE_SEPARATOR) if corpus.messages > 1 else 0)
    finally:
        if handle:
            handle.close()
    if current is not None and on_user:
        on_user(corpora[current])
    return corpora
