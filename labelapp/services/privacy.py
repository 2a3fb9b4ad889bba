"""PII scrubbing: replace personal data in prompts and answers with typed placeholders before storage.

`scrub(text)` returns the scrubbed text and what was replaced, by type and count, never the values.
Every ingest path (API, `manage.py import_prompts`) calls it, so nothing unscrubbed is stored for
training. Detectors, in the order they claim text (an earlier one wins an overlap):

- URL_WITH_CREDENTIALS  scheme://user:password@host...
- SECRET                keys and tokens by their issuers' shapes (AWS AKIA/ASIA, GitHub ghp_/github_pat_,
                        OpenAI-style sk-, Slack xox?-, Google AIza, Stripe sk_live_, JWTs), PEM private
                        key blocks, and the value of a secret-named query parameter (?token=, &api_key=)
                        or assignment (api_key = "...", aws_secret_access_key: ...); such a value must
                        read as a key (16+ characters mixing letters and digits, both cases unless
                        24+, not a call, attribute chain or template), so placeholders (YOUR_API_KEY),
                        words and code (secret_key=os.urandom(32)) stay
- EMAIL                 local@domain.tld, local@[IPv4], local%40domain.tld (percent-encoded)
- IBAN                  country + check digits + BBAN, accepted only when ISO 13616 mod-97 holds
- CARD                  13-19 digits (spaces/dashes allowed), known issuer prefix, Luhn-valid
- NATIONAL_ID           US SSN (area/group/serial rules), UK NINO, and numbers after an "SSN",
                        "passport", "national id", "tax id" label
- IP                    IPv4 and IPv6 (validated by `ipaddress`); not when written as a version
- PHONE                 international (+CC / 00CC) and national grouped formats, or any digits
                        after a "phone", "tel", "mobile", "call" label; 7-15 digits
- PERSON                names after an honorific (Mr, Dr, ...) or a cue ("my name is", "Dear",
                        "Regards,", "signed"): rules, not a model (see README: Privacy)

Structured types are checksum- or rule-validated so that versions, dates, prices and ISBNs stay.
"""

from __future__ import annotations

import bisect
import html
import ipaddress
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from labelapp.shown_text import CHARACTER_REFERENCE, ESCAPABLE, CodeSpans

PLACEHOLDERS = {
    "URL_WITH_CREDENTIALS": "[URL_WITH_CREDENTIALS]",
    "SECRET": "[SECRET]",
    "EMAIL": "[EMAIL]",
    "IBAN": "[IBAN]",
    "CARD": "[CARD]",
    "NATIONAL_ID": "[NATIONAL_ID]",
    "IP": "[IP]",
    "BIRTH_DATE": "[BIRTH_DATE]",
    "PHONE": "[PHONE]",
    "ADDRESS": "[ADDRESS]",
    "PERSON": "[PERSON]",
}


@dataclass
class ScrubResult:
    text: str
    found: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.found)


