"""Finding the secrets already in a corpus: SSNs, card numbers, phone numbers, cloud and code-host keys.

Used by the per-user study (one user's mail) and by ``python -m ssviz scan`` /
the Model page (a whole training corpus, each secret then measured in a model:
:func:`scan_corpus`). Every kind of secret has a uniform random space, so its
exposure is defined.

Rules (deliberately simple and documented, so a stakeholder can check them):

* SSN: ``ddd-dd-dddd`` (or ``ddd dd dddd``) anywhere, or a bare 9-digit number within
  :data:`CONTEXT_WINDOW` characters after an SSN context word (``SSN``,
  ``social security``, ``soc. sec.``, ``SS#``). Numbers that can never be issued
  (area 000, 666 or 9xx, group 00, serial 0000) are skipped. Well-known test
  numbers such as ``123-45-6789`` are **kept**, unlike Presidio: a canary must be
  found.
* Card number: 13-19 digits, contiguous or in groups separated by single spaces
  or dashes (4-4-4-4, 4-6-5, 4-4-4-4-3), with a valid Luhn check digit.
* US phone number: ``(ddd) ddd-dddd``, ``ddd-ddd-dddd``, ``ddd.ddd.dddd`` or
  ``ddd ddd dddd`` with area code and exchange starting 2-9 (NANP).
* AWS access key ID: ``AKIA`` + 16 of ``[A-Z0-9]``; GitHub token: ``ghp_`` + 36
  of ``[A-Za-z0-9]``; not inside a longer word. Their templates keep the fixed
  prefix as literal text and make the random part a slot.
* Separators pasted from word processors and web pages count as the ASCII ones: every Unicode
  dash (class Pd, and the minus sign) as ``-``, every Unicode space (class Zs, e.g. no-break
  spaces) as a space. Positions and the text as written are those of the original text.
* Digits are ASCII ``0-9``: a number written in full-width or other scripts'
  digits is not reported (a template's ``{d:N}`` slots could not hold it), and
  no match touches a digit of any script.

Each distinct secret gets a :class:`~ssviz.templates.Template`: its most common
observed context (the text just before it, after the last digit and within
the same message, never holding another secret or anything that looks like a key or token)
followed by slots in its most common observed format.
"""

from __future__ import annotations

import functools
import re
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from ssviz.redaction import tail
from ssviz.templates import Template

CONTEXT_WINDOW = 40      # characters before a bare 9-digit number searched for an SSN word
TEMPLATE_CONTEXT = 32    # at most this many characters of observed context become the template prefix
MESSAGE_SEPARATOR = "\n\n\n"  # how the corpus joins messages (see maildir.build_corpus)

# Secrets are ASCII digits (``[0-9]``, not ``\d``, which also matches full-width, Arabic-Indic and
# other digits that a template's ``{d:N}`` slots do not contain). A match must not touch a digit
# of any script. Each pattern starts with ``[0-9]`` and checks what precedes it afterwards, so
# the regex engine skips ahead to the next digit instead of trying every position, and every
# repetition is bounded: scanning is linear in the text.
_START = r"[0-9](?<!\d[0-9])(?<!\d-[0-9])"   # an ASCII digit not preceded by a digit or "digit-"
_SSN_DASHED = re.compile(_START + r"[0-9]{2}([ -])[0-9]{2}\1[0-9]{4}(?!\d)(?!\1\d)")
_NINE = re.compile(_START + r"[0-9]{8}(?!\d)(?!-\d)")
_SSN_WORDS = re.compile(r"\b(?:ssn|s\.s\.n\.?|social\s+security|soc\.?\s*sec\.?|ss\s*#|ss\s+no\.?)",
                        re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.!?;,]\s+|\n")
_CARD_PATTERNS = (
    re.compile(_START + r"[0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{3})?(?!\d)(?!\1\d)"),
    re.compile(_START + r"[0-9]{3}([ -])[0-9]{6}\1[0-9]{5}(?!\d)(?!\1\d)"),
    re.compile(_START + r"[0-9]{12,18}(?!\d)(?!-\d)"),
)
_NOT_DIGIT = re.compile(r"[^0-9]")
_DIGIT_RUN = re.compile(r"[0-9]+")


