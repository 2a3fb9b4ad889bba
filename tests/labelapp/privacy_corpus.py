# ruff: noqa: E501  (long literal templates read better on one line)
"""A synthetic PII corpus: strings with planted personal data in varied formats, and clean strings
full of numbers that look like PII but are not (versions, dates, prices, ISBNs, order numbers).

`pii_cases()` -> [(text, [(type, value), ...])]; `clean_cases()` -> [text]. Deterministic (seeded).
"""

from __future__ import annotations

import random

from labelapp.services.privacy import luhn_valid

FIRST = [
    "Anna",
    "Jonas",
    "Maria",
    "Peter",
    "Chen",
    "Fatima",
    "Liam",
    "Sofia",
    "Ravi",
    "Emma",
    "Lukas",
    "Olga",
]
LAST = ["Schmidt", "Miller", "Garcia", "Okafor", "Nguyen", "Kowalski", "Rossi", "Dubois", "Patel", "Berg"]
DOMAINS = ["example.com", "mail.example.org", "uni-hamburg.de", "corp.co.uk", "gmail.com", "web.de"]


def _card(rng: random.Random, prefix: str, length: int) -> str:
    while True:
        body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
        for check in "0123456789":
            if luhn_valid(body + check):
                return body + check


def _iban(rng: random.Random, country: str, bban_len: int) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(bban_len))
    rearranged = bban + country + "00"
    num = int("".join(str(int(ch, 36)) for ch in rearranged))
    check = 98 - num % 97
    return f"{country}{check:02d}{bban}"


def _group4(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


def _email(rng):
    user = rng.choice(
        [
            f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}",
            f"user{rng.randint(1, 999)}",
            f"{rng.choice(FIRST).lower()}_{rng.randint(70, 99)}",
            f"{rng.choice(FIRST)[0].lower()}+tag",
        ]
    )
    return f"{user}@{rng.choice(DOMAINS)}"


def _phone(rng):
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            f"+1 (415) {d(3)}-{d(4)}",
            f"415-{d(3)}-{d(4)}",
            f"(212) {d(3)}-{d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"020 {d(4)} {d(4)}",
            f"07700 {d(6)}",
            f"+49 30 {d(8)}",
            f"0049 89 {d(7)}",
            f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"030-{d(7)}",
            f"+91 98{d(3)} {d(5)}",
            f"+1.650.{d(3)}.{d(4)}",
        ]
    )


def _card_text(rng):
    kind = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("22", 16)])
    num = _card(rng, *kind)
    return rng.choice([num, _group4(num), "-".join(num[i : i + 4] for i in range(0, len(num), 4))])


def _iban_text(rng):
    country, n = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14), ("ES", 20)])
    if country == "GB":
        bank = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban = bank + "".join(rng.choice("0123456789") for _ in range(14))
        num = int("".join(str(int(ch, 36)) for ch in bban + "GB00"))
        iban = f"GB{98 - num % 97:02d}{bban}"
    elif country == "NL":
        bank = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban = bank + "".join(rng.choice("0123456789") for _ in range(10))
        num = int("".join(str(int(ch, 36)) for ch in bban + "NL00"))
        iban = f"NL{98 - num % 97:02d}{bban}"
    else:
        iban = _iban(rng, country, n)
    return rng.choice([iban, _group4(iban)])


def _ip(rng):
    if rng.random() < 0.75:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return rng.choice(
        [
            f"2001:db8::{rng.randint(1, 0xFFFF):x}",
            f"fe80::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        ]
    )


def _national_id(rng):
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
            f"{rng.choice(['AB', 'CE', 'JK', 'PR'])} {d(2)} {d(2)} {d(2)} {rng.choice('ABCD')}",
            f"{rng.choice(['AB', 'CE', 'JK'])}{d(6)}{rng.choice('ABCD')}",
        ]
    )


def _url_creds(rng):
    return rng.choice(
        [
            f"https://{rng.choice(FIRST).lower()}:s3cr3t{rng.randint(1, 99)}@db.example.com/admin",
            f"postgres://app:{rng.randint(10**6, 10**7)}pw@10.0.0.5:5432/prod",
            "ftp://backup:hunter2@files.example.org/dump.tar",
        ]
    )


TEMPLATES = {
    "EMAIL": [
        "Please email me at {v} tomorrow.",
        "Contact: {v}",
        "my mail is {v}, thanks",
        "Send it to <{v}>.",
    ],
    "PHONE": ["Call me at {v} after 5pm.", "My number is {v}.", "Reach the office on {v}", "phone: {v}"],
    "CARD": ["My card number is {v}, expiry 09/27.", "charge {v} please", "Card: {v}"],
    "IBAN": ["Transfer to {v} by Friday.", "IBAN {v}", "my account is {v} (Sparkasse)"],
    "IP": [
        "The server at {v} keeps timing out.",
        "Blocked IP {v} in the firewall",
        "ssh into {v} and restart",
    ],
    "NATIONAL_ID": ["My SSN is {v}.", "national insurance number {v}", "ID: {v} for the form"],
    "URL_WITH_CREDENTIALS": ["Connect with {v} and run the query.", "The link {v} fails", "use {v}"],
}