# Each pattern starts only where the previous character cannot continue it: a scan from every position
# of a long run such as "a+a+a+..." or "%a%a%a..." would take quadratic time.
_URL_CREDS = re.compile(r"(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]+:[^\s/@]*@[^\s<>\"')\]]+")
# Letters of any script in the address (jürgen@mueller.de, josé@example.com); the top-level domain is
# letters only.
# local@domain.tld, local@[IPv4] (an address literal), and local%40domain.tld (percent-encoded, as in
# a URL's query: "?email=john%40example.com" went out whole); not a git remote (git@github.com:org/repo,
# an account on a host, not a mailbox)
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+(?:@|%40)(?:[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}\b(?!:[\w~/])"
    r"|\[(?:\d{1,3}\.){3}\d{1,3}\])"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ .-]?[A-Z0-9]){11,32}\b")  # grouped by spaces, dashes or dots
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}[- ](?!00)\d{2}[- ](?!0000)\d{4}(?![\d-])")
_NINO = re.compile(
    r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
)
_ID_LABELLED = re.compile(
    r"(?i:\b(?:ssn|social security(?: number)?|passport(?: (?:no|number))?|national id(?: number)?|"
    r"id card(?: number)?|tax id|personal id(?: number)?|personnummer|steuer-?id)\b\.?[\s:#]*(?:is\s+)?)"
    r"([A-Z0-9][A-Z0-9 -]{4,18}[A-Z0-9])(?![\w-])"
)
_SECRET_SHAPES = re.compile(
    r"(?<![\w-])(?:(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
    r"|[sr]k_(?:live|test)_[0-9A-Za-z]{16,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"(?![\w-])"
)
# A private key block: the header, then (up to the footer, when there is one within reach) the body.
# The footer is looked for with str.find from each header (bounded), not a lazy regex scan.
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z ]{0,20}PRIVATE KEY-----")
_PEM_REACH = 16_000
# Without a footer: base64 lines (16+ characters each) after line breaks, real ones or written "\n"
# as in a JSON service-account file.
_PEM_BODY = re.compile(r"(?:(?:\s|\\n)+[A-Za-z0-9+/=]{16,})+(?:(?:\s|\\n)+[A-Za-z0-9+/=]{1,15}(?![\w+/=]))?")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}")
_SECRET_PARAM = re.compile(
    r"(?i:[?&](?:access_token|id_token|token|api_?key|apikey|secret|client_secret|password|passwd"
    r"|signature)=)([^&\s#\"'<>]{16,})"
)
_SECRET_ASSIGNED = re.compile(
    r"(?i:\b(?:aws_secret_access_key|api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token"
    r"|client[_-]?secret|password|passwd)\b[\"']?\s{0,3}[:=]\s{0,3}[\"']?)([^\s\"',;]{16,200})"
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
# An IPv6 address ending in a dotted IPv4 part (2001:db8:1:2:3:4:192.0.2.1): the IPv4 detector took the
# tail alone and left the network prefix.
_IPV6_V4_TAIL = re.compile(
    r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,6}:(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
)
_VERSION_CUE = re.compile(r"(?i)(?:\bv|\bversion\s*|\bver\.?\s*|\brelease\s*|\bbuild\s*)$")
_PHONE_INTL = re.compile(
    r"(?<![\w+])(?<!\d\s)(?:\+|00)[1-9]\d{0,2}[\s.-]?(?:\(0?\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{2,5}){1,4}(?![\w-]|\s\d)"
)
_PHONE_NATIONAL = re.compile(
    r"(?<![\w.,/-])(?<!\d\s)(?:1[\s.-])?(?:\(\d{2,5}\)\s?|0?\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w-]|[.,]\d|\s\d)"
)
_PHONE_LABELLED = re.compile(
    r"(?i:\b(?:phone|tel|telephone|mobile|cell|call(?: me)?(?: at| on)?|whatsapp|fax|text me(?: at| on)?)\b"
    r"\.?[\s:#]*(?:number\s*)?(?:is\s+)?)(\+?\d[\d\s().-]{5,18}\d)"
)
# A word of letters in any script, with an optional hyphen or apostrophe part (O'Brien, Jean-Luc); whether
# it is capitalised, as a name is, is checked in _person_spans (re has no class for upper-case letters
# of every script).
# (combining marks count as letters: "J\u0301ohn Smith" kept all but its first letter)
_LETTER = r"(?:[^\W\d_]|[\u0300-\u036f])"
_NAME = rf"[^\W\d_]{_LETTER}*(?:[-'’][^\W\d_]{_LETTER}*)?"
# The name is read in a lookahead, so that the match ends at the title or cue and the next one is found
# even inside this name's words ("Mr Smith met Mr Jones" missed Jones; "Patient: Maria Garcia\nPatient:
# John Doe" took the second label as a surname and missed John Doe); its words are on one line.
# An initial with its period counts as a word of the name ("Mr. A. Smith" left Smith: the period ended it).
_NAME_PART = rf"(?:{_NAME}|[^\W\d_]\.)"
_PERSON_TITLE = re.compile(
    rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madam|Herr|Frau|Monsieur|Madame|Mme|Mlle|Señor|Señora|"
    rf"Signor|Signora|Dott)\.?\s+(?=((?:{_NAME_PART}[ \t]+){{0,2}}{_NAME}))"
)
_PERSON_CUE = re.compile(
    rf"(?:\b(?:[Mm]y name is|[Mm]y name's|[Nn]ame:|I am called|[Dd]ear|[Rr]egards,|[Ss]incerely,|"
    rf"[Ss]igned,?|[Cc]ontact person:|[Pp]atient:|[Ee]mployee:|[Ss]ignature:|[Ss]ender:|"
    # sign-offs: on a line of their own ("What are the Best, Most Reliable cars" is no signature)
    rf"(?<![^\n])(?:[Yy]ours truly|[Bb]est wishes|[Cc]heers|Best|[Tt]hanks|[Tt]hank you|"
    rf"[Mm]any thanks),"
    rf"(?=[ \t]*\n))\s+)"
    rf"(?=((?:{_NAME_PART}[ \t]+){{0,2}}{_NAME}))"
)
# Words that follow a cue but are not names ("Dear Sir", "Dear Customer", "Sincerely, Yours"), and the
# honorifics, which _PERSON_TITLE reads: "Dear Mr. Smith" was "Dear [PERSON]. [PERSON]", one person
# counted twice.
_NOT_NAMES = frozenset(
    "Sir Sirs Madam Customer Customers Client Clients Team Support Service Services Friend Friends All "
    "Colleague Colleagues Hiring Manager Reader Readers Valued User Users Admin Everyone Hi Hello The A "
    "An This That Yours Doctor Professor Officer Director Editor Editors Committee Board Members Member "
    "Parents Students Applicant Candidate Community Neighbour Neighbor Sales Staff Name Email Phone "
    "Address Date "
    "Mr Mrs Ms Miss Mx Dr Prof Dame Herr Frau Monsieur Madame Mme Mlle Señor Señora Signor "
    "Signora Dott I".split()
)

# A street address: a house number, one to three capitalised words and a street word ("17 Zelmoorlane
# Road", "221B Baker Street", "1600 Pennsylvania Avenue NW"), or a German-style street name ending in
# its street word with the number after it ("Hauptstraße 12", "Am Lindenweg 4a"). Rules, not a
# gazetteer: a street named without its street word is missed.
_STREET_WORD = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Boulevard|Blvd|Drive|Court|Ct|Way|Place|Pl|Terrace|Close|"
    r"Square|Crescent|Gardens|Parkway|Highway|Hwy)"
)
# words of a counted title, not of a street's name ("The 5 Best Road Trips", "Chapter 3 Sales Way")
_NOT_STREET_NAMES = (
    r"(?:The|A|An|Best|Top|Worst|Sales|First|Last|Next|New|Good|Great|Easy|Simple|Quick|Key|Ways|Tips|"
    r"Steps|Things|Reasons|Rules|Facts|More|Most|Other|Common|Important|Big|Small|Wise|Men|Women|Day|Days)\b"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?,?[ \t]+(?:(?!{_NOT_STREET_NAMES})[A-Z]{_LETTER}+[ \t]+){{1,3}}{_STREET_WORD}\b\.?"
    rf"(?:[ \t]+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
    # only where a word starts (letters and combining marks both inside a word): with \b, which a
    # combining mark does not stop, every position of a long run of letters and marks started a scan to
    # its end (quadratic: 68 s for a 50,000-character prompt)
    rf"|(?<![^\W\d_])(?<![\u0300-\u036f])(?:[A-Z]{_LETTER}+[ \t]+)?[A-Z]{_LETTER}*"
    rf"(?:straße|strasse|Straße|Strasse|weg|gasse|allee|platz|damm)[ \t]+\d{{1,4}}[a-z]?\b"
)
# a number after a capitalised word is a title's or a product's ("Step 2 Click Close", "Windows 11 Start
# Menu Drive", "Apollo 11 Landing Place"), not a house number
_CAPITALISED_BEFORE = re.compile(r"[A-Z][^\W\d_]*[ \t]+$")


