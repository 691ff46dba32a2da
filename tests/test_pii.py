"""PII detection and redaction: what is found, what must not be, and streams that agree with
whole texts however they are split."""

from __future__ import annotations

import base64
import random
import re
import re._parser  # type: ignore[import-not-found]
from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.governance import pii
from turnout.governance.pii import (
    ALL_KINDS,
    MAX_HOLD_BACK,
    PiiKind,
    PiiMatch,
    StreamRedactor,
    find_pii,
    redact,
)

# Key-shaped fixtures are spliced so that secret scanners leave this file alone.
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
ANTHROPIC_KEY = "sk-ant-api03-" + "Xy7Qm2Lp9Rt4Vb6Nc1Hd8Kf3Gj5Ws0Ze" * 3 + "AbCd-AA"
OPENAI_KEY = "sk-" + "proj-Tq3Lm8Rp2Xv7Nb4Kc9Hd1Wf6Gj5Sz0Ya_Ue3Io8Pr2Ty7Qw4Er1-Zx6Cv9Bn5Mk"

# (a sentence, the kind, the PII that goes into the sentence's {})
FOUND: list[tuple[str, PiiKind, str]] = [
    ("Send the invoice to {} today.", "email", "jane.doe+billing@example.co.uk"),
    ("Contact: {}", "email", "support@mail.turnout-ai.io"),
    ("Mail me ({}).", "email", "ops_team@corp.example.com"),
    ("Call me at {} after lunch.", "phone", "(555) 123-4567"),
    ("My cell is {}.", "phone", "555-123-4567"),
    ("Reach the desk on {} tomorrow", "phone", "555.123.4567"),
    ("US office: {}, ask for Sam.", "phone", "+1 555 123 4567"),
    ("Whatsapp {} please", "phone", "+4915112345678"),
    ("London: {}.", "phone", "+44 (0)20 7946 0958"),
    ("Paris: {}", "phone", "+33 1 23 45 67 89"),
    ("Toll free {} anytime", "phone", "1-800-555-1234"),
    ("Mobile {} is mine", "phone", "+1 (415) 555-0132"),
    ("Charge it to {} please.", "card", "4111 1111 1111 1111"),
    ("card={};", "card", "4111-1111-1111-1111"),
    ("The Stripe test card {} works.", "card", "4242424242424242"),
    ("Amex {} expires 12/27", "card", "3782 822463 10005"),
    ("Mastercard {}.", "card", "5500 0000 0000 0004"),
    ("My SSN is {}.", "ssn", "123-45-6789"),
    ("SSN {} on the form", "ssn", "078 05 1120"),
    ("Wire it to {} by Friday.", "iban", "DE89 3704 0044 0532 0130 00"),
    ("IBAN: {}", "iban", "GB82WEST12345698765432"),
    ("Konto {}, danke", "iban", "NL91 ABNA 0417 1643 00"),
    ("Norway {}.", "iban", "NO93 8601 1117 947"),
    ("export OPENAI_API_KEY={}", "api_key", OPENAI_KEY),
    ("legacy key {}", "api_key", "sk-" + "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34"),
    ("deepseek {} works", "api_key", "sk-" + "0123456789abcdef0123456789abcdef"),
    ("Claude key: {}.", "api_key", ANTHROPIC_KEY),
    ("aws_access_key_id = {}", "api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("session {} expires", "api_key", "ASIA" + "Y34FZKBOKMUTVV7A"),
    ("token {} in CI", "api_key", "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a"),
    ("GITHUB_TOKEN={}", "api_key", "gho_" + "16C7e42F292c6912E7710c838347Ae178B4a"),
    (
        "pat {} ok",
        "api_key",
        "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF",
    ),
    ("Slack bot {} here", "api_key", "xoxb-" + "1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("maps key {} in the page", "api_key", "AIza" + "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"),
    ("stripe {} and", "api_key", "sk_" + "live_51H8AbCdEfGhIjKlMnOpQrStUv"),
    ("restricted {}.", "api_key", "rk_" + "live_51H8AbCdEfGhIjKlMnOpQrStUv"),
    ("cookie session={}; Path=/", "api_key", JWT),
    ("Authorization: Bearer {}", "api_key", "8f14e45fceea167a5a36dedd4bea2543c9f0f895fb98ab91"),
    ("Authorization: bearer {}", "api_key", "dGhpcyBpcyBhIHRva2VuIDEyMw=="),
]


@pytest.mark.parametrize(("sentence", "kind", "secret"), FOUND)
def test_each_kind_found_and_redacted(sentence: str, kind: PiiKind, secret: str) -> None:
    text = sentence.format(secret)
    start = sentence.index("{}")
    match = PiiMatch(kind, start, start + len(secret))
    assert find_pii(text) == [match]
    assert redact(text) == (sentence.format(f"[{kind.upper()}]"), [match])


NOT_PII = [
    "The meeting is on 2024-01-15 at 10:30, or 15.01.2024, or 01/15/2024.",
    "Released in 2023; we upgraded to Python 3.11.7 and v1.2.3 then 10.0.19045.2965.",
    "It costs $1,299.99 (or €1.299,99), plus 15% tax: 1,000,000 units.",
    "Ship to ZIP 94105-1234 or 10001.",
    "Order #12345 and order 1234567890 and invoice INV-2024-000123 shipped.",
    "A bare 10-digit number like 5551234567 is not treated as a phone.",
    "Spaces only: 555 123 4567 is ambiguous (a table of numbers), so it is left alone.",
    "Server 192.168.1.100 and 10.0.0.1, netmask 255.255.255.0.",
    "Request id 123e4567-e89b-12d3-a456-426614174000 failed.",
    "Fixed in commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (9fceb02).",
    "Timestamp 1700000000000 ms and epoch 1700000000.",
    "Luhn-invalid: 4111 1111 1111 1112 and 4242424242424241.",
    "Too few digits for a card: 4111 1111 1111 and 411111111111.",
    "Not a card network: 1234 5678 9012 3452 or 9111111111111111111.",
    "Invalid IBAN checksum: DE88 3704 0044 0532 0130 00 and GB82WEST12345698765433.",
    "Unissued SSNs: 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000.",
    "An SSN needs separators: 123456789; a mix is not one: 123-45 6789.",
    "ISBN 978-3-16-148410-0 and ISBN-13 978-0-306-40615-7.",
    "We use sk-learn (scikit-learn), sk-learn-contrib-imbalanced and the task-force.",
    "A plan: sk-lab-2024-experiment-results-final is a folder name.",
    "Placeholders: Bearer YOUR_API_KEY_HERE, Bearer $TOKEN, Bearer token-based-authentication.",
    "Not keys: AKIA1234, akiaIOSFODNN7EXAMPLE, ghp_short, xoxo-hugs, eyJhbGciOi alone.",
    "Math: 3+4=7, x = -12.5e-3, 2^31-1 = 2147483647, ratio 16:9.",
    "Email-ish: user@localhost, @mention, a@b, name at example dot com.",
    "Versions 1.2.3-beta.4+build.5 and 2.0.0-rc.1; temperatures -12.5 and +15.5 degrees.",
    "Coordinates 37.7749, -122.4194; phone extension x1234.",
    "Lowercase IBANs are not looked for: de89 3704 0044 0532 0130 00.",
]


@pytest.mark.parametrize("text", NOT_PII)
def test_near_misses_are_not_matched(text: str) -> None:
    assert find_pii(text) == []
    assert redact(text) == (text, [])


def test_offsets_index_the_text() -> None:
    text = (
        "Hi, I'm Jo (jo@example.org, +1 555 123 4567). Card 4111111111111111, SSN 123-45-6789,"
        f" IBAN GB82 WEST 1234 5698 7654 32, key {OPENAI_KEY}, and that's all."
    )
    matches = find_pii(text)
    assert [(m.kind, text[m.start : m.end]) for m in matches] == [
        ("email", "jo@example.org"),
        ("phone", "+1 555 123 4567"),
        ("card", "4111111111111111"),
        ("ssn", "123-45-6789"),
        ("iban", "GB82 WEST 1234 5698 7654 32"),
        ("api_key", OPENAI_KEY),
    ]
    assert redact(text)[0] == (
        "Hi, I'm Jo ([EMAIL], [PHONE]). Card [CARD], SSN [SSN], IBAN [IBAN], key [API_KEY],"
        " and that's all."
    )


def test_kinds_limit_what_is_found() -> None:
    text = "jo@example.org or 555-123-4567"
    assert [m.kind for m in find_pii(text, ["phone"])] == ["phone"]
    assert redact(text, {"email"})[0] == "[EMAIL] or 555-123-4567"
    assert find_pii(text, []) == []
    with pytest.raises(ValueError, match="unknown PII kinds: passport"):
        find_pii(text, ["passport"])  # type: ignore[list-item]
    assert frozenset({"email", "phone", "card", "ssn", "iban", "api_key"}) == ALL_KINDS


OVERLAPS = [
    # A phone number that turns out to be the start of a longer email address: the longer wins.
    ("write to +1 555 123 4567@sms.example.com", "write to +1 555 123 [EMAIL]"),
    # At one start the longer wins: an email whose local part is a card number.
    ("4111111111111111@example.com", "[EMAIL]"),
    # A JWT after `Bearer` is one match, not two.
    (f"Authorization: Bearer {JWT}", "Authorization: Bearer [API_KEY]"),
]


@pytest.mark.parametrize(("text", "redacted"), OVERLAPS)
def test_overlaps_keep_the_longer_match(text: str, redacted: str) -> None:
    assert redact(text)[0] == redacted
    assert len(find_pii(text)) == 1


def test_iban_followed_by_more_groups() -> None:
    # Belgian IBANs are 16 characters; the year after it looks like one more group.
    assert redact("BE71 0961 2345 6769 2024 invoice")[0] == "[IBAN] 2024 invoice"
    assert redact("DE89 3704 0044 0532 0130 00 EUR")[0] == "[IBAN] EUR"


def test_sentence_punctuation_is_not_part_of_a_match() -> None:
    assert redact(f"Use Bearer {'a1B2' * 8}. Then")[0] == "Use Bearer [API_KEY]. Then"
    assert redact("mail jo@example.org.")[0] == "mail [EMAIL]."
    assert redact("call 555-123-4567.")[0] == "call [PHONE]."


def test_declared_lengths_cover_the_patterns() -> None:
    """Streaming relies on every pattern consuming at most `max_len` characters."""
    for detector in pii._DETECTORS:
        pattern = detector.pattern
        _, widest = re._parser.parse(pattern.pattern, pattern.flags).getwidth()
        assert widest <= detector.max_len, detector


def test_long_jwt_is_found_up_to_the_bound_and_not_beyond() -> None:
    payload = base64.urlsafe_b64encode(b'{"sub":"' + b"x" * 700 + b'"}').decode().rstrip("=")
    jwt = f"eyJhbGciOiJSUzI1NiJ9.{payload}.{'S1g-n_' * 57}"
    assert 1000 < len(jwt) < 2000
    assert redact(f"id_token={jwt} end")[0] == "id_token=[API_KEY] end"
    huge = f"eyJhbGciOiJSUzI1NiJ9.eyJ{'A' * 3000}.{'S1g-n_' * 57}"
    assert find_pii(f"id_token={huge} end") == []  # beyond the bound: missed, streamed or not
    assert _streamed(f"id_token={huge} end", _cuts(len(huge), 7)) == f"id_token={huge} end"


# ---- streams ------------------------------------------------------------------------------------


def _streamed(text: str, cuts: Iterable[int]) -> str:
    redactor = StreamRedactor()
    bounds = [0, *sorted(cuts), len(text)]
    out = [redactor.feed(text[a:b]) for a, b in pairwise(bounds)]
    return "".join(out) + redactor.flush()


def _cuts(length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.sample(range(length + 1), min(length + 1, 12)))


def _consumed(text: str, matches: list[PiiMatch], out_len: int) -> int:
    """How much of text the first out_len characters of its redaction stand for."""
    pos = out = 0
    for m in matches:
        if out + m.start - pos >= out_len:
            break
        out += m.start - pos + len(f"[{m.kind.upper()}]")
        assert out <= out_len, "a placeholder was emitted in part"
        pos = m.end
    return pos + out_len - out


def _check_stream(text: str, cuts: list[int], kinds: frozenset[PiiKind] = ALL_KINDS) -> None:
    """The stream's output equals redact()'s, its found kinds are redact()'s, and it never
    holds back more than MAX_HOLD_BACK characters."""
    whole, matches = redact(text, kinds)
    redactor = StreamRedactor(kinds)
    out = ""
    bounds = [0, *sorted(cuts), len(text)]
    for a, b in pairwise(bounds):
        out += redactor.feed(text[a:b])
        assert whole.startswith(out)
        assert b - _consumed(text, matches, len(out)) <= MAX_HOLD_BACK
    out += redactor.flush()
    assert out == whole
    assert redactor.found == [m.kind for m in matches]


SAMPLES = [
    "jo@example.org",
    "a.b-c@x.io",
    "(555) 123-4567",
    "555-123-4567",
    "555.123.4567",
    "+1 555 123 4567",
    "+4915112345678",
    "+1 555 123 4567@sms.example.com",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4242424242424242",
    "378282246310005",
    "123-45-6789",
    "123 45 6789",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "BE71 0961 2345 6769",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a",
    "xoxb-" + "1234567890-AbCdEfGhIj",
    "AIza" + "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
    "sk_" + "live_51H8AbCdEfGhIjKlMnOpQrStUv",
    OPENAI_KEY,
    "sk-" + "0123456789abcdef0123456789abcdef",
    "Bearer 8f14e45fceea167a5a36dedd4bea2543",
    JWT,
]
NEAR_MISSES = [
    "2024-01-15",
    "v1.2.3",
    "$1,299.99",
    "94105-1234",
    "12345",
    "5551234567",
    "192.168.1.100",
    "4111 1111 1111 1112",
    "DE88 3704 0044 0532 0130 00",
    "000-12-3456",
    "sk-learn",
    "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "123e4567-e89b-12d3-a456-426614174000",
]
# Characters that glue pieces together into new near-matches, and prefixes that start one.
GLUE = list(" .,-@+()_/=:\n1234567890aZ") + ["sk-", "eyJ", "Bearer ", "AKIA", "DE", "+1 ", "@x.io"]

fragments = st.one_of(
    st.sampled_from(SAMPLES),
    st.sampled_from(NEAR_MISSES),
    st.sampled_from(GLUE),
    st.text(alphabet="aZ09 .-@+()_", max_size=8),
)
texts = st.lists(fragments, max_size=16).map("".join)


@st.composite
def split_texts(draw: st.DrawFn) -> tuple[str, list[int]]:
    text = draw(texts)
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=12))
    return text, cuts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_texts())
