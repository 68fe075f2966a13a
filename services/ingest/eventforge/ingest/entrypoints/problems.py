"""Error answers as RFC 9457 problem details (`application/problem+json`)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from eventforge.ingest.domain.refusals import Refused
from eventforge.runtime.context import current_request_id

PROBLEM_TYPE_BASE = "tag:eventforge,2026:problems/"
"""Problem type URIs are tag URIs (RFC 4151), which RFC 9457 suggests for types that are not
web pages: `tag:eventforge,2026:problems/bad-signature`."""
MEDIA_TYPE = "application/problem+json"


def problem(
    slug: str,
    status: int,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem response; `request_id` (an extension member) leads to the logs and trace."""
    return JSONResponse(
        {
            "type": PROBLEM_TYPE_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "request_id": current_request_id(),
        },
        status_code=status,
        headers=dict(headers or {}),
        media_type=MEDIA_TYPE,
    )


def refusal(error: Refused) -> JSONResponse:
    """The answer to a refused delivery."""
    return problem(error.slug, error.status, error.title, error.detail)