def _address_spans(text: str):
    for m in _ADDRESS.finditer(text):
        if m.group(0)[0].isdigit() and _CAPITALISED_BEFORE.search(text, max(0, m.start() - 40), m.start()):
            continue
        yield m.span()


# A date after a birth cue ("DOB 03/04/1985", "born 1971-04-03", "date of birth: 3 April 1985"); a date
# alone is not personal data (a release date, a deadline) and stays.
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_BIRTH_DATE = re.compile(
    r"(?i:\b(?:DOB|D\.O\.B\.?|date of birth|birth ?date|born(?: on)?)\b[\s:.,-]*)"
    rf"(\d{{1,2}}[./-]\d{{1,2}}[./-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}|"
    rf"\d{{1,2}}\.?[ \t]+{_MONTH}[ \t]+\d{{4}}|{_MONTH}[ \t]+\d{{1,2}},?[ \t]+\d{{4}})"
)


def _birth_date_spans(text: str):
    for m in _BIRTH_DATE.finditer(text):
        yield m.span(1)


_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|35|6011|65|64[4-9]|62)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban_spans(text: str):
    for m in _IBAN.finditer(text):
        chunk = m.group(0)
        # The pattern may run into a following word ("DE89 3704 ... 00 ABC"); try shorter ends.
        ends = [i + 1 for i, ch in enumerate(chunk) if ch.isalnum()]
        for end in reversed(ends):
            if iban_valid(re.sub("[ .-]", "", chunk[:end])):
                yield m.start(), m.start() + end
                break