def pii_cases(n_per_type: int = 32, seed: int = 7) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    gens = {
        "EMAIL": _email,
        "PHONE": _phone,
        "CARD": _card_text,
        "IBAN": _iban_text,
        "IP": _ip,
        "NATIONAL_ID": _national_id,
        "URL_WITH_CREDENTIALS": _url_creds,
    }
    cases = []
    for kind, gen in gens.items():
        for _ in range(n_per_type):
            v = gen(rng)
            cases.append((rng.choice(TEMPLATES[kind]).format(v=v), [(kind, v)]))
    # Mixed strings: two types in one text.
    for _ in range(n_per_type):
        a, b = rng.sample(["EMAIL", "PHONE", "CARD", "IBAN", "IP"], 2)
        va, vb = gens[a](rng), gens[b](rng)
        cases.append((f"Details: {va} and also {vb}.", [(a, va), (b, vb)]))
    return cases


def person_cases(seed: int = 11) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for tpl in [
        "Hi, my name is {n} and I need help.",
        "Dear {n}, thanks for the call.",
        "Dr. {n} prescribed it.",
        "Best regards, {n}",
        "Ms {n} will join us.",
        "Patient: {n}, age 54",
    ]:
        for _ in range(4):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            out.append((tpl.format(n=name), name))
    return out


def clean_cases(seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    r = rng.randint
    gens = [
        lambda: f"Upgrade from version {r(1, 9)}.{r(0, 20)}.{r(0, 30)} to {r(1, 9)}.{r(0, 20)}.{r(0, 30)}.",
        lambda: f"Python {r(2, 3)}.{r(6, 13)}.{r(0, 12)} fixed it; numpy {r(1, 2)}.{r(0, 26)}.{r(0, 5)} too.",
        lambda: f"Build version {r(1, 9)}.{r(0, 9)}.{r(0, 99)}.{r(0, 999)} is the latest.",
        lambda: (
            f"The meeting is on {r(2000, 2030)}-{r(1, 12):02d}-{r(1, 28):02d} at {r(8, 18)}:{r(0, 59):02d}."
        ),
        lambda: (
            f"Due {r(1, 28):02d}.{r(1, 12):02d}.{r(1990, 2030)}, reminder on {r(1, 12)}/{r(1, 28)}/{r(2000, 2030)}."
        ),
        lambda: (
            f"It costs ${r(1, 9)},{r(100, 999)}.{r(0, 99):02d} or €{r(10, 999)}.{r(0, 99):02d} in Europe."
        ),
        lambda: (
            f"Revenue grew from {r(1, 99)},{r(100, 999)},{r(100, 999)} to {r(1, 99)},{r(100, 999)},{r(100, 999)} USD."
        ),
        lambda: f"ISBN 978-{r(0, 1)}-{r(100, 999)}-{r(10000, 99999)}-{r(0, 9)} is the second edition.",
        lambda: (
            f"See ISBN {r(0, 1)}-{r(100, 999)}-{r(10000, 99999)}-{r(0, 9)} and 979{r(1000000000, 9999999999)}."
        ),
        lambda: f"Pi is about 3.{r(1000, 9999)} and e is 2.{r(7000, 7999)}.",
        lambda: f"The population was {r(1, 9)} {r(100, 999)} {r(100, 999)} in {r(1950, 2020)}.",
        lambda: f"Order #{r(100000, 999999)} shipped in {r(2, 14)} days.",
        lambda: f"Between {r(1900, 1999)}-{r(2000, 2024)} the rate was {r(1, 99)}.{r(0, 9)}%.",
        lambda: f"Use port {r(1024, 65535)} and a timeout of {r(1, 120)} s.",
        lambda: f"The commit {rng.getrandbits(160):040x} broke the build.",
        lambda: (
            f"UUID {rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
        ),
        lambda: f"Coordinates {r(-89, 89)}.{r(1000, 9999)}, {r(-179, 179)}.{r(1000, 9999)}.",
        lambda: f"The recipe needs {r(100, 900)} g flour, {r(1, 4)} eggs and {r(100, 500)} ml milk.",
        lambda: f"Invalid test card 4111 1111 1111 111{r(2, 9)} is rejected.",
        lambda: f"Lap time {r(1, 2)}:{r(10, 59)}.{r(100, 999)}; split {r(10, 59)}:{r(10, 59)}:{r(10, 59)}.",
        lambda: f"Write a haiku about the year {r(1000, 2100)} and {r(2, 12)} cats.",
        lambda: f"What is {r(1000, 99999)} * {r(1000, 99999)}? Show steps.",
        lambda: f"The model scored {r(60, 99)}.{r(0, 99)} on MMLU and {r(10, 90)}.{r(0, 9)} on GSM8K.",
        lambda: f"Matrix of size {r(2, 512)}x{r(2, 512)} with {r(1, 16)} heads.",
    ]
    return [rng.choice(gens)() for _ in range(240)]