@functools.lru_cache(maxsize=1)
def _separators() -> dict[int, str]:
    """Every non-ASCII Unicode dash (Pd, and the minus sign U+2212) -> ``-``, space (Zs) -> `` ``."""
    table = {0x2212: "-"}
    for cp in range(0x80, sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat == "Pd":
            table[cp] = "-"
        elif cat == "Zs":
            table[cp] = " "
    return table


def normalize_separators(text: str) -> str:
    """``text`` with Unicode dashes and spaces replaced by ASCII ``-`` and space, one character for one,
    so that offsets in the result are offsets in ``text``. Digits are left alone (ASCII-only matching)."""
    return text if text.isascii() else text.translate(_separators())


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` Luhn-valid."""
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise AssertionError("unreachable: one check digit always fits")


def ssn_issuable(digits: str) -> bool:
    """False for numbers the SSA never issues (area 000/666/9xx, group 00, serial 0000)."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_PHONE = re.compile(r"(?<![0-9A-Za-z(])(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})([-. ]))([2-9][0-9]{2})"
                    r"(?(3)\3|[-.])([0-9]{4})(?![0-9])(?!-[0-9])")
_AWS_KEY = re.compile(r"(?<![A-Za-z0-9])AKIA[A-Z0-9]{16}(?![A-Za-z0-9])")
_GITHUB_TOKEN = re.compile(r"(?<![A-Za-z0-9_])ghp_[A-Za-z0-9]{36}(?![A-Za-z0-9])")


@dataclass(frozen=True)
class Kind:
    """A kind of secret: how it is labelled, and how a written occurrence becomes a template's slots.

    ``literal`` is a fixed prefix kept as literal text (``AKIA``); the rest of the written
    secret is the random part: digit runs become ``{d:N}``, or the whole part one ``alphabet`` slot.
    """

    label: str
    literal: str = ""
    alphabet: str | None = None  # None: digit runs become {d:N} slots, separators stay literal


KINDS = {
    "ssn": Kind("SSN"),
    "ccn": Kind("card number"),
    "phone": Kind("US phone number"),
    "aws": Kind("AWS access key ID", literal="AKIA", alphabet="A-Z0-9"),
    "github": Kind("GitHub token", literal="ghp_", alphabet="A-Za-z0-9"),
}


@dataclass(frozen=True)
class Finding:
    """One occurrence: ``value`` is the random part (bare digits, or the key after its fixed prefix),
    ``text`` as written, ``start`` its offset."""

    type: str  # a key of KINDS
    value: str
    text: str
    start: int


def find_secrets(text: str, kinds=("ssn", "ccn")) -> list[Finding]:
    """Every occurrence of the ``kinds`` of secret in ``text``, in order of position (linear time).

    The study looks for SSNs and card numbers (the paper's section 7.2); a corpus scan for all of :data:`KINDS`.
    """
    found: list[Finding] = []
    taken: set[int] = set()  # offsets covered by a finding (each is at most 23 characters long)
    original, text = text, normalize_separators(text)  # same length: a match's span is the original's

    def add(kind: str, m: re.Match, digits: str) -> None:
        s, e = m.span()
        if not taken.isdisjoint(range(s, e)):
            return
        taken.update(range(s, e))
        found.append(Finding(kind, digits, original[s:e], s))

    unknown = set(kinds) - set(KINDS)
    if unknown:
        from ssviz.errors import SettingsError
        raise SettingsError(f"unknown kind(s) of secret {sorted(unknown)}: expected some of {sorted(KINDS)}")
    for kind, pattern in (("aws", _AWS_KEY), ("github", _GITHUB_TOKEN)):
        if kind in kinds:
            for m in pattern.finditer(text):
                add(kind, m, m.group(0)[len(KINDS[kind].literal):])
    if "ccn" in kinds:
        for pattern in _CARD_PATTERNS:
            for m in pattern.finditer(text):
                digits = _NOT_DIGIT.sub("", m.group(0))
                if luhn_valid(digits):
                    add("ccn", m, digits)
    if "ssn" in kinds:
        for m in _SSN_DASHED.finditer(text):
            digits = _NOT_DIGIT.sub("", m.group(0))
            if ssn_issuable(digits):
                add("ssn", m, digits)
        for m in _NINE.finditer(text):
            window = text[max(0, m.start() - CONTEXT_WINDOW):m.start()]
            if _SSN_WORDS.search(window) and ssn_issuable(m.group(0)):
                add("ssn", m, m.group(0))
    if "phone" in kinds:
        for m in _PHONE.finditer(text):
            add("phone", m, _NOT_DIGIT.sub("", m.group(0)))
    return sorted(found, key=lambda f: f.start)


@dataclass
class SecretSummary:
    """A distinct secret of one user: how often it occurs and in what context and format."""

    type: str
    value: str
    count: int = 0
    contexts: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)

    @property
    def last4(self) -> str:
        """The tail that redaction shows (at most a third of the secret; the name is historical)."""
        return tail(self.value)

    def template(self) -> Template:
        """Most common context + slots in the most common format, e.g. ``my SSN is {d:3}-{d:2}-{d:4}``."""
        context = self.contexts.most_common(1)[0][0] if self.contexts else ""
        written = self.formats.most_common(1)[0][0] if self.formats else self.value
        return Template(_escape(context or "\n") + format_slots(written, self.type))


def format_slots(written: str, kind: str = "ssn") -> str:
    """``4111-1111-1111-1111`` -> ``{d:4}-{d:4}-{d:4}-{d:4}``: digit runs become slots; a key keeps its
    fixed prefix and becomes one slot of its alphabet (``AKIA{[A-Z0-9]:16}``)."""
    k = KINDS.get(kind, KINDS["ssn"])
    if k.alphabet is not None:
        return _escape(k.literal) + f"{{[{k.alphabet}]:{len(written) - len(k.literal)}}}"
    return _DIGIT_RUN.sub(lambda m: f"{{d:{len(m.group(0))}}}", _escape(written))


def _escape(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")


def observed_context(text: str, start: int, width: int = TEMPLATE_CONTEXT) -> str:
    """The text before ``start`` in its clause: within the same message, after the last digit and
    the last sentence or clause end (``. ``, ``, ``, a newline), else starting at a word.

    Cutting after the last digit keeps other numbers (possibly other secrets)
    out of the template, which is stored with the results and shown unredacted; so
    does cutting after anything the scanner finds in the context itself and after
    any word that looks like a key or token (:func:`looks_like_key`).
    """
    lo = max(0, start - width)
    window = text[lo:start]
    cut = window.rfind(MESSAGE_SEPARATOR)
    if cut >= 0:
        window, lo = window[cut + len(MESSAGE_SEPARATOR):], lo + cut + len(MESSAGE_SEPARATOR)
    digit = len(window) - 1
    while digit >= 0 and not window[digit].isnumeric():
        digit -= 1
    if digit >= 0:
        window, lo = window[digit + 1:], lo + digit + 1
    boundaries = list(_CLAUSE_END.finditer(window))
    if boundaries:
        return _after_keys(window[boundaries[-1].end():])
    if lo > 0 and window and not text[lo - 1].isspace() and not window[0].isspace():
        window = _from_next_word(window)  # never half a word (the tail of a key, say)
    return _after_keys(window)


# A key's or token's known prefix (AWS, GitHub, Stripe, Slack, Google, GitLab, Hugging Face, OpenAI...).
_KEY_PREFIX = re.compile(r"(?<![A-Za-z0-9])(?:A(?:KIA|SIA|GPA|IDA|ROA|NPA)|gh[pousr]_|github_pat_|"
                         r"[sr]k_(?:live|test)_|sk-|xox[abposr]-|AIza|glpat-|hf_|npm_|pypi-)[A-Za-z0-9_\-]{4}")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{16,}")
_WORD = re.compile(r"\S+")


def looks_like_key(word: str) -> bool:
    """Whether ``word`` looks like a credential: a known key prefix, or a run of 16+ letters and digits
    that is not an ordinary word (it mixes digits in, or upper and lower case beyond a capital, or is
    all capitals, or is 24+ letters long)."""
    if _KEY_PREFIX.search(word):
        return True
    for m in _ALNUM_RUN.finditer(word):
        run = m.group(0)
        if (len(run) >= 24 or any(c.isdigit() for c in run) or run.isupper()
                or not (run.islower() or (run[0].isupper() and run[1:].islower()))):
            return True
    return False


def _from_next_word(window: str) -> str:
    space = next((i for i, c in enumerate(window) if c.isspace()), None)
    return window[space + 1:] if space is not None else ""


def _after_keys(context: str) -> str:
    """``context`` after the end of the last secret the scanner finds in it and of the last key-like word:
    a template's context never holds another secret (nor part of one)."""
    cut = 0
    for f in find_secrets(context, tuple(KINDS)):
        cut = max(cut, f.start + len(f.text))
    for m in _WORD.finditer(context):
        if looks_like_key(m.group(0)):
            cut = max(cut, m.end())
    if not cut:
        return context
    rest = context[cut:]
    return _from_next_word(rest) if rest and not rest[0].isspace() else rest


def scan(text: str, kinds=("ssn", "ccn")) -> dict[tuple[str, str], SecretSummary]:
    """Distinct secrets of a corpus keyed by ``(type, value)``, with counts, contexts and formats."""
    out: dict[tuple[str, str], SecretSummary] = {}
    for f in find_secrets(text, kinds):
        s = out.get((f.type, f.value))
        if s is None:
            s = out[(f.type, f.value)] = SecretSummary(f.type, f.value)
        s.count += 1
        s.formats[f.text] += 1
        s.contexts[observed_context(text, f.start)] += 1
    return out


def redact(message: str, values) -> str:
    """``message`` with each secret in ``values`` (bare digits) replaced by ``[secret]``, also when written
    with spaces or dashes between its digits: error text from a user's secrets never reaches a log."""
    values = sorted({v for v in values if v and v.isascii() and v.isalnum()}, key=len, reverse=True)
    for key in (v for v in values if not v.isdigit()):  # a key's random part: anywhere, even glued to its prefix
        message = message.replace(key, "[secret]")
    digits = [v for v in values if v.isdigit()]
    if not digits:
        return message
    message = normalize_separators(message)  # a no-break space or en dash between digits hides nothing
    pattern = "|".join("[ -.()]{0,2}".join(v) for v in digits)
    return re.sub(rf"(?<![0-9])(?:{pattern})(?![0-9])", "[secret]", message)


# --- a corpus's secrets measured in a model --------------------------------------------------------
@dataclass(frozen=True)
class ScanRow:
    """One distinct secret found in a corpus and what the model reveals of it (never the value itself)."""

    type: str
    label: str                  # "SSN", "AWS access key ID", ...
    last4: str
    times_present: int
    template: str
    exposure: float | None
    exposure_method: str | None
    rank: int | None
    extracted: bool
    note: str = ""              # why it could not be measured, when it could not
    value: str = field(default="", repr=False)  # only kept when the caller asks to reveal
    left_out: bool = False      # not measured: over the scan's budget (count or seconds)

    def to_json(self, reveal: bool = False) -> dict:
        d = {k: getattr(self, k) for k in ("type", "label", "last4", "times_present", "template", "exposure",
                                          "exposure_method", "rank", "extracted", "note", "left_out")}
        if reveal:
            d["secret"] = self.value
        return d


MAX_SECRETS = 10  # secrets measured by a scan unless told otherwise (each takes seconds to minutes)


def left_out(rows) -> list[ScanRow]:
    """The rows of a scan's secrets that its budget left unmeasured."""
    return [r for r in rows if r.left_out]


def scan_corpus(model, text: str, *, kinds=None, samples: int = 5_000, exact_limit: int = 10 ** 6,
                search_nodes: int = 20_000, extraction_nodes: int = 20_000, seed: int = 0, reveal: bool = False,
                max_secrets: int | None = MAX_SECRETS, max_seconds: float | None = None,
                progress=None, stop=None) -> list[ScanRow]:
    """Find the secrets already in ``text`` (every kind of :data:`KINDS` by default) and measure each in
    ``model``: exposure and whether shortest-path search extracts it. Most exposed first.

    Measuring is bounded: at most ``max_secrets`` secrets (None: all), most repeated first, and no new
    measurement after ``max_seconds`` (one running then is stopped). Every secret found has a row;
    those the budget left out have ``left_out`` set and a note saying why, so nothing is dropped silently.
    """
    from ssviz.errors import SsvizError, StoppedError
    from ssviz.exposure.secret import measure_secret, primary
    from ssviz.progress import stop_requested

    found = sorted(scan(text, tuple(kinds or KINDS)).values(), key=lambda s: (-s.count, s.type, s.value))
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    def halt() -> bool:  # the user's Stop, or the scan's time budget
        return stop_requested(stop) or out_of_time()

    rows, measured = [], 0
    for i, s in enumerate(found):
        if progress:
            progress(i, len(found))
        kind = KINDS[s.type]

        def skipped(why: str) -> ScanRow:
            return ScanRow(s.type, kind.label, s.last4, s.count, "", None, None, None, False,
                           note=f"not measured: {why}", value=s.value if reveal else "", left_out=True)

        if max_secrets is not None and measured >= max_secrets:
            rows.append(skipped(f"over the budget of {max_secrets} secret(s), most repeated first"))
            continue
        if out_of_time():
            rows.append(skipped(f"over the time budget of {max_seconds:g} s"))
            continue
        try:
            template = s.template()
            template.check_vocab(model.vocab)
            measured += 1  # a secret the model cannot even write costs nothing and does not count
            ms, x = measure_secret(model, template, s.value, exact_limit=exact_limit, search_nodes=search_nodes,
                                   extraction_nodes=extraction_nodes, samples=samples, seed=seed + i,
                                   stop=halt if (stop is not None or deadline is not None) else None)
        except StoppedError:
            if stop_requested(stop) or not out_of_time():
                raise
            rows.append(skipped(f"over the time budget of {max_seconds:g} s"))
            continue
        except SsvizError as e:  # e.g. the model cannot write the secret's context: say so, go on
            rows.append(ScanRow(s.type, kind.label, s.last4, s.count, "", None, None, None, False,
                                note=redact(str(e), [s.value]), value=s.value if reveal else ""))
            continue
        m = primary(ms)
        rows.append(ScanRow(s.type, kind.label, s.last4, s.count, template.text, m.exposure if m else None,
                            m.method if m else None, m.rank if m else None, x.found,
                            value=s.value if reveal else ""))
    if progress:
        progress(len(found), len(found))
    return sorted(rows, key=lambda r: (r.exposure is None, -(r.exposure or 0.0)))