def _card_spans(text: str):
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_valid(digits):
            yield m.span()


def _ssn_spans(text: str):
    for m in _SSN.finditer(text):
        if m.group(0)[3] == m.group(0)[6]:  # one separator style: 123-45-6789 or 123 45 6789
            yield m.span()
    for m in _NINO.finditer(text):
        yield m.span()
    for m in _ID_LABELLED.finditer(text):
        if any(ch.isdigit() for ch in m.group(1)):
            yield m.span(1)


def _address_like_ipv6(cand: str) -> bool:
    """All eight groups, or a compressed form with at least two groups, one of 3+ digits (2001:db8::1,
    fe80::1:2); with only two groups (fe80::1, 2001:db8::) one of them must also mix decimal digits and
    hex letters. `::`, `::2`, `a::b`, `10:30::45`, `cafe::bad`, `100::5` parse as addresses too, and were
    scrubbed out of code (`s[::-1]`, `x :: Int`, `cafe::bad()`, `a[100::5]`) and times."""
    if "::" not in cand:
        return cand.count(":") == 7
    groups = [g for g in cand.split(":") if g]
    if len(groups) < 2 or not any(len(g) >= 3 for g in groups):
        return False
    if len(groups) == 2:  # a group that mixes digits and hex letters (fe80, db8), not dead::1234
        return any(any(ch.isdigit() for ch in g) and any(ch in "abcdefABCDEF" for ch in g) for g in groups)
    return True


def _secret_spans(text: str):
    for m in _SECRET_SHAPES.finditer(text):
        token = m.group(0)
        # "sk-" also starts words ("sk-learn-extensions-for-version-2"): a key mixes cases too
        if _mixes_letters_and_digits(token) and (not token.startswith("sk-") or _mixes_cases(token[3:])):
            yield m.span()
    yield from _pem_spans(text)
    for rx in (_SECRET_PARAM, _SECRET_ASSIGNED):
        for m in rx.finditer(text):
            if _looks_random(m.group(1)):
                yield m.span(1)


def _pem_spans(text: str):
    """A private key block whole: to its footer when one is within reach (headers of encrypted keys
    and short last lines included), else its base64 body; a header that only names the format in
    prose, with no body after it, stays."""
    for m in _PEM_BEGIN.finditer(text):
        end = _PEM_END.search(text, m.end(), m.end() + _PEM_REACH)
        if end is not None and _BASE64_RUN.search(text, m.end(), end.start()):
            yield m.start(), end.end()
            continue
        body = _PEM_BODY.match(text, m.end())
        if body is not None:
            yield m.start(), body.end()


def _mixes_letters_and_digits(value: str) -> bool:
    return any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)


def _mixes_cases(value: str) -> bool:
    return any(ch.isupper() for ch in value) and any(ch.islower() for ch in value)


