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

Mail is untrusted input: every pattern over it runs in linear time; symlinks,
FIFOs, unreadable files and corrupt, linked or escaping archive members are
skipped and named in the log (the first :data:`MAX_NAMED_SKIPS`), a damaged
archive keeps what came before the damage; per-user files are named by
:func:`user_key` (a hash of the exact name) with mode 0600, and the log has a
bounded number of lines (:class:`IngestLog`).
"""

from __future__ import annotations

import email
import email.policy
import errno
import hashlib
import os
import re
import stat
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ssviz.archives import member_parts
from ssviz.errors import MissingFileError, SsvizError, StoppedError
from ssviz.messages import clip
from ssviz.progress import stop_requested
from ssviz.scan import MESSAGE_SEPARATOR
from ssviz.tempfiles import open_private

SENT_FOLDERS = frozenset({"sent", "_sent_mail", "sent_items"})
MAX_MESSAGE_BYTES = 5_000_000  # larger files are attachment dumps, not mail someone typed
COMPANY_WIDE = re.compile(r"all[._ ]?(employees|enron|worldwide|users|ena|houston)|everyone@|"
                          r"enron\.announcements|announcements?@|distribution@", re.IGNORECASE)
AUTOMATED_SENDER = re.compile(r"no[._-]?reply|no\.address|mailer-daemon|postmaster|announce|"
                              r"arsystem|outlook\.team|bounce", re.IGNORECASE)
AUTOMATED_SUBJECT = re.compile(r"^\s*(out of (the )?office|auto(matic)?[ -]?reply|undeliver|delivery (status|failure))",
                               re.IGNORECASE)
MAX_RECIPIENTS = 50
MAX_NAMED_SKIPS = 20      # skipped files named one by one in the log; the rest are counted
MAX_USER_LINES = 100      # users reported one by one in the log; the rest are summarized
PROGRESS_SECONDS = 5.0    # at most one "read so far" line per this many seconds

# Where replied-to or forwarded text starts. Mail is untrusted and a message may be 5 MB on one
# line, so every pattern runs in time linear in the text: possessive quantifiers (``*+``) where
# the next token cannot match what they would give back, and the two rules that look for
# something at the end of a line (Lotus Notes' ``name@domain`` before a date line, ``... wrote:``)
# match from that thing instead of scanning each line from its start; :func:`quote_start` moves
# a match to its line's start. Three patterns searched one after the other keep the regex
# engine's literal-prefix scan (one alternation of all three is ten times slower). The lines
# matched are exactly those of the line-anchored patterns these replace (the tests compare them).
_DATE = r"\d{1,2}/\d{1,2}/\d{2,4}"
_ADDRESS_ON = r"<[^>\n]++> on " + _DATE
_QUOTE_STARTS = (
    re.compile(
        r"^[ \t]*+(?:"
        r"-++ *+(?:Original Message *-|Forwarded by|Inline attachment follows)"
        r"|-{3,}+ *+Forwarded"
        r"|Begin forwarded message"
        r"|From: .*+\n[ \t]*+(?:Sent|Date): "                           # Outlook
        r"|To: [^\n]*+\n[ \t]*+cc: "                                   # Lotus Notes header block
        r'|"?[^\n"]{1,80}"? ' + _ADDRESS_ON +                           # "Name" <addr> on 05/14/2001
        r"|(?<=[ \t] )" + _ADDRESS_ON +                                # ... a name of blanks only
        r'|(?<=[ \t])" ' + _ADDRESS_ON +
        r")", re.IGNORECASE | re.MULTILINE),
    re.compile(r"@(?<=\S@)[^\s@]*\S[ \t]*+\n[ \t]*+" + _DATE + r" \d{1,2}:\d{2} ?[AP]M",  # Lotus: name@ECT
               re.IGNORECASE),
    re.compile(r"wrote(?<=\bwrote): *+$", re.IGNORECASE | re.MULTILINE),
)
_ATTACHMENT_MARK = re.compile(r"<<[^<>\n]{1,200}>>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n{3,}")
_DIGITS = re.compile(r"([0-9]+)")
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".tbz2", ".txz")
# what a damaged archive raises while being read (zipfile, tarfile, gzip, bz2, lzma)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                   RuntimeError, NotImplementedError, ValueError)


@dataclass(frozen=True)
class RawMessage:
    user: str
    folder: str   # the path below the user, e.g. "sent_items/2001"
    name: str
    data: bytes
    too_large: bool = False  # over MAX_MESSAGE_BYTES: not read (``data`` is empty)


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


def shown(name: str, limit: int = 80) -> str:
    """A user, file or member name as it may appear in a log line: short, one line, control characters escaped."""
    return clip(name if name.isprintable() else repr(name)[1:-1], limit)


class IngestLog:
    """What ingestion tells the user, in a bounded number of lines whatever the archive holds.

    Skipped files are named one by one up to :data:`MAX_NAMED_SKIPS`, then counted;
    finished users are reported one by one up to :data:`MAX_USER_LINES`, then
    summarized; a "read so far" line comes at most every :data:`PROGRESS_SECONDS`.
    """

    def __init__(self, log: Callable[[str], None] | None, source_name: str, clock=time.monotonic):
        self.log = log or (lambda msg: None)
        self.clock = clock
        self.source = source_name
        self.skipped = 0
        self.users_reported = 0
        self.more_users = [0, 0, 0]  # users, messages, characters not reported one by one
        self.read = 0
        self.users_seen: set[str] = set()
        self.next_progress = clock() + PROGRESS_SECONDS

    def skip(self, name: str, reason: str) -> None:
        self.skipped += 1
        if self.skipped <= MAX_NAMED_SKIPS:
            self.log(f"skipped {shown(name)}: {reason}")

    def message(self, user: str) -> None:
        self.read += 1
        self.users_seen.add(user)
        if self.clock() >= self.next_progress:
            self.next_progress = self.clock() + PROGRESS_SECONDS
            self.log(f"read {self.read:,} messages of {len(self.users_seen):,} user(s) from {self.source} so far")

    def user_done(self, corpus: UserCorpus) -> None:
        if self.users_reported < MAX_USER_LINES:
            self.users_reported += 1
            self.log(f"{shown(corpus.user)}: {corpus.messages} messages, {corpus.chars:,} characters")
        else:
            for i, n in enumerate((1, corpus.messages, corpus.chars)):
                self.more_users[i] += n

    def finish(self) -> None:
        users, messages, chars = self.more_users
        if users:
            self.log(f"... and {users:,} more user(s): {messages:,} messages, {chars:,} characters")
        if self.skipped > MAX_NAMED_SKIPS:
            self.log(f"... and {self.skipped - MAX_NAMED_SKIPS:,} more unreadable or unsafe file(s) skipped "
                     f"({self.skipped:,} in all)")


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


def member_root(name: str) -> str:
    """The folder a member's user names are read relative to: up to its last ``maildir`` ("" for the top)."""
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if "maildir" not in parts:
        return ""
    return "/".join(parts[:len(parts) - parts[::-1].index("maildir")]) + "/"


