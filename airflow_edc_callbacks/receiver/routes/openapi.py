"""The OpenAPI descriptions of the callback routes (request body and every answer)."""

from __future__ import annotations

from typing import Any

CALLBACK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventEnvelope"}}},
    },
    "responses": {
        "200": {"description": "Stored, already stored (duplicate delivery), or about no process (ignored)"},
        "400": {"description": "Body is not parseable JSON"},
        "401": {"description": "Auth header missing or wrong"},
        "403": {"description": "The token is not the one of the task its process is bound to"},
        "404": {"description": "Unknown or forged callback token"},
        "408": {"description": "Body not received in time"},
        "409": {"description": "An event with this id and another body is stored"},
        "413": {"description": "Body too large"},
        "415": {"description": "Content type is not JSON"},
        "422": {"description": "Body is not an EDC event envelope, or outside the accepted input domain"},
        "503": {"description": "Event store unavailable; nothing stored"},
    },
}
"""``openapi_extra`` of ``POST /callbacks/{token}``; the schema ``EventEnvelope`` is added by ``create_app``."""

STATIC_OPENAPI: dict[str, Any] = {
    **CALLBACK_OPENAPI,
    "responses": {
        **CALLBACK_OPENAPI["responses"],
        "401": {"description": "The registration's auth header is missing or wrong"},
        "404": {"description": "No static callback registered under this name"},
    },
}
"""``openapi_extra`` of ``POST /callbacks/static/{name}``."""
