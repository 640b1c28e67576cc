"""The error answers routes declare in the OpenAPI document (``responses=R404 | R422``)."""

from __future__ import annotations

from typing import Any

from refactorbot_api.schemas import ErrorBody, ValidationErrorBody

R400: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "The body could not be parsed"}}
R401: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody, "description": "Missing or wrong bearer token"}}
R404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Unknown slice or operation"}}
R409: dict[int | str, dict[str, Any]] = {409: {"model": ErrorBody, "description": "The slice is not running"}}
R422: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody, "description": "Invalid request; `detail` says why"}
}
R500: dict[int | str, dict[str, Any]] = {
    500: {"model": ErrorBody, "description": "The slice or plugin failed while handling the request"}
}
R503: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Chat is unavailable (no agent slice running)"}
}