def test_any_split_streams_like_the_whole_text(case: tuple[str, list[int]]) -> None:
    text, cuts = case
    _check_stream(text, cuts)


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
@settings(max_examples=150, deadline=None)
@given(split_texts())
def test_any_split_streams_like_the_whole_text_for_one_kind(
    kind: PiiKind, case: tuple[str, list[int]]
) -> None:
    text, cuts = case
    _check_stream(text, cuts, frozenset([kind]))


@settings(max_examples=50, deadline=None)
@given(st.lists(fragments, min_size=20, max_size=60).map("".join), st.randoms())
def test_character_by_character_streams_like_the_whole_text(text: str, rng: random.Random) -> None:
    filler = "x" * rng.randrange(0, 100)  # moves the text against what the stream keeps
    _check_stream(filler + text, list(range(len(filler + text))))


def test_split_inside_every_kind_of_match() -> None:
    cases = [(sentence.format(secret), frozenset([kind])) for sentence, kind, secret in FOUND]
    cases += [(text, ALL_KINDS) for text, _ in cases + OVERLAPS]
    for text, kinds in cases:
        for cut in range(len(text) + 1):
            _check_stream(text, [cut], kinds)


def test_hold_back_is_bounded_on_long_runs() -> None:
    rng = random.Random(5)
    runs = {
        "letters": "a" * 30_000,
        "base64": base64.b64encode(rng.randbytes(22_000)).decode(),
        "digits and spaces": "1 " * 15_000,
        "upper groups": "AB12 " * 6_000,
        "endless jwt": "eyJhbGciOiJIUzI1NiJ9.eyJ" + "Qk" * 15_000,
    }
    for run in runs.values():
        _check_stream(run, list(range(0, len(run), 3)))  # checks the bound after every piece