def _two_roots(path: Path, roots) -> SsvizError:
    shown_roots = ", ".join(repr(r or "(top)") for r in sorted(roots)[:3])
    return SsvizError(f"{shown(str(path))} holds more than one maildir root ({shown_roots}): users of the same name "
                      "would be merged; archive one maildir at a time")


def _escapes(name: str) -> bool:
    """An archive member named outside the archive's folder (``..``, an absolute path, a drive, a NUL)."""
    return member_parts(name) is None


def _wanted(user: str, users) -> bool:
    return users is None or user in users


def iter_raw_messages(source, users=None, log: IngestLog | None = None) -> Iterator[RawMessage]:
    """Sent messages of ``source`` (a directory, ``.tar``/``.tar.gz``/``.tgz`` or ``.zip``), streamed.

    Unreadable or unsafe entries (symlinks, FIFOs, corrupt or escaping archive
    members) are skipped and reported to ``log``; a truncated archive yields
    what came before the damage.
    """
    path = Path(source)
    users = set(users) if users else None
    log = log or IngestLog(None, path.name)
    if path.is_dir():
        yield from _iter_dir(path, users, log)
    elif path.is_file() and _is_zip(path):
        yield from _iter_zip(path, users, log)
    elif path.is_file() and _is_tar(path):
        yield from _iter_tar(path, users, log)
    elif path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES):
        raise SsvizError(f"{shown(str(path))} is not a readable archive (truncated or corrupt?)")
    elif path.exists():
        raise SsvizError(f"{shown(str(path))} is neither a directory, a .tar(.gz) nor a .zip archive")
    else:
        raise MissingFileError(f"maildir not found: {shown(str(path))}")


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except _ARCHIVE_ERRORS:
        return False


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except _ARCHIVE_ERRORS:
        return False


