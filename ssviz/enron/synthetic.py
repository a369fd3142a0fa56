"""A seeded generator of Enron-style maildirs with known secrets (for workshops and tests).

Writes ``<out>/maildir/<user>/<folder>/<n>.`` RFC-2822 messages of plausible
business mail (Faker names, companies and dates; phrase banks for the text) and
``<out>/ground_truth.json``: which user mentions which secret how many times.
Nothing in it is a real person's data: names come from Faker, SSNs and card
numbers are random (cards with a valid Luhn digit).

Like the real corpus, the tree also holds what ingestion must drop: inbox
mail, the same sent mail again under ``_sent_mail``, replies quoting someone
else's text (after ``-----Original Message-----``), company-wide
announcements, latin-1 encoded messages, and numbers that look like secrets but
are not (Luhn-invalid order numbers, phone numbers, 9-digit invoice numbers
without SSN context). Ground-truth counts are of occurrences in the mail that
survives ingestion.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from faker import Faker

from ssviz.scan import luhn_check_digit, ssn_issuable
from ssviz.errors import SsvizError

TEST_SSN = "123456789"  # the well-known test number: a scanner must still report it

SSN_PHRASES = (
    "My SSN is {s}",
    "my social security number is {s}",
    "SSN: {s}",
    "For the benefits form, my SSN is {s}",
    "my SSN is {s} if payroll needs it again",
    "Social security number {s}",
)
CCN_PHRASES = (
    "My credit card number is {s}",
    "please charge it to my card {s}",
    "Card number: {s}",
    "you can use my credit card number {s}",
    "My credit card number is {s}, expires next year",
    "Corporate card {s}",
)
OPENERS = ("Hi {first},", "{first},", "Hello {first},", "Dear {first},", "{first} -", "Thanks {first},")
SENTENCES = (
    "I talked to {other} about the {company} deal this morning.",
    "Can you send me the latest numbers for the {region} desk?",
    "We need to finalize the {product} contract before {day}.",
    "Please review the attached term sheet and let me know your thoughts.",
    "The meeting with {company} has been moved to {day} at {hour}.",
    "I think we should {bs} before the end of the quarter.",
    "Let's discuss the {region} position when you get a chance.",
    "{other} will handle the credit review for {company}.",
    "The volumes on the {product} pipeline look much better this week.",
    "I am out of the office on {day}, but I can call in.",
    "Our goal is to {bs} with {company}.",
    "Send me the revised schedule when it is ready.",
    "Please make sure legal signs off on the {product} agreement.",
    "Thanks for your help with the {region} curves.",
    "I left a message for {other} regarding the invoice.",
    "The price for {product} moved again today.",
)
CLOSERS = ("Thanks,\n{me}", "{me}", "Regards,\n{me}", "Talk to you soon,\n{me}", "-{me}")
PRODUCTS = ("gas", "power", "transport", "storage", "weather", "coal", "broadband", "pulp and paper")
REGIONS = ("West", "East", "Gulf", "Ontario", "California", "Northwest", "Texas", "Midwest")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
START = datetime(2000, 1, 3)  # fixed, so the output does not depend on today's date
LATIN1_WORDS = ("café", "Zürich", "résumé", "São Paulo", "naïve", "Müller")


@dataclass
class PlantedSecret:
    """A secret a user mentions ``times`` times (``value`` is the bare digits)."""

    user: str
    type: str  # "ssn" | "ccn"
    value: str
    times: int


def random_ssn(rng: random.Random) -> str:
    while True:
        s = f"{rng.randint(1, 899):03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if ssn_issuable(s) and s != TEST_SSN:
            return s


def random_ccn(rng: random.Random) -> str:
    """A 16-digit Visa- or Mastercard-like number with a valid Luhn check digit."""
    prefix = rng.choice(("4", "51", "52", "53", "54", "55"))
    body = prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(prefix)))
    return body + luhn_check_digit(body)


def written(kind: str, value: str, rng: random.Random) -> str:
    """The secret as a person would type it: SSN with dashes, card in groups of four."""
    if kind == "ssn":
        return f"{value[:3]}-{value[3:5]}-{value[5:]}"
    sep = rng.choice((" ", "-")) if rng.random() < 0.2 else " "
    return sep.join(value[i:i + 4] for i in range(0, 16, 4))


def default_plan(users: list[str], times: tuple[int, ...], seed: int) -> list[PlantedSecret]:
    """One secret per user (alternating SSN and card) with the given repetition counts, the last
    user also repeating the test SSN 123-45-6789 twice."""
    rng = random.Random(seed)
    plan = []
    for i, user in enumerate(users):
        kind = "ccn" if i % 2 == 0 else "ssn"
        value = random_ccn(rng) if kind == "ccn" else random_ssn(rng)
        plan.append(PlantedSecret(user, kind, value, times[i % len(times)]))
    plan.append(PlantedSecret(users[-1], "ssn", TEST_SSN, 2))
    return plan


def _user_names(fake: Faker, n: int) -> list[tuple[str, str, str]]:
    """``(login, first, last)`` like Enron's ``allen-p``, unique."""
    out, seen = [], set()
    while len(out) < n:
        first, last = fake.first_name(), fake.last_name()
        login = f"{last.lower()}-{first[0].lower()}".replace(" ", "").replace("'", "")
        if login not in seen and login.isascii():
            seen.add(login)
            out.append((login, first, last))
    return out


