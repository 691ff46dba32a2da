"""Reading a request body once, bounded in size, as a JSON value."""

from __future__ import annotations

import json

from starlette.requests import Request

from turnout.apis.errors import RequestError


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"request body exceeds the limit of {limit} bytes", status=413, kind="request_too_large"
    )


async def read_json(request: Request, limit: int) -> object:
    """The parsed body; stops reading as soon as the limit is passed, so a huge body costs nothing."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError("request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError("request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