def _entries(folder: str, log: IngestLog, root: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        log.skip(os.path.relpath(folder, root), f"unreadable ({e.strerror or e})")
        return []


def _iter_dir(path: Path, users, log: IngestLog) -> Iterator[RawMessage]:
    """Walks the tree without following symbolic links, and opens files without following them either."""
    root = str(path / "maildir" if (path / "maildir").is_dir() else path)
    for user_entry in _entries(root, log, root):
        if user_entry.is_symlink():
            log.skip(user_entry.name, "a symbolic link")
            continue
        if not user_entry.is_dir(follow_symlinks=False) or not _wanted(user_entry.name, users):
            continue
        user = user_entry.name
        for folder in _entries(user_entry.path, log, root):
            if folder.name.lower() not in SENT_FOLDERS:
                continue
            if folder.is_symlink():
                log.skip(f"{user}/{folder.name}", "a symbolic link")
                continue
            if not folder.is_dir(follow_symlinks=False):
                continue
            walk = os.walk(folder.path, onerror=lambda e: log.skip(os.path.relpath(e.filename, root),
                                                                    f"unreadable ({e.strerror or e})"))
            for dirpath, dirnames, filenames in walk:
                links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
                for d in links:
                    log.skip(os.path.relpath(os.path.join(dirpath, d), root), "a symbolic link")
                dirnames[:] = sorted(set(dirnames) - set(links))
                sub = os.path.relpath(dirpath, user_entry.path).replace(os.sep, "/")
                for fname in sorted(filenames, key=_natural):
                    if fname.startswith("."):
                        continue
                    f = os.path.join(dirpath, fname)
                    data, problem = _read_file(f)
                    if problem:
                        log.skip(os.path.relpath(f, root), problem)
                        continue
                    yield RawMessage(user, sub, fname, data or b"", too_large=data is None)


def _read_file(path: str) -> tuple[bytes | None, str]:
    """``(data, "")``, ``(None, "")`` for a file over the size limit, or ``(None, reason)`` to skip it.

    Opened without following a symlink and without blocking on a FIFO; only regular files are read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            return None, "a symbolic link"
        return None, f"unreadable ({e.strerror or e})"
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None, "not a regular file"
            if st.st_size > MAX_MESSAGE_BYTES:
                return None, ""
            data = f.read(MAX_MESSAGE_BYTES + 1)
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    return (None, "") if len(data) > MAX_MESSAGE_BYTES else (data, "")


def _archive_member(name: str, users, log: IngestLog):
    """The ``(user, folder, name)`` of a wanted member, None otherwise (escaping names are logged)."""
    if _escapes(name):
        log.skip(name, "its path leaves the archive's folder")
        return None
    hit = split_member(tuple(name.replace("\\", "/").split("/")))
    return hit if hit and _wanted(hit[0], users) else None


def _iter_zip(path: Path, users, log: IngestLog) -> Iterator[RawMessage]:
    try:
        zf = zipfile.ZipFile(path)
    except _ARCHIVE_ERRORS as e:
        raise SsvizError(f"{shown(str(path))} is not a readable .zip archive ({clip(e, 80)})") from None
    with zf:
        # every root is known from the index before any mail is read: two roots are refused up front
        roots = {member_root(i.filename) for i in zf.infolist() if not i.is_dir() and not _escapes(i.filename)
                 and split_member(tuple(i.filename.replace("\\", "/").split("/")))}
        if len(roots) > 1:
            raise _two_roots(path, roots)
        for info in zf.infolist():
            if info.is_dir():
                continue
            hit = _archive_member(info.filename, users, log)
            if hit is None:
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                log.skip(info.filename, "a symbolic link")
                continue
            if info.file_size > MAX_MESSAGE_BYTES:
                yield RawMessage(*hit, b"", too_large=True)
                continue
            try:
                with zf.open(info) as f:
                    data = f.read(MAX_MESSAGE_BYTES + 1)
            except _ARCHIVE_ERRORS as e:
                log.skip(info.filename, f"unreadable member ({clip(e, 80)})")
                continue
            yield RawMessage(*hit, b"", too_large=True) if len(data) > MAX_MESSAGE_BYTES else RawMessage(*hit, data)


class _TarInfo(tarfile.TarInfo):
    """Notes why a tar stream ended: ``tarfile`` ends quietly on a truncated or corrupt header."""

    @classmethod
    def fromtarfile(cls, tf):
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as e:
            tf.ssviz_end = e
            raise


def _iter_tar(path: Path, users, log: IngestLog) -> Iterator[RawMessage]:
    """One pass in stream mode (no index held); damage ends the pass, keeping what came before."""
    try:
        tf = tarfile.open(path, mode="r|*", tarinfo=_TarInfo)
    except _ARCHIVE_ERRORS as e:
        raise SsvizError(f"{shown(str(path))} is not a readable tar archive ({clip(e, 80)})") from None
    members = 0
    root = None

    def damaged(reason) -> None:
        log.skip(path.name, f"truncated or corrupt after {members:,} member(s) ({clip(reason, 80)}); "
                            "the rest of the archive is not read")

    with tf:
        while True:
            try:
                member = tf.next()
                if member is None:
                    end = getattr(tf, "ssviz_end", None)
                    if end is not None and not isinstance(end, tarfile.EOFHeaderError):  # not the end marker
                        damaged(end or type(end).__name__)
                    return
                members += 1
                if not _escapes(member.name) and split_member(tuple(member.name.replace("\\", "/").split("/"))):
                    here = member_root(member.name)  # a stream has no index: refused when the second root shows
                    if root is not None and here != root:
                        raise _two_roots(path, {root, here})
                    root = here
                hit = _archive_member(member.name, users, log)
                if hit is None:
                    continue
                if member.issym() or member.islnk():
                    log.skip(member.name, "a link")
                    continue
                if not member.isfile():
                    if not member.isdir():
                        log.skip(member.name, "not a regular file")
                    continue
                if member.size > MAX_MESSAGE_BYTES:
                    message = RawMessage(*hit, b"", too_large=True)
                else:
                    message = RawMessage(*hit, tf.extractfile(member).read(MAX_MESSAGE_BYTES + 1))
            except _ARCHIVE_ERRORS as e:
                damaged(e)
                return
            yield message


def _natural(name: str):
    """``2.`` before ``10.`` (ASCII digit runs compare by value, whatever their length)."""
    return [(len(t.lstrip("0")), t.lstrip("0")) if i % 2 else (0, t) for i, t in enumerate(_DIGITS.split(name))]


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


def quote_start(body: str) -> int | None:
    """Offset of the line where replied-to or forwarded text starts, None when there is none (linear time)."""
    starts = [m.start() for m in (p.search(body) for p in _QUOTE_STARTS) if m]
    return body.rfind("\n", 0, min(starts)) + 1 if starts else None


def strip_quoted(body: str) -> str:
    """Cut replied-to and forwarded text; drop ``>`` lines and attachment markers."""
    cut = quote_start(body)
    if cut is not None:
        body = body[:cut]
    body = _ATTACHMENT_MARK.sub("", body)
    return "\n".join(line for line in body.split("\n") if not line.lstrip().startswith(">"))


def normalize(body: str) -> str:
    """Unix newlines, no control characters or trailing spaces, at most one blank line in a row
    (so the corpus separator of three newlines only ever separates messages)."""
    body = _CONTROL.sub("", body.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
    body = "\n".join(line.rstrip() for line in body.split("\n"))
    return _BLANK_LINES.sub("\n\n", body).strip()


def clean_message(data: bytes) -> tuple[str | None, str]:
    """``(body, "")`` for a message to keep, ``(None, reason)`` for one to drop."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if is_automated(msg):
        return None, "automated"
    body = normalize(strip_quoted(message_body(msg)))
    return (body, "") if body else (None, "empty")


# --- corpora ---------------------------------------------------------------------------
def user_key(user: str) -> str:
    """A file-name stem unique to the exact user name, on any file system.

    A readable part (lowercase ASCII letters, digits, ``-`` and ``_``, at most 40
    characters) for people browsing the folder, plus 16 hex digits of the name's
    SHA-256, so names that read the same (``a'b;c`` and ``a_b_c``, ``Doe`` and
    ``doe`` on a case-insensitive disk, look-alike letters, ``..``) never share a
    file. Used for the per-user corpora and the cached checkpoints.
    """
    readable = re.sub(r"[^a-z0-9_-]+", "_", user.lower()).strip("_-")[:40] or "user"
    digest = hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable}-{digest}"