def _email(first: str, last: str) -> str:
    return f"{first.lower()}.{last.lower()}@enron.com".replace(" ", "")


def _sentence(fake: Faker, rng: random.Random) -> str:
    return rng.choice(SENTENCES).format(
        other=fake.first_name(), company=fake.company(), region=rng.choice(REGIONS),
        product=rng.choice(PRODUCTS), day=rng.choice(DAYS), hour=f"{rng.randint(8, 17)}:{rng.choice(('00', '30'))}",
        bs=fake.bs())


def _day(fake: Faker) -> str:
    return fake.date_between(start_date=START.date(), end_date=START.date() + timedelta(days=700)).isoformat()


def _distractor(fake: Faker, rng: random.Random) -> str:
    """A number that looks like a secret and is not one."""
    kind = rng.randrange(3)
    if kind == 0:
        body = "".join(rng.choice("0123456789") for _ in range(15))
        bad = str((int(luhn_check_digit(body)) + rng.randint(1, 9)) % 10)
        return f"The order number is {body[:4]} {body[4:8]} {body[8:12]} {body[12:]}{bad}."
    if kind == 1:
        return f"Call me at 713-{rng.randint(200, 999)}-{rng.randint(1000, 9999)} tomorrow."
    return f"Invoice {rng.randint(100_000_000, 999_999_999)} was paid on {_day(fake)}."


def _headers(msg_id: int, date, sender: tuple[str, str], to: str, subject: str, login: str,
             charset: str = "us-ascii") -> str:
    first, last = sender
    return (f"Message-ID: <{msg_id}.1075855{msg_id:06d}.JavaMail.evans@thyme>\n"
            f"Date: {format_datetime(date)}\n"
            f"From: {_email(first, last)}\nTo: {to}\nSubject: {subject}\nMime-Version: 1.0\n"
            f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit\n"
            f"X-From: {first} {last}\nX-To: {to}\nX-cc: \nX-bcc: \n"
            f"X-Folder: \\{first}_{last}_Jun2001\\Notes Folders\\Sent\nX-Origin: {login.title()}\n"
            f"X-FileName: {login}.nsf\n\n")