def test_prose_holds_back_at_most_its_last_word() -> None:
    text = (
        "Thanks for the details. The export fails because the first row decides the columns, "
        "so later rows with extra keys raise an error; collect every key first, then write."
    )
    redactor = StreamRedactor()
    emitted = ""
    for i in range(0, len(text), 3):
        emitted += redactor.feed(text[i : i + 3])
        fed = text[: i + 3]
        assert len(fed) - len(emitted) <= len(fed.split()[-1]) + 1  # the last word and a space
    assert emitted + redactor.flush() == text


def test_flush_without_feed_and_empty_pieces() -> None:
    redactor = StreamRedactor()
    assert redactor.feed("") == ""
    assert redactor.flush() == ""
    assert redactor.found == []


def test_found_lists_each_match_in_order() -> None:
    redactor = StreamRedactor()
    pieces = ["mail jo@exa", "mple.org, card 4111 1111 ", "1111 1111 and ", "ann@example.org"]
    out = "".join(redactor.feed(p) for p in pieces) + redactor.flush()
    assert out == "mail [EMAIL], card [CARD] and [EMAIL]"
    assert redactor.found == ["email", "card", "email"]


# ---- cost ---------------------------------------------------------------------------------------

ADVERSARIAL = [
    "1" * 100_000,
    "1 " * 50_000,
    "1-" * 50_000,
    "+1 " * 33_000,
    "(555) " * 16_000,
    "a" * 100_000,
    "a." * 50_000,
    "a@" * 50_000,
    "a@a." * 25_000,
    "sk-" * 33_000,
    "Bearer a" * 12_500,
    "eyJa." * 20_000,
    "AB12 " * 20_000,
    "eyJ" + "A" * 100_000,
    "".join(random.Random(0).choice("1 -.@a+(") for _ in range(100_000)),
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: repr(t[:8]))
def test_adversarial_100kb_texts_finish(text: str) -> None:
    """Linear patterns (bounded repeats, no nested ambiguity): these run in milliseconds; a
    catastrophic backtrack would hang here until the test timeout."""
    redacted, _ = redact(text)
    assert _streamed(text, range(0, len(text), 4096)) == redacted