def build_corpora(source, out_dir, *, users=None, on_user: Callable[[UserCorpus], None] | None = None,
                  log: Callable[[str], None] | None = None, stop=None) -> dict[str, UserCorpus]:
    """Write ``<out_dir>/<user_key(user)>.txt`` (mode 0600: it is raw mail) for every user with sent
    mail; return their sizes.

    ``on_user`` is called once per user when that user's mail is complete: as
    the next user starts in a directory, at the end for an archive (whose
    members may come in any order). ``log`` gets a bounded number of lines
    (see :class:`IngestLog`): finished users, skipped files, progress.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = IngestLog(log, shown(Path(source).name, 60))
    grouped = Path(source).is_dir()  # a directory is read one user at a time
    corpora: dict[str, UserCorpus] = {}
    seen: dict[str, set[bytes]] = {}
    current, handle = None, None

    def finished(user: str) -> None:
        report.user_done(corpora[user])
        if on_user:
            on_user(corpora[user])

    try:
        for raw in iter_raw_messages(source, users, report):
            if stop_requested(stop):
                raise StoppedError("stopped while reading the maildir")
            report.message(raw.user)
            if raw.user != current:
                if handle:
                    handle.close()
                    handle = None
                    if grouped:
                        finished(current)
                current = raw.user
                if raw.user not in corpora:
                    path = out_dir / f"{user_key(raw.user)}.txt"
                    open_private(path, "w").close()
                    corpora[raw.user] = UserCorpus(raw.user, path)
                    seen[raw.user] = set()
                handle = open_private(corpora[raw.user].path, "a", encoding="utf-8")
            corpus = corpora[raw.user]
            if raw.too_large:
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
    if grouped:
        if current is not None:
            finished(current)
    else:
        for user in corpora:
            finished(user)
    report.finish()
    return corpora
