"""The OpenAPI document of the control API, with its error answers described as they are sent."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from refactorbot_api.schemas import ErrorBody, ValidationErrorBody


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """Return the OpenAPI document with every 422 and 400 answer described as this API sends them."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ValidationErrorBody"] = ValidationErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    ours = {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorBody"}}}
    errors = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses["422"]["content"] = ours
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = {"description": "The body could not be parsed", "content": errors}
            if "requestBody" in operation and "413" not in responses:
                responses["413"] = {
                    "description": "The body is larger than [plugins.api] max_body_bytes",
                    "content": errors,
                }
    schemas.pop("HTTPValidationError", None)
    if '"#/components/schemas/ValidationError"' not in json.dumps(document):
        schemas.pop("ValidationError", None)
    app.openapi_schema = document
    return document