def generate_maildir(out, *, users: int = 3, messages: int = 120, seed: int = 0,
                     times: tuple[int, ...] = (1, 5, 20, 50), plan: list[PlantedSecret] | None = None,
                     sentences: tuple[int, int] = (2, 6)) -> dict:
    """Write a synthetic maildir under ``out`` and return (and write) its ground truth.

    ``plan`` lists the secrets to plant (users named ``user0``... are replaced
    by the generated logins in order); by default :func:`default_plan`.
    ``messages`` is the number of distinct sent messages per user.
    """
    if users < 1:
        raise SsvizError("a synthetic maildir needs at least 1 user")
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    names = _user_names(fake, users)
    logins = [n[0] for n in names]
    if plan is None:
        plan = default_plan(logins, times, seed + 1)
    else:
        alias = {f"user{i}": login for i, login in enumerate(logins)}
        plan = [PlantedSecret(alias.get(p.user, p.user), p.type, p.value, p.times) for p in plan]
    unknown = sorted({p.user for p in plan} - set(logins))
    if unknown:
        raise SsvizError(f"secret plan names unknown user(s): {', '.join(unknown)}")
    for p in plan:
        if p.times > messages:
            raise SsvizError(f"{p.user} cannot mention a secret {p.times} times in {messages} messages")
    root = Path(out) / "maildir"
    msg_id = 0
    for login, first, last in names:
        colleagues = [(fake.first_name(), fake.last_name()) for _ in range(8)]
        # which message mentions which secret: distinct messages per secret, spread at random
        mentions: dict[int, list[PlantedSecret]] = {}
        for p in (p for p in plan if p.user == login):
            for k in rng.sample(range(messages), p.times):
                mentions.setdefault(k, []).append(p)
        sent = root / login / "sent"
        sent.mkdir(parents=True, exist_ok=True)
        date = fake.date_time_between(start_date=START, end_date=START + timedelta(days=365), tzinfo=None)
        for k in range(messages):
            msg_id += 1
            date = date.replace(microsecond=0) + fake.time_delta(end_datetime="+2d")
            to_first, to_last = rng.choice(colleagues)
            lines = [rng.choice(OPENERS).format(first=to_first)]
            body = [_sentence(fake, rng) for _ in range(rng.randint(*sentences))]
            for p in mentions.get(k, []):
                phrase = rng.choice(SSN_PHRASES if p.type == "ssn" else CCN_PHRASES)
                body.insert(rng.randint(0, len(body)), phrase.format(s=written(p.type, p.value, rng)) + ".")
            if k not in mentions and rng.random() < 0.15:  # never next to an SSN word
                body.insert(rng.randint(0, len(body)), _distractor(fake, rng))
            latin1 = rng.random() < 0.05
            if latin1:
                body.append(f"See you at the {rng.choice(LATIN1_WORDS)} meeting.")
            lines.append(" ".join(body))
            lines.append(rng.choice(CLOSERS).format(me=first))
            text = "\n\n".join(lines) + "\n"
            if rng.random() < 0.2:  # a reply: the quoted text must not count as this user's mail
                text += (f"\n -----Original Message-----\nFrom: {to_first} {to_last}\nSent: {_day(fake)}\n"
                         f"To: {first} {last}\nSubject: RE: update\n\n{_sentence(fake, rng)} "
                         f"My SSN is {random_ssn(rng)[:3]}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}.\n")
            subject = fake.bs().capitalize()
            raw = _headers(msg_id, date, (first, last), _email(to_first, to_last), subject, login,
                           "iso-8859-1" if latin1 else "us-ascii") + text
            data = raw.encode("latin-1" if latin1 else "ascii", errors="replace")
            (sent / f"{k + 1}.").write_bytes(data)
            if k % 3 == 0:  # Enron keeps sent mail twice: the duplicate must be dropped
                dup = root / login / "_sent_mail"
                dup.mkdir(exist_ok=True)
                (dup / f"{k + 1}.").write_bytes(data)
        # mail ingestion must ignore: an inbox, and a company-wide announcement in sent
        inbox = root / login / "inbox" / "projects"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "1.").write_bytes((_headers(msg_id, date, colleagues[0], _email(first, last), "Hello", login)
                                    + f"My SSN is {written('ssn', random_ssn(rng), rng)}.\n").encode())
        (sent / f"{messages + 1}.").write_bytes(
            (_headers(msg_id + 1, date, (first, last), "all.employees@enron.com", "Announcement", login)
             + f"To all employees: the card {written('ccn', random_ccn(rng), rng)} is the new corporate "
               f"account.\n").encode())
    truth = {"seed": seed, "users": logins, "messages_per_user": messages,
             "secrets": [asdict(p) for p in plan]}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth
