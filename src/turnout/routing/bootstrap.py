"""Bootstrapping route examples: an LLM writes requests for each route, once, from the route
names and descriptions alone, and the embedded router uses them as evidence.

One line of description is thin evidence for a small CPU encoder; measured on `general-dev`, 25
LLM-written requests per route and 40 no-route requests took the embedded router from 79% to 93%
at the same cost per decision. Writing them costs one LLM call, so the result is kept in the
route example cache (example_cache.py), keyed by the routes and the model that wrote them, and
only written again when either changes.

The call goes through turnout's own provider layer (`target_for`, the pooled HTTP sessions and
the API translations the proxy uses), so any configured model can write the examples, an
Anthropic one as well as an OpenAI-compatible one, with the key the config already holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from turnout.apis.translation import TRANSLATIONS
from turnout.config import Config
from turnout.providers.failover import error_message, retry_after
from turnout.providers.upstream import Target, TargetError, UpstreamPool, target_for
from turnout.routing.example_cache import (
    DescribedRoute,
)
from turnout.routing.examples import RouteExamples, normalised

logger = logging.getLogger("turnout.bootstrap")

# The prompt the benchmark fixtures (bench/routing/examples) were written from: change it and
# those numbers no longer describe what turnout does. tests/golden/bootstrap_prompt_general.txt
# pins its rendering.
INSTRUCTIONS = """An AI gateway sends each user request to one of the routes below, chosen by the route's description, or to no route when no description fits the request.

Routes (name: description):
{routes}

Write {per_route} realistic requests that users would send for each route, and {no_route} requests that fit no route.

For each route:
- cover the whole description: every sub-topic it names, not only the first one;
- vary the length (from three words to a paragraph with pasted text or code), the tone (terse, casual, polite, frustrated) and the style (questions, commands, typos, non-native English);
- write each request exactly as the user would type it, never a description of it.

For no route, mix small talk (greetings, thanks, remarks about the weather or the assistant) with near misses: requests that share words or a field with a route but ask for something no description covers. A request that any route's description covers must not be in this list.

Reply with one JSON object and nothing else:
{{"routes": {{"<route name>": ["<request>", ...], ...}}, "no_route": ["<request>", ...]}}"""

# Appended to the prompt when a reply could not be used, so the model knows what to fix.
RETRY_NOTE = (
    "\n\nYour previous reply could not be used: {problem}. "
    "Reply again with the whole JSON object and nothing else."
)

DEFAULT_PER_ROUTE = 25
DEFAULT_NO_ROUTE = 40
DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_ATTEMPTS = 3
MAX_EXAMPLE_CHARS = 2000  # longer "requests" are pasted documents: they blur a route's evidence
TEMPERATURE = 0.7  # varied requests, not the single most likely one 25 times
MAX_TOKENS = 16000  # ~265 requests of up to a paragraph each; a cut-off reply is unusable
RETRY_DELAY_SECONDS = 1.0  # before retrying an HTTP error, unless the provider says how long
REPLY_EXCERPT_CHARS = 160
# Auth and unknown-model errors fail the same way every time: retrying only delays the message.
PERMANENT_STATUSES = frozenset({401, 403, 404})


class BootstrapError(Exception):
    """No examples could be written; the message says why and never holds a key."""


class BootstrapReplyError(BootstrapError):
    """The model's reply is not a usable set of examples (no JSON, wrong shape, too few)."""


class _HttpProblem(Exception):
    def __init__(self, message: str, status: int = 0, wait: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.wait = wait


# ---- the prompt ----------------------------------------------------------------------------


def bootstrap_prompt(routes: Sequence[DescribedRoute], per_route: int, no_route: int) -> str:
    """The request sent to the writing model: route names and descriptions, and how many to write."""
    listed = "\n".join(f"- {route.name}: {route.description}" for route in routes)
    return INSTRUCTIONS.format(routes=listed, per_route=per_route, no_route=no_route)


# ---- reading the reply ---------------------------------------------------------------------


def parse_examples(
    reply: str, route_names: Sequence[str], per_route: int, no_route: int
) -> RouteExamples:
    """The usable examples in a reply, or BootstrapReplyError saying why there are none.

    Lenient about the wrapping (code fences, prose around the object), strict about the
    content: a text under two different labels is evidence for neither, so it is dropped
    everywhere, and a route left with fewer than half the requests asked for means the model
    refused or was cut off, which examples from the rest of the reply would hide.
    """
    document = _json_object(reply)
    raw_routes = document.get("routes")
    if not isinstance(raw_routes, dict):
        raise BootstrapReplyError(
            "`routes` must be a JSON object mapping each route name to a list of requests"
        )
    if "no_route" not in document and no_route > 0:
        raise BootstrapReplyError("the reply has no `no_route` list")
    labelled: dict[str | None, list[str]] = {name: [] for name in route_names}
    labelled[None] = _texts(document.get("no_route", []), "no_route")
    unknown: list[str] = []
    for given, value in raw_routes.items():
        name = _route_name(str(given), route_names)
        texts = _texts(value, f"routes.{given}")
        if name is None:
            unknown.append(str(given))
        else:
            labelled[name].extend(texts)
    if unknown:
        logger.warning("the reply names unknown routes, ignored: %s", ", ".join(unknown))
    kept = _without_ambiguous(labelled)
    examples = RouteExamples(
        routes={name: tuple(kept[name][:per_route]) for name in route_names},
        no_route=tuple(kept[None][:no_route]),
    )
    _check_enough(examples, per_route, no_route)
    return examples


def _json_object(reply: str) -> dict[str, Any]:
    """The reply's JSON object with a `routes` key, wherever it starts; fences and prose around
    it are skipped by decoding from each `{` in turn."""
    decoder = json.JSONDecoder()
    start = reply.find("{")
    if start == -1:
        raise BootstrapReplyError(f"the reply holds no JSON object: {_excerpt(reply)}")
    first = start
    first_decoded = False
    while start != -1:
        try:
            value, _ = decoder.raw_decode(reply, start)
        except ValueError:
            value = None
        if isinstance(value, dict) and "routes" in value:
            return value
        first_decoded = first_decoded or (start == first and value is not None)
        start = reply.find("{", start + 1)
    if first_decoded:
        raise BootstrapReplyError(
            'the reply\'s JSON object has no `routes`: expected {"routes": {...}, "no_route": [...]}'
        )
    # The first object did not decode, whatever inner ones did: the reply was cut off or broken.
    raise BootstrapReplyError("the reply holds no complete JSON object (cut off or malformed)")


def _texts(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise BootstrapReplyError(f"`{where}` must be a list of requests")
    texts = [item.strip() for item in value if isinstance(item, str)]
    usable = [text for text in texts if text and len(text) <= MAX_EXAMPLE_CHARS]
    if len(usable) < len(value):
        dropped = len(value) - len(usable)
        logger.info("`%s`: %d entries not used (not text, empty or too long)", where, dropped)
    return usable


def _route_name(given: str, route_names: Sequence[str]) -> str | None:
    """The configured route a reply's key stands for; a change of case is still that route."""
    name = given.strip()
    if name in route_names:
        return name
    folded = [known for known in route_names if known.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def _without_ambiguous(labelled: Mapping[str | None, list[str]]) -> dict[str | None, list[str]]:
    """Each label's texts without repeats, and without any text that another label also lists."""
    labels_of: dict[str, set[str | None]] = {}
    for label, texts in labelled.items():
        for text in texts:
            labels_of.setdefault(normalised(text), set()).add(label)
    ambiguous = {key for key, labels in labels_of.items() if len(labels) > 1}
    if ambiguous:
        logger.info("%d requests listed under two labels were dropped", len(ambiguous))
    kept: dict[str | None, list[str]] = {}
    for label, texts in labelled.items():
        seen: set[str] = set()
        kept[label] = []
        for text in texts:
            key = normalised(text)
            if key not in ambiguous and key not in seen:
                seen.add(key)
                kept[label].append(text)
    return kept


def _check_enough(examples: RouteExamples, per_route: int, no_route: int) -> None:
    short = [
        f"{name} ({len(texts)} of {per_route})"
        for name, texts in examples.routes.items()
        if 2 * len(texts) < per_route
    ]
    if 2 * len(examples.no_route) < no_route:
        short.append(f"no route ({len(examples.no_route)} of {no_route})")
    if short:
        raise BootstrapReplyError(
            "too few usable requests for " + ", ".join(short) + " (a refusal or a cut-off reply?)"
        )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > REPLY_EXCERPT_CHARS:
        flat = flat[:REPLY_EXCERPT_CHARS] + "…"
    return repr(flat) if flat else "(empty)"


# ---- asking the model ----------------------------------------------------------------------


def resolve_model(config: Config, name: str) -> str:
    """The configured model id `name` stands for (an id or an alias)."""
    model_id = config.resolve_model(name)
    if model_id is None:
        configured = ", ".join(config.model_ids()) or "none"
        raise BootstrapError(f"unknown model '{name}'; configured models: {configured}")
    return model_id


async def write_examples(
    config: Config,
    pool: UpstreamPool,
    model_id: str,
    per_route: int = DEFAULT_PER_ROUTE,
    no_route: int = DEFAULT_NO_ROUTE,
    attempts: int = DEFAULT_ATTEMPTS,
    timeout: float | None = None,
) -> RouteExamples:
    """Ask `model_id` for examples of the config's routes, retrying what may go better.

    A reply that cannot be used is retried with the problem noted in the prompt; an HTTP or
    connection error is retried after a pause (the provider's Retry-After when it gives one).
    Auth and not-found errors, and a call that outlasts `timeout` seconds (default
    `routing.bootstrap.timeout_seconds`), end at once: repeating them would only wait longer.
    """
    routes = config.routing_preferences
    if not routes:
        raise BootstrapError("the config has no routing_preferences to write examples for")
    model_id = resolve_model(config, model_id)
    try:
        target = target_for(config, model_id, client_key=None)
    except TargetError as exc:
        raise BootstrapError(f"{model_id}: {exc}") from exc
    if timeout is None:
        settings = config.routing.bootstrap
        timeout = settings.timeout_seconds if settings else DEFAULT_TIMEOUT_SECONDS
    names = [route.name for route in routes]
    prompt = bootstrap_prompt(routes, per_route, no_route)
    secret = _provider_key(config, model_id)
    body = _request_body(target, prompt)
    last = ""
    for attempt in range(1, attempts + 1):
        wait = 0.0
        try:
            content = await _ask(pool, target, body, timeout, secret)
            return parse_examples(content, names, per_route, no_route)
        except BootstrapReplyError as exc:
            last = str(exc)
            body = _request_body(target, prompt + RETRY_NOTE.format(problem=last), body)
        except _HttpProblem as exc:
            last = str(exc)
            if exc.status in PERMANENT_STATUSES:
                raise BootstrapError(f"{model_id}: {last}") from exc
            if exc.status == 400 and "temperature" in body:
                # Some models (OpenAI's reasoning ones) refuse `temperature` and `max_tokens`.
                body = _request_body(target, body["messages"][0]["content"], body, plain=True)
            wait = exc.wait if exc.wait is not None else RETRY_DELAY_SECONDS * attempt
        logger.warning(
            "bootstrap with %s: attempt %d of %d failed: %s", model_id, attempt, attempts, last
        )
        if attempt < attempts and wait:
            await asyncio.sleep(wait)
    raise BootstrapError(f"{model_id}: no usable examples after {attempts} attempts: {last}")


def _request_body(
    target: Target, prompt: str, previous: Mapping[str, Any] | None = None, plain: bool = False
) -> dict[str, Any]:
    """A Chat Completions body; `plain` (or a `previous` body that was plain) leaves sampling to
    the model and caps the output with `max_completion_tokens`, the name every OpenAI model takes."""
    body: dict[str, Any] = {
        "model": target.model,
        "messages": [{"role": "user", "content": prompt}],
    }
    if plain or (previous is not None and "temperature" not in previous):
        body["max_completion_tokens"] = MAX_TOKENS
    else:
        body["temperature"] = TEMPERATURE
        body["max_tokens"] = MAX_TOKENS  # the name every OpenAI-compatible server knows
    return body


async def _ask(
    pool: UpstreamPool, target: Target, body: dict[str, Any], timeout: float, secret: str | None
) -> str:
    """The text of the model's reply. The body is Chat Completions; a provider with another API
    gets it through the proxy's translation, and its reply comes back the same way."""
    translation = TRANSLATIONS.get(("openai_chat", target.api))
    sent = translation.request(body, target.model) if translation else body
    session = pool.session_for(target.url)
    headers = {**target.headers, "content-type": "application/json", "accept-encoding": "identity"}
    # One non-streamed reply of thousands of tokens: its first byte comes only when it is all
    # written, so the provider's read timeout (between bytes) gives way to the bootstrap's.
    client_timeout = aiohttp.ClientTimeout(sock_connect=target.timeout.sock_connect)
    try:
        async with asyncio.timeout(timeout):
            async with session.post(
                target.url, data=json.dumps(sent).encode(), headers=headers, timeout=client_timeout
            ) as response:
                raw = await response.read()
                status, wait = response.status, retry_after(response.headers)
    except TimeoutError as exc:
        raise BootstrapError(
            f"{target.model_id} wrote no reply within {timeout:g}s "
            "(routing.bootstrap.timeout_seconds)"
        ) from exc
    except aiohttp.ClientError as exc:
        raise _HttpProblem(f"could not be reached ({type(exc).__name__})") from exc
    if status != 200:
        message = _error_message(raw, secret)
        raise _HttpProblem(f"HTTP {status}: {message}", status, wait)
    try:
        parsed = json.loads(raw)
        reply = translation.response(parsed, target.model) if translation else parsed
        choice = reply["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BootstrapReplyError(f"the response is not a chat completion ({type(exc).__name__})")
    if not isinstance(content, str):
        raise BootstrapReplyError("the reply has no text")
    if choice.get("finish_reason") == "length":
        logger.warning("%s stopped at the max_tokens limit (%d)", target.model_id, MAX_TOKENS)
    return content


def _provider_key(config: Config, model_id: str) -> str | None:
    provider = config.provider_for(model_id)
    return provider.access_key if provider else None


def _error_message(raw: bytes, secret: str | None) -> str:
    """The provider's own error message, for the log, with the key blanked should it quote it."""
    text = error_message(raw) or _excerpt(raw.decode("utf-8", "replace"))
    if secret:
        text = text.replace(secret, "***")
    return text[:300]
