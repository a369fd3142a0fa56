"""Finding the secrets already in a corpus: SSNs, card numbers, phone numbers, cloud and code-host keys.

Used by the per-user study (one user's mail) and by ``python -m ssviz scan`` /
the Model page (a whole training corpus). Every kind of secret has a uniform
random space, so its exposure is defined.

Rules (deliberately simple and documented, so a stakeholder can check them):

* SSN: ``ddd-dd-dddd`` anywhere, or a bare 9-digit number within
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
* Digits are ASCII ``0-9``: a number written in full-width or other scripts'
  digits is not reported (a template's ``{d:N}`` slots could not hold it), and
  no match touches a digit of any script.

Each distinct secret gets a :class:`~ssviz.templates.Template`: its most common
observed context (the text just before it, after the last digit and within
the same message) followed by slots in its most common observed format.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

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
_SSN_DASHED = re.compile(_START + r"[0-9]{2}-[0-9]{2}-[0-9]{4}(?!\d)(?!-\d)")
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

    def add(kind: str, m: re.Match, digits: str) -> None:
        s, e = m.span()
        if not taken.isdisjoint(range(s, e)):
            return
        taken.update(range(s, e))
        found.append(Finding(kind, digits, m.group(0), s))

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
        return self.value[-4:]

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
    out of the template, which is stored with the results.
    """
    lo = max(0, start - width)
    window = text[lo:start]
    cut = window.rfind(MESSAGE_SEPARATOR)
    if cut >= 0:
        window, lo = window[cut + len(MESSAGE_SEPARATOR):], lo + cut + len(MESSAGE_SEPARATOR)
    digit = len(window) - 1
    while digit >= 0 and not window[digit].isdigit():
        digit -= 1
    if digit >= 0:
        window, lo = window[digit + 1:], lo + digit + 1
    boundaries = list(_CLAUSE_END.finditer(window))
    if boundaries:
        return window[boundaries[-1].end():]
    if lo > 0 and window and not text[lo - 1].isspace() and not window[0].isspace():
        space = next((i for i, c in enumerate(window) if c.isspace()), None)
        window = window[space + 1:] if space is not None else window
    return window


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
    pattern = "|".join("[ -.()]{0,2}".join(v) for v in digits)
    return re.sub(rf"(?<![0-9])(?:{pattern})(?![0-9])", "[secret]", message)