# What a value in code is when it is not a secret: a call, an attribute chain, a template or a
# placeholder (secret_key=os.urandom(32), API_KEY = process.env.API_KEY_V2, ${AUTH_TOKEN_V2}).
_CODE_LIKE = re.compile(r"[(){}\[\]<>$]|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")


def _looks_random(value: str) -> bool:
    """A secret-named value that reads as a key: 16+ characters mixing letters and digits, with both
    cases unless it is long (24+), and not code."""
    return (
        len(value) >= 16
        and _mixes_letters_and_digits(value)
        and (_mixes_cases(value) or len(value) >= 24)
        and not _CODE_LIKE.search(value)
    )


def _after_version_cue(text: str, start: int) -> bool:
    """Whether a number at `start` follows "v", "version", "release", "build" (a version, not PII)."""
    return bool(_VERSION_CUE.search(text[max(0, start - 10) : start]))


def _ip_spans(text: str):
    for m in _IPV6_V4_TAIL.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        yield m.span()
    for m in _IPV4.finditer(text):
        if _after_version_cue(text, m.start()):
            continue
        try:
            ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        yield m.span()
    for m in _IPV6.finditer(text):
        cand = m.group(0)
        if not _address_like_ipv6(cand):
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        yield m.span()


def _phone_spans(text: str):
    for rx, lo in ((_PHONE_INTL, 8), (_PHONE_NATIONAL, 9)):
        for m in rx.finditer(text):
            n = sum(ch.isdigit() for ch in m.group(0))
            if lo <= n <= 15 and not _after_version_cue(text, m.start()):
                yield m.span()  # "Version 1.202.555.0143" is no phone number
    for m in _PHONE_LABELLED.finditer(text):
        n = sum(ch.isdigit() for ch in m.group(1))
        if 7 <= n <= 15:
            yield m.span(1)


_NAME_WORD = re.compile(_NAME)


# A script without case has no capital to tell a name from the words after it ("Dear 各位同事 请查收",
# "Dear مدير المبيعات في الشركة" were taken whole): there, a name is at most two words, and in Chinese or
# Japanese (written without spaces, a whole name is one "word") one word of at most four characters.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CASELESS_NAME_WORDS = 2
_CJK_NAME_MAX = 4


def _caseless_name_goes_on(word: str, name: list) -> bool:
    """Whether `word`, of a script without case, may be (the next) part of a name."""
    if word[0].isupper():
        return True
    if _CJK.match(word):
        return not name and len(word) <= _CJK_NAME_MAX
    return len(name) < _CASELESS_NAME_WORDS


def _initial(words: list, i: int, told: str) -> bool:
    """Whether words[i] is an initial: one capital letter with its period, or before another capitalised
    word ("Mr A Smith"; "A" is otherwise the article that _NOT_NAMES skips)."""
    word = words[i].group(0)
    if len(word) != 1 or not word.isupper():
        return False
    if told[words[i].end() : words[i].end() + 1] == ".":
        return True
    return i + 1 < len(words) and words[i + 1].group(0)[0].isupper()


# A second name joined to a cue's first ("Dear John and Mary Smith" kept Mary Smith): read after "and" or
# "&" as the cue's own words are, unless another cue or title starts it ("Dear Anna and Dear Bob").
_AND_NAME = re.compile(rf"[ \t]+(?:and|&)[ \t]+(?=((?:{_NAME_PART}[ \t]+){{0,2}}{_NAME}))")
_NOT_JOINED = frozenset({"Dear"}) | _NOT_NAMES


def _person_spans(text: str):
    for start, end, cue in _cue_and_title_names(text):
        yield start, end
        # after a cue only: "Dr. Smith and Microsoft" is no second person; and each name joined on
        # ("Dear John and Mary and Paul Smith")
        while cue and (joined := _AND_NAME.match(text, end)):
            told = joined.group(1)
            first = _NAME_WORD.match(told)
            span = (
                _name_in(told, list(_NAME_WORD.finditer(told))) if first.group(0) not in _NOT_JOINED else None
            )
            if span is None:
                break
            start, end = joined.start(1) + span[0], joined.start(1) + span[1]
            yield start, end


