"""A small slice and plugin for the API's tests: operations, routes and a webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, hookimpl, operation

REFACTORBOT_API = 1


class AddParams(BaseModel):
    model_config = {"extra": "forbid"}
    title: str = Field(min_length=1, max_length=200, description="title of the note")
    body: str = Field("", max_length=10_000)


class Note(BaseModel):
    id: int
    title: str
    body: str


class ListParams(BaseModel):
    model_config = {"extra": "forbid"}
    limit: int = Field(10, ge=1, le=100)


class SampleConfig(BaseModel):
    model_config = {"extra": "forbid"}
    max_notes: int = Field(1000, ge=1)
    api_key: str = ""


class SampleSlice(AtomicSlice):
    """Keep notes in SQLite."""

    slice_id = "sample"
    Config = SampleConfig
    uses_database = False

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.notes: list[Note] = []

    @operation
    async def add(self, params: AddParams) -> Note:
        """Add a note."""
        note = Note(id=len(self.notes) + 1, title=params.title, body=params.body)
        self.notes.append(note)
        self.log.info("added note %d", note.id)
        return note

    @operation(name="list")
    async def list_notes(self, params: ListParams) -> list[Note]:
        """List the newest notes."""
        return self.notes[-params.limit :]

    @operation
    async def fail(self) -> None:
        """Always fail."""
        raise RuntimeError("this operation always fails")


@hookimpl
def register_slices(register: Any) -> None:
    register(SampleSlice)


@hookimpl
def register_routes(router: Any) -> None:
    @router.get("/sample/count")
    async def count() -> dict[str, int]:
        return {"count": 42}

    @router.webhooks.post("/sample")
    async def hook(payload: dict[str, Any]) -> dict[str, Any]:
        return {"received": sorted(payload)}

    seen_schema = {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "What was seen"}

    @router.webhooks.post("/plain/{name}", responses={200: seen_schema, 403: {"description": "Refused"}})
    async def plain(name: str, request: Request) -> Response:
        """A webhook that takes the raw request (served by ``HookPath``, ahead of FastAPI's routing)."""
        body = await request.body()
        if name == "forbidden":
            raise HTTPException(403, "no entry", headers={"X-Why": "forbidden"})
        if name == "broken":
            raise RuntimeError("the plain hook broke")
        seen = {
            "name": name,
            "bytes": len(body),
            "path": request.url.path,
            "query": dict(request.query_params),
            "signature": request.headers.get("x-signature"),
            "host": request.app.state.host.home.name,
        }
        return JSONResponse(seen, headers={"X-Hook": "plain"})


CONFIG = {"core": {"health_interval": 3600}, "plugins": {"api": {"port": 0}}}


class Served:
    """A started host, its API URL and an authenticated client."""

    def __init__(self, host: Any, home: Path, client: Any) -> None:
        self.host = host
        self.home = home
        self.client = client
        self.url = str(client.base_url)
