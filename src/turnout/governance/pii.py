"""Finding and redacting personal data and secrets in prompts and responses.

Precision comes first: a guard that redacts order numbers, dates or prices makes a gateway
unusable, so each kind is a narrow pattern plus a check where one exists (Luhn for cards, mod-97
for IBANs, valid SSN ranges, key formats that look random), and every pattern needs a boundary on
both sides, so a match is never cut out of a longer number or word.

Matches are chosen left to right: the leftmost candidate wins, at one start the longer (then the
more specific kind), and a candidate is overruled only by a strictly longer one that starts inside
it. Every pattern has a bounded length, and a candidate depends only on the text from a few
characters before it to just after its possible end. That locality is what lets `StreamRedactor`
give exactly `redact`'s result for a text that arrives in pieces while holding back a bounded
tail: usually just the unfinished token at the end, at most `MAX_HOLD_BACK` characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from string import ascii_uppercase
from typing import Final, Literal, get_args

from stdnum import iban, luhn

PiiKind = Literal["email", "phone", "card", "ssn", "iban", "api_key"]
ALL_KINDS: Final[frozenset[PiiKind]] = frozenset(get_args(PiiKind))


@dataclass(frozen=True, slots=True)
class PiiMatch:
    kind: PiiKind
    start: int  # character offsets into the text
    end: int


_LOOKAHEAD: Final = 2  # the farthest any lookahead reads past what its pattern consumed
_CONTEXT: Final = 16  # what a stream keeps before its unemitted text: lookbehinds reach back 8


def _whole(m: re.Match[str]) -> int | None:
    return m.end()


@dataclass(frozen=True, slots=True, eq=False)
class _Detector:
    """One pattern for one kind.

    `chars` is every character the pattern can consume, and every character its lookaheads
    can step over: once a run of them has ended, what follows cannot change a match inside it.
    """

    kind: PiiKind
    pattern: re.Pattern[str]
    chars: str  # a regex character class
    max_len: int  # the longest text the pattern can consume (checked by the tests)
    check: Callable[[re.Match[str]], int | None] = _whole  # the end if valid, else None
    anchor: str = ""  # in every match, at most `reach` characters after its start:
    reach: int = 0  # a search skips to the next one
    run: re.Pattern[str] = field(init=False)
    window: int = field(init=False)  # from a position, what its candidate can depend on

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", re.compile(f"{self.chars}*", re.ASCII))
        object.__setattr__(self, "window", self.max_len + _LOOKAHEAD + 1)


_LETTER_VALUES: Final = str.maketrans({c: str(n) for n, c in enumerate(ascii_uppercase, 10)})


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _phone(m: re.Match[str]) -> int | None:
    return m.end() if 10 <= len(_digits(m[0])) <= 15 else None


def _card(m: re.Match[str]) -> int | None:
    digits = _digits(m[0])
    return m.end() if 13 <= len(digits) <= 19 and luhn.is_valid(digits) else None


def _iban(m: re.Match[str]) -> int | None:
    """The longest valid IBAN that ends at a group: `... 7034 2024` may be an IBAN and a year.
    The mod-97 sum is tried first only because it is cheap; stdnum has the last word."""
    text = m[0]
    while len(text) >= 15:
        compact = text.replace(" ", "")
        as_number = int((compact[4:] + compact[:4]).translate(_LETTER_VALUES))
        if as_number % 97 == 1 and iban.is_valid(compact):
            return m.start() + len(text)
        text = text.rpartition(" ")[0]
    return None


def _random_enough(token: str) -> bool:
    """Keys are random: mixed case with digits, or one long unbroken run (hex keys). Names such
    as `sk-learn-contrib-2024` are neither."""
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return False
    mixed_case = any(c.isupper() for c in token) and any(c.islower() for c in token)
    return mixed_case or (token.isalnum() and len(token) >= 32)


def _api_key(m: re.Match[str]) -> int | None:
    if m["openai"] and not _random_enough(m["openai"]):
        return None
    if m["slack"] and not any(c.isdigit() for c in m["slack"]):
        return None
    return m.end()


def _bearer(m: re.Match[str]) -> int | None:
    token = m[0].rstrip("=")
    has_digit, has_letter = any(c.isdigit() for c in token), any(c.isalpha() for c in token)
    return m.end() if has_digit and has_letter else None


# Patterns that open with a test of one character do so because search() is faster then.
# Numbers: not glued to a word, a `+`, or to another number by a separator, at either end.
_NUMBER_BEFORE = r"(?<![\w+.-])(?<![0-9][ .-])"
_NUMBER_AFTER = r"(?![\w(]|[ .-][0-9])"
_JWT_SEGMENTS = (300, 1000, 700)  # header, payload, signature: JWTs of up to about 2,000 chars

_DETECTORS: Final[tuple[_Detector, ...]] = (
    _Detector(
        "api_key",
        re.compile(
            rf"""(?=[sAgxre])(?<![\w-])(?:
              sk-(?P<openai>(?:proj-|svcacct-|admin-|ant-(?:api|admin)[0-9]{{2}}-)?
                 [A-Za-z0-9_-]{{20,250}})
            | (?:AKIA|ASIA)[A-Z0-9]{{16}}
            | gh[pousr]_[A-Za-z0-9]{{36,251}} | github_pat_[A-Za-z0-9_]{{22,255}}
            | xox[baprs]-(?P<slack>[A-Za-z0-9-]{{10,250}})
            | AIza[A-Za-z0-9_-]{{35}}
            | [sr]k_live_[A-Za-z0-9]{{20,247}}
            | eyJ[A-Za-z0-9_-]{{8,{_JWT_SEGMENTS[0]}}}\.eyJ[A-Za-z0-9_-]{{8,{_JWT_SEGMENTS[1]}}}
              \.[A-Za-z0-9_-]{{0,{_JWT_SEGMENTS[2]}}}
            )(?![\w-]|\.[\w-])""",
            re.ASCII | re.VERBOSE,
        ),
        chars=r"[\w.-]",
        max_len=8 + sum(_JWT_SEGMENTS),
        check=_api_key,
    ),
    _Detector(
        "api_key",  # `Bearer <token>`: only the token is redacted
        re.compile(
            r"""(?<=[Rr]\ )(?<=(?<![\w-])(?:[Bb]earer|BEARER)\ )
            [A-Za-z0-9._~+/-]{19,1999}[A-Za-z0-9_~+/-]={0,2}
            (?![\w~+/=-]|\.[\w~+/=-])""",
            re.ASCII | re.VERBOSE,
        ),
        chars=r"[\w.~+/=-]",
        max_len=2002,
        check=_bearer,
    ),
    _Detector(
        "iban",
        re.compile(
            r"""(?=[A-Z])(?<!\w)[A-Z]{2}[0-9]{2}
            (?:[A-Z0-9]{11,30}|(?:\ [A-Z0-9]{4}){2,7}(?:\ [A-Z0-9]{1,3})?)
            (?!\w)""",
            re.ASCII | re.VERBOSE,
        ),
        chars="[A-Z0-9 ]",
        max_len=43,
        check=_iban,
    ),
    _Detector(
        "card",  # 13-19 digits from 2-6 (Visa, Mastercard, Amex, Discover, JCB...), Luhn-valid
        re.compile(
            rf"""(?=[2-6]){_NUMBER_BEFORE}
            [2-6](?:[0-9]{{12,18}}
                   |[0-9]{{3}}(?P<sep>[ -])[0-9]{{3,6}}(?:(?P=sep)[0-9]{{3,6}}){{1,3}})
            {_NUMBER_AFTER}""",
            re.ASCII | re.VERBOSE,
        ),
        chars="[0-9 .-]",
        max_len=32,
        check=_card,
    ),
    _Detector(
        "ssn",  # area 000, 666 and 9xx, group 00 and serial 0000 are never issued
        re.compile(
            rf"""(?=[0-8]){_NUMBER_BEFORE}
            (?!000|666|9)[0-9]{{3}}(?P<sep>[ -])(?!00)[0-9]{{2}}(?P=sep)(?!0000)[0-9]{{4}}
            {_NUMBER_AFTER}""",
            re.ASCII | re.VERBOSE,
        ),
        chars="[0-9 .-]",
        max_len=11,
    ),
    _Detector(
        # `+` and 10-15 digits, or North American with `(...)`, dashes or dots. Not bare digits
        # nor `555 123 4567`: ids, timestamps and tables of numbers look like those.
        "phone",
        re.compile(
            rf"""(?=[+(0-9]){_NUMBER_BEFORE}(?:
              \+[1-9][0-9]{{0,14}}(?:[ .-]?\([0-9]{{1,4}}\)[ .-]?[0-9]{{1,12}})?
                (?:[ .-][0-9]{{1,12}}){{0,7}}
            | (?:1[ .-]?)?\([0-9]{{3}}\)\ ?[0-9]{{3}}[ .-][0-9]{{4}}
            | (?:1[ -])?[0-9]{{3}}-[0-9]{{3}}-[0-9]{{4}}
            | (?:1[ .])?[0-9]{{3}}\.[0-9]{{3}}\.[0-9]{{4}}
            ){_NUMBER_AFTER}""",
            re.ASCII | re.VERBOSE,
        ),
        chars=r"[0-9 .()+-]",
        max_len=127,
        check=_phone,
    ),
    _Detector(
        "email",
        re.compile(
            r"""(?<![\w%+-])(?<![\w%+-]\.)
            [\w%+-][\w%+.-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.){1,6}[A-Za-z]{2,24}
            (?![\w-]|\.[\w-])""",
            re.ASCII | re.VERBOSE,
        ),
        chars=r"[\w%+.@-]",
        max_len=473,
        anchor="@",
        reach=64,
    ),
)

_SCAN_HOLD: Final = max(d.max_len for d in _DETECTORS) + max(d.window for d in _DETECTORS)
MAX_HOLD_BACK: Final[int] = _SCAN_HOLD * 9 // 8
"""The most text a `StreamRedactor` ever holds back, in characters. Only a long unbroken run of
key-like characters (a JWT, a base64 blob) comes near it; prose holds back its last word or less.
(A scan holds back less than `_SCAN_HOLD`; while that much is held, up to an eighth more is
taken in before the next scan.)"""

_PLACEHOLDER: Final[dict[PiiKind, str]] = {kind: f"[{kind.upper()}]" for kind in ALL_KINDS}


def find_pii(text: str, kinds: Collection[PiiKind] = ALL_KINDS) -> list[PiiMatch]:
    """Non-overlapping matches in text order (when two overlap, keep the longer / more specific)."""
    return _scan(text, _detectors(kinds), 0, complete=True)[0]


def redact(text: str, kinds: Collection[PiiKind] = ALL_KINDS) -> tuple[str, list[PiiMatch]]:
    """Each match replaced by a placeholder like `[EMAIL]`, `[PHONE]`, `[CARD]`, `[SSN]`,
    `[IBAN]`, `[API_KEY]`."""
    matches = find_pii(text, kinds)
    return _render(text, 0, len(text), matches), matches


class StreamRedactor:
    """Redacts a text that arrives in pieces (a streamed LLM response): feed() returns the text
    that is now safe to emit and holds back a tail that could still be the start of a match;
    flush() returns the rest at the end. Concatenating feed() outputs + flush() equals
    redact(whole text)[0] for ANY way of splitting the text.

    What is held back is bounded by `MAX_HOLD_BACK`, so a stream is never held whole; the price is
    that matches are bounded too, in `redact` as much as here (a JWT longer than about 2,000
    characters is not found at all). One redactor per text: flush() ends it.
    """

    def __init__(self, kinds: Collection[PiiKind] = ALL_KINDS) -> None:
        self._detectors = _detectors(kinds)
        self._text = ""  # what is not emitted yet, after up to _CONTEXT characters that were
        self._pos = 0  # where the part not emitted yet starts in _text
        self._unseen = 0  # characters fed since the text was last scanned
        self._found: list[PiiKind] = []

    def feed(self, piece: str) -> str:
        self._text += piece
        self._unseen += len(piece)
        held = len(self._text) - self._pos - self._unseen
        if self._unseen <= held // 8:
            return ""  # a long token is held: scanning it again per piece would cost O(n^2)
        return self._advance(complete=False)

    def flush(self) -> str:
        out = self._advance(complete=True)
        self._text, self._pos = "", 0
        return out

    @property
    def found(self) -> list[PiiKind]:
        """The kind of each match redacted so far, in order (for metrics and logs)."""
        return list(self._found)

    def _advance(self, *, complete: bool) -> str:
        matches, done = _scan(self._text, self._detectors, self._pos, complete=complete)
        out = _render(self._text, self._pos, done, matches)
        self._found += (m.kind for m in matches)
        keep = max(0, done - _CONTEXT)
        self._text, self._pos, self._unseen = self._text[keep:], done - keep, 0
        return out


def _detectors(kinds: Collection[PiiKind]) -> tuple[_Detector, ...]:
    unknown = set(kinds) - ALL_KINDS
    if unknown:
        raise ValueError(f"unknown PII kinds: {', '.join(sorted(unknown))}")
    return tuple(d for d in _DETECTORS if d.kind in kinds)


class _Candidates:
    """One detector's candidates in a text, searched left to right and cached.

    Before the horizon a candidate (or its absence) is final: the text after it cannot change
    it. For a text that is still arriving, the horizon is the start of the trailing run of the
    detector's characters, but no farther back than its window.
    """

    __slots__ = ("_cached", "_detector", "_from", "_text", "horizon")
    _cached: PiiMatch | None

    def __init__(self, detector: _Detector, text: str, *, complete: bool) -> None:
        self._detector, self._text = detector, text
        if complete:
            self.horizon = len(text) + 1
        else:
            window = detector.window
            run = detector.run.match(text[-window:][::-1]).end()  # type: ignore[union-attr]
            self.horizon = len(text) - min(run, window - 1)
        self._from, self._cached = -1, None  # the first candidate from _from on

    def first_from(self, i: int) -> PiiMatch | None:
        """The first candidate starting at or after i, or None if none starts before the horizon."""
        cached = self._cached
        if 0 <= self._from <= i and (cached is None or cached.start >= i):
            return cached
        self._from, self._cached = i, self._search(i)
        return self._cached

    def _search(self, i: int) -> PiiMatch | None:
        detector, text = self._detector, self._text
        while True:
            if detector.anchor:
                at = text.find(detector.anchor, i)
                if at < 0:
                    return None
                i = max(i, at - detector.reach)
            m = detector.pattern.search(text, i)
            if m is None or m.start() >= self.horizon:
                return None
            if (end := detector.check(m)) is not None:
                return PiiMatch(detector.kind, m.start(), end)
            i = m.start() + 1


def _scan(
    text: str, detectors: tuple[_Detector, ...], pos: int, *, complete: bool
) -> tuple[list[PiiMatch], int]:
    """The matches chosen from pos on, and how far the choice is final (the whole text when
    complete; for a text still arriving, up to where more text could change it)."""
    cursors = [_Candidates(d, text, complete=complete) for d in detectors]
    horizon = min((c.horizon for c in cursors), default=len(text) + 1)
    chosen: list[PiiMatch] = []
    while True:
        firsts = [(m, rank) for rank, c in enumerate(cursors) if (m := c.first_from(pos))]
        if not firsts:
            return chosen, max(pos, min(horizon, len(text)))
        best = min(firsts, key=lambda f: (f[0].start, f[0].start - f[0].end, f[1]))[0]
        if best.start >= horizon:
            return chosen, max(pos, horizon)
        if best.end > horizon:  # what starts inside it is not known yet
            return chosen, best.start
        leftmost = best
        for cursor in cursors:
            m = cursor.first_from(leftmost.start + 1)
            while m is not None and m.start < leftmost.end:
                if m.end - m.start > best.end - best.start:
                    best = m
                m = cursor.first_from(m.start + 1)
        chosen.append(best)
        pos = best.end


def _render(text: str, start: int, end: int, matches: list[PiiMatch]) -> str:
    parts: list[str] = []
    at = start
    for m in matches:
        parts += (text[at : m.start], _PLACEHOLDER[m.kind])
        at = m.end
    parts.append(text[at:end])
    return "".join(parts)