def _cue_and_title_names(text: str):
    """The names after a title or a cue, as (start, end, after a cue)."""
    for rx in (_PERSON_TITLE, _PERSON_CUE):
        for m in rx.finditer(text):
            told = m.group(1)
            span = _name_in(told, list(_NAME_WORD.finditer(told)))
            if span:
                yield m.start(1) + span[0], m.start(1) + span[1], rx is _PERSON_CUE


def _name_in(told: str, words: list):
    """The span in `told` of the name its words start with, or None."""
    skip = 0  # "Dear Sir", "Dear Mr. Smith": not a name, or read by _PERSON_TITLE
    while skip < len(words) and words[skip].group(0) in _NOT_NAMES:
        if _initial(words, skip, told):
            break
        skip += 1
    name = []  # the capitalised words that follow: "Dr. McDonald said" is one name
    for i in range(skip, len(words)):
        w, word = words[i], words[i].group(0)
        initial = _initial(words, i, told)
        if word[0].islower() or (word in _NOT_NAMES and not initial):
            break
        if not initial and not _caseless_name_goes_on(word, name):
            break
        name.append(w)
    if name and not (len(name) == 1 and _initial(words, skip, told)):  # an initial alone: "Dr. A."
        return name[0].start(), name[-1].end()
    return None


def _regex_spans(rx: re.Pattern):
    def spans(text: str):
        for m in rx.finditer(text):
            yield m.span()

    return spans


_DETECTORS = [
    ("URL_WITH_CREDENTIALS", _regex_spans(_URL_CREDS)),
    ("SECRET", _secret_spans),
    ("EMAIL", _regex_spans(_EMAIL)),
    ("IBAN", _iban_spans),
    ("CARD", _card_spans),
    ("NATIONAL_ID", _ssn_spans),
    ("IP", _ip_spans),
    ("BIRTH_DATE", _birth_date_spans),
    ("PHONE", _phone_spans),
    ("ADDRESS", _address_spans),
    ("PERSON", _person_spans),
]


# What the rating page shows differently from what was typed, so that a detector reading the typed text
# misses PII a rater then reads: a character reference (&#64;, &#x40;, &commat;), which Markdown renders
# as the character ("john&#64;example.com"); a backslash escape of punctuation ("example\\.com" shows
# as "example.com"); both only outside code (labelapp/shown_text.py), where they show as typed (a
# regex in a code block, "^\\w+@example\\.com$", is no address); and, anywhere, an invisible character
# inside a value ("john\u200b.doe@...": zero-width and bidirectional controls, word joiners, the soft
# hyphen).
_HIDING = re.compile(
    CHARACTER_REFERENCE + r"|\\[" + re.escape(ESCAPABLE) + "]"
    "|[\u00ad\u034f\u061c\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufe00-\ufe0f\ufeff]"
    # and lookalikes that read as ASCII: fullwidth forms (ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ), the small
    # commercial at, digits of other scripts (٤١١١ ...): each detector reads them as their ASCII twin
    "|[\uff01-\uff5e\ufe6b]|(?![0-9])\\d"
)


@dataclass
class _Shown:
    """`text` as the page shows it, and where each of its hiding pieces came from: parallel lists of
    the piece's start and end in the shown text and in the typed one (a removed character is a piece
    of length 0 in the shown text)."""

    text: str
    shown_start: list[int]
    shown_end: list[int]
    typed_start: list[int]
    typed_end: list[int]

    def typed_span(self, start: int, end: int) -> tuple[int, int]:
        """The typed text's span that shows as shown[start:end], whole pieces included."""
        return self._typed(start, edge=0), self._typed(end - 1, edge=1)

    def _typed(self, pos: int, *, edge: int) -> int:
        k = bisect.bisect_right(self.shown_start, pos) - 1
        if k >= 0 and pos < self.shown_end[k]:  # inside a piece: all of it
            return self.typed_end[k] if edge else self.typed_start[k]
        offset = self.typed_end[k] - self.shown_end[k] if k >= 0 else 0
        return pos + offset + edge


def _ascii_twin(char: str) -> str:
    """What a lookalike reads as (a digit of another script, a fullwidth form); "" for an invisible."""
    if char.isdigit() and unicodedata.decimal(char, None) is not None:
        return str(unicodedata.decimal(char))
    twin = unicodedata.normalize("NFKC", char)
    return twin if twin.isascii() and twin != char else ""


def _shown(text: str) -> _Shown | None:
    """None when the page shows `text` as typed."""
    out: list[str] = []
    shown = _Shown("", [], [], [], [])
    typed_pos = shown_pos = 0
    code = CodeSpans(text)
    for m in _HIDING.finditer(text):
        piece = m.group(0)
        if piece[0] in "&\\" and code and code.inside(m.start()):
            continue  # shown as typed in code
        if piece[0] == "&":
            as_shown = html.unescape(piece)
            if as_shown == piece:  # not a reference ("&notaname;")
                continue
        elif piece[0] == "\\":
            as_shown = piece[1:]
        else:
            as_shown = _ascii_twin(piece)
        out.append(text[typed_pos : m.start()])
        shown_pos += m.start() - typed_pos
        shown.shown_start.append(shown_pos)
        shown_pos += len(as_shown)
        shown.shown_end.append(shown_pos)
        shown.typed_start.append(m.start())
        shown.typed_end.append(m.end())
        out.append(as_shown)
        typed_pos = m.end()
    if not shown.shown_start:
        return None
    out.append(text[typed_pos:])
    shown.text = "".join(out)
    return shown


def scrub(text: str) -> ScrubResult:
    """Replace PII with typed placeholders; report counts by type (values are never kept).

    PII is looked for in the text as typed and as the page shows it (references decoded, escapes and
    invisible characters gone, see _HIDING); a value found in the shown text is replaced in the typed
    one, with every piece that showed as part of it. Everything else stays as written. The shown
    text's finds come first: the typed text may hold only part of a value ("Jo&#104;n Smith" reads
    as "Jo" after "Dear"), and that part must not keep the rest from being replaced."""
    spans_by_kind = [(kind, list(detector(text))) for kind, detector in _DETECTORS]
    shown = _shown(text) if ("&" in text or "\\" in text or not text.isascii()) else None
    if shown is not None:
        for (_, typed_spans), (_, detector) in zip(spans_by_kind, _DETECTORS, strict=True):
            typed_spans[:0] = [shown.typed_span(start, end) for start, end in detector(shown.text)]
    return _replace(text, _claim(spans_by_kind))


def _claim(spans_by_kind) -> list[tuple[int, int, str]]:
    """The spans that get a placeholder: in detector order (an earlier one wins an overlap), each kind's
    in the order given, skipping any that overlaps one claimed already. Sorted by start."""
    taken: list[tuple[int, int, str]] = []  # claimed spans, sorted by start, never overlapping
    starts: list[int] = []
    for kind, spans in spans_by_kind:
        for start, end in spans:
            # The spans are disjoint, so their ends rise with their starts: of those starting before
            # `end`, only the last can reach past `start`. (Testing every claimed span made a text
            # with thousands of matches quadratic: 1.8 s for 50,000 characters of "a@b.cd ".)
            i = bisect.bisect_left(starts, end)
            if start >= end or (i > 0 and taken[i - 1][1] > start):
                continue
            taken.insert(i, (start, end, kind))
            starts.insert(i, start)
    return taken


def _replace(text: str, taken: list[tuple[int, int, str]]) -> ScrubResult:
    if not taken:
        return ScrubResult(text=text)
    out, pos = [], 0
    for start, end, kind in taken:
        out.append(text[pos:start])
        out.append(PLACEHOLDERS[kind])
        pos = end
    out.append(text[pos:])
    return ScrubResult(text="".join(out), found=dict(Counter(kind for _, _, kind in taken)))


def merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    total: Counter = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def scrub_model_text(obj) -> None:
    """Scrub `obj.text` in place and add what was replaced to `obj.pii_found` (rows typed by staff).

    Ingest scrubs on its own path; this covers the admin, so no path stores PII for training.
    """
    result = scrub(obj.text)
    obj.text = result.text
    obj.pii_found = merge_counts(obj.pii_found or {}, result.found)
