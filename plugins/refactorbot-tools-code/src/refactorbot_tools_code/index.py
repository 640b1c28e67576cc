"""The code index of one workspace: a SQLite file with an FTS5 table, updated incrementally.

Where: ``<home>/cache/code-index/<first 32 hex digits of sha256(workspace real path)>.sqlite3``
(``index_dir`` in ``[tools.code]`` replaces ``<home>/cache/code-index``). The folder is ``0700``
and the file ``0600``: it holds the workspace's source text. The file records the workspace path
it belongs to; two workspaces never share an index, and a worktree gets its own.

Incremental: a refresh lists the workspace (``listing.walk``), and only files whose modification
time or size changed are read; a file whose content hash did not change is not re-chunked. A
re-chunked file keeps its chunks whose hash (symbol, kind, text) is unchanged — only their line
numbers are updated — so only new chunks are written to FTS5 and, with embeddings, embedded.
Vectors are stored by chunk hash: identical chunks share one, and a chunk that comes back is not
embedded again. Work is committed every ``_BATCH`` files, so a refresh cut short (its deadline
passed, the process stopped) keeps what it did and the next one continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refactorbot import PathOutsideWorkspace, Workspace

from refactorbot_tools_code.chunking import Chunk, chunk_file
from refactorbot_tools_code.embeddings import Embedder, rrf
from refactorbot_tools_code.listing import walk

SCHEMA_VERSION = "1"
_BATCH = 500
_CANDIDATES = 50  # per ranking, before fusion
_CAMEL = re.compile(r"\b[A-Za-z][A-Za-z0-9]*?[a-z0-9][A-Z][A-Za-z0-9]*")
_SPLIT = re.compile(r"_+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"\w+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
    symbol TEXT NOT NULL, kind TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5(
    symbol, path, body, extra, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vec BLOB NOT NULL);
"""
#: bm25 column weights: symbol, path, body, camelCase parts.
_WEIGHTS = "4.0, 2.0, 1.0, 0.5"


@dataclasses.dataclass
class RefreshStats:
    """What one refresh did."""

    files: int = 0
    read: int = 0
    changed: int = 0
    removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    complete: bool = True
    seconds: float = 0.0


@dataclasses.dataclass
class Hit:
    """One search result."""

    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    score: float
    snippet: str


def index_path(index_dir: Path, root: Path) -> Path:
    """Return the index file of the workspace ``root`` (a real path) inside ``index_dir``."""
    key = hashlib.sha256(os.fsencode(root)).hexdigest()[:32]
    return index_dir / f"{key}.sqlite3"


def query_terms(query: str) -> list[str]:
    """Return the FTS5 terms of ``query``: each word, its snake/camel parts, and the parts as a phrase."""
    terms: list[str] = []
    for word in _WORD.findall(query):
        parts = [p.lower() for p in _SPLIT.split(word) if p]
        if len(parts) > 1:
            terms.append('"' + " ".join(parts) + '"')
        terms.append(f'"{word.lower()}"')
        terms += [f'"{p}"' for p in parts]
    unique = list(dict.fromkeys(terms))
    return unique[:32]


def _extra(text: str) -> str:
    """Return the camelCase identifiers of ``text`` split into words (``CodeIndex`` -> ``code index``)."""
    found = dict.fromkeys(_CAMEL.findall(text))
    return " ".join(" ".join(_SPLIT.split(word)).lower() for word in found)


class CodeIndex:
    """The index of one workspace; thread-safe (one lock), one SQLite connection."""

    def __init__(
        self,
        path: Path,
        workspace: Workspace,
        *,
        exclude: Sequence[str] = (),
        max_file_bytes: int = 1_000_000,
        embedder: Embedder | None = None,
    ) -> None:
        self.path = path
        self.workspace = workspace
        self.exclude = list(exclude)
        self.max_file_bytes = max_file_bytes
        self.embedder = embedder
        self.lock = threading.Lock()
        self.last_scan = 0.0  # time.monotonic() of the last complete refresh
        self._matrix: tuple[list[int], Any] | None = None
        self.db = self._open()

    # -- storage ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.close(fd)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        meta = {row["key"]: row["value"] for row in db.execute("SELECT key, value FROM meta")}
        root = str(self.workspace.root)
        if meta.get("schema") not in (None, SCHEMA_VERSION) or meta.get("workspace") not in (None, root):
            db.executescript("DELETE FROM files; DELETE FROM chunks; DELETE FROM chunk_text; DELETE FROM vectors;")
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('workspace', ?)", (root,))
        if self.embedder is not None and meta.get("embedder") != self.embedder.name:
            db.execute("DELETE FROM vectors")  # vectors of another model are not comparable
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?)", (self.embedder.name,))
        db.execute("COMMIT")
        return db

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.db.close()

    # -- refreshing ------------------------------------------------------------------------

    def refresh(self, deadline: float | None = None) -> RefreshStats:
        """Bring the index up to date with the workspace; stop early (``complete=False``) at ``deadline``."""
        with self.lock:
            return self._refresh(deadline)

    def refresh_if_stale(self, interval: float, deadline: float | None = None) -> RefreshStats | None:
        """Refresh unless a complete refresh finished less than ``interval`` seconds ago."""
        with self.lock:
            if self.last_scan and time.monotonic() - self.last_scan < interval:
                return None
            return self._refresh(deadline)

    def invalidate(self) -> None:
        """Make the next ``refresh_if_stale`` look at the workspace again."""
        self.last_scan = 0.0

    def _refresh(self, deadline: float | None) -> RefreshStats:
        started = time.monotonic()
        stats = RefreshStats()
        root = str(self.workspace.root)
        current = {rel: info for rel, info in walk(root, self.exclude)}
        stats.files = len(current)
        known = {
            row["path"]: (row["mtime_ns"], row["size"], row["sha256"])
            for row in self.db.execute("SELECT path, mtime_ns, size, sha256 FROM files")
        }
        removed = [path for path in known if path not in current]
        pending = [
            rel for rel, info in current.items() if known.get(rel, (None, None))[:2] != (info.st_mtime_ns, info.st_size)
        ]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for path in removed:
                stats.chunks_removed += self._drop_file(path)
            stats.removed = len(removed)
            for count, rel in enumerate(pending, start=1):
                if deadline is not None and count > 1 and time.monotonic() > deadline:
                    stats.complete = False  # at least one file per refresh, so every search makes progress
                    break
                self._update_file(rel, current[rel], known.get(rel), stats)
                if count % _BATCH == 0:
                    self.db.execute("COMMIT")
                    self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        if stats.changed or stats.removed:
            self._matrix = None
        if self.embedder is not None:
            stats.embedded = self._embed_missing(deadline)
            if deadline is not None and time.monotonic() > deadline and self._missing_vectors():
                stats.complete = False
        if stats.complete:
            self.last_scan = time.monotonic()
        stats.seconds = time.monotonic() - started
        return stats

    def _drop_file(self, path: str) -> int:
        ids = [row[0] for row in self.db.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
        self._delete_chunks(ids)
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        return len(ids)

    def _delete_chunks(self, ids: list[int]) -> None:
        for chunk_id in ids:
            self.db.execute("DELETE FROM chunk_text WHERE rowid = ?", (chunk_id,))
            self.db.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))

    def _update_file(self, rel: str, info: os.stat_result, known: tuple[Any, ...] | None, stats: RefreshStats) -> None:
        try:
            fd = self.workspace.open_file(self.workspace.root / rel)
        except (OSError, PathOutsideWorkspace):  # vanished, or became a symlink: forget it
            if known is not None:
                stats.chunks_removed += self._drop_file(rel)
            return
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(self.max_file_bytes + 1) if size <= self.max_file_bytes else b""
        stats.read += 1
        digest = hashlib.sha256(data).hexdigest() if data or size == 0 else f"large:{size}"
        status = "indexed"
        if size > self.max_file_bytes:
            status = "large"
        elif b"\x00" in data[:8192]:
            status = "binary"
        upsert = "INSERT OR REPLACE INTO files (path, mtime_ns, size, sha256, status) VALUES (?, ?, ?, ?, ?)"
        self.db.execute(upsert, (rel, info.st_mtime_ns, info.st_size, digest, status))
        if known is not None and known[2] == digest:
            return  # touched, not changed
        stats.changed += 1
        chunks = chunk_file(rel, data.decode("utf-8", errors="replace")) if status == "indexed" else []
        added, dropped = self._sync_chunks(rel, chunks)
        stats.chunks_added += added
        stats.chunks_removed += dropped

    def _sync_chunks(self, rel: str, chunks: list[Chunk]) -> tuple[int, int]:
        """Make the file's stored chunks ``chunks``, keeping those whose hash is unchanged."""
        old: dict[str, list[tuple[int, int, int]]] = {}
        for row in self.db.execute("SELECT id, hash, start_line, end_line FROM chunks WHERE path = ?", (rel,)):
            old.setdefault(row["hash"], []).append((row["id"], row["start_line"], row["end_line"]))
        added = 0
        for chunk in chunks:
            digest = chunk.digest
            kept = old.get(digest)
            if kept:
                chunk_id, start, end = kept.pop()
                if (start, end) != (chunk.start, chunk.end):
                    self.db.execute(
                        "UPDATE chunks SET start_line = ?, end_line = ? WHERE id = ?",
                        (chunk.start, chunk.end, chunk_id),
                    )
                continue
            cursor = self.db.execute(
                "INSERT INTO chunks (path, start_line, end_line, symbol, kind, hash) VALUES (?, ?, ?, ?, ?, ?)",
                (rel, chunk.start, chunk.end, chunk.symbol, chunk.kind, digest),
            )
            self.db.execute(
                "INSERT INTO chunk_text (rowid, symbol, path, body, extra) VALUES (?, ?, ?, ?, ?)",
                (cursor.lastrowid, chunk.symbol, rel, chunk.text, _extra(chunk.text)),
            )
            added += 1
        stale = [chunk_id for entries in old.values() for chunk_id, _, _ in entries]
        self._delete_chunks(stale)
        return added, len(stale)

    def _missing_vectors(self) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT c.hash, t.symbol, t.body FROM chunks c JOIN chunk_text t ON t.rowid = c.id "
            "WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.hash = c.hash) GROUP BY c.hash"
        )
        return [(row["hash"], f"{row['symbol']}\n{row['body']}" if row["symbol"] else row["body"]) for row in rows]

    def _embed_missing(self, deadline: float | None) -> int:
        assert self.embedder is not None
        missing = self._missing_vectors()
        done = 0
        for start in range(0, len(missing), 64):
            if deadline is not None and time.monotonic() > deadline:
                break
            batch = missing[start : start + 64]
            vectors = self.embedder.embed([text for _, text in batch])
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors (hash, vec) VALUES (?, ?)",
                [(digest, _pack(vector)) for (digest, _), vector in zip(batch, vectors, strict=True)],
            )
            self.db.execute("COMMIT")
            done += len(batch)
        if done:
            self.db.execute("DELETE FROM vectors WHERE hash NOT IN (SELECT hash FROM chunks)")
            self._matrix = None
        return done

    # -- searching -------------------------------------------------------------------------

    def search(self, query: str, limit: int = 10, path_glob: str | None = None) -> list[Hit]:
        """Return the best chunks for ``query``: BM25, fused with vector similarity when embedding."""
        with self.lock:
            terms = query_terms(query)
            if not terms:
                return []
            lexical = self._bm25(" OR ".join(terms), path_glob)
            if self.embedder is None:
                ranked = [(chunk_id, -rank) for chunk_id, rank in lexical[:limit]]
            else:
                semantic = self._nearest(query, path_glob)
                fused = rrf([[i for i, _ in lexical], semantic])
                ranked = fused[:limit]
            return self._hits(ranked, terms)

    def _bm25(self, match: str, path_glob: str | None) -> list[tuple[int, float]]:
        sql = f"SELECT rowid, bm25(chunk_text, {_WEIGHTS}) AS rank FROM chunk_text WHERE chunk_text MATCH ?"  # noqa: S608  _WEIGHTS is a constant; the query is a ? parameter
        args: list[Any] = [match]
        if path_glob:
            sql += " AND path GLOB ?"
            args.append(path_glob)
        sql += f" ORDER BY rank LIMIT {_CANDIDATES}"
        return [(row[0], float(row[1])) for row in self.db.execute(sql, args)]

    def _nearest(self, query: str, path_glob: str | None) -> list[int]:
        import numpy as np

        assert self.embedder is not None
        if self._matrix is None:
            rows = self.db.execute("SELECT c.id, v.vec FROM chunks c JOIN vectors v ON v.hash = c.hash").fetchall()
            if not rows:
                return []
            ids = [row[0] for row in rows]
            self._matrix = (ids, np.vstack([np.frombuffer(row[1], dtype=np.float32) for row in rows]))
        ids, matrix = self._matrix
        vector = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        scores = matrix @ vector
        order = np.argsort(-scores)
        wanted: list[int] = []
        allowed = None
        if path_glob:
            allowed = {row[0] for row in self.db.execute("SELECT id FROM chunks WHERE path GLOB ?", (path_glob,))}
        for position in order:
            chunk_id = ids[int(position)]
            if allowed is None or chunk_id in allowed:
                wanted.append(chunk_id)
                if len(wanted) >= _CANDIDATES:
                    break
        return wanted

    def _hits(self, ranked: list[tuple[int, float]], terms: list[str]) -> list[Hit]:
        words = {t.strip('"') for t in terms if " " not in t}
        hits: list[Hit] = []
        for chunk_id, score in ranked:
            row = self.db.execute(
                "SELECT c.path, c.start_line, c.end_line, c.symbol, c.kind, t.body FROM chunks c "
                "JOIN chunk_text t ON t.rowid = c.id WHERE c.id = ?",
                (chunk_id,),
            ).fetchone()
            if row is None:
                continue
            hits.append(
                Hit(
                    path=row["path"],
                    start_line=row["start_line"],
                    end_line=row["end_line"],
                    symbol=row["symbol"],
                    kind=row["kind"],
                    score=round(score, 6),
                    snippet=snippet(row["body"], row["start_line"], words),
                )
            )
        return hits

    def counts(self) -> dict[str, int]:
        """Return how many files and chunks the index holds."""
        with self.lock:
            files = self.db.execute("SELECT COUNT(*) FROM files WHERE status = 'indexed'").fetchone()[0]
            chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            vectors = self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return {"files": int(files), "chunks": int(chunks), "vectors": int(vectors)}


def snippet(body: str, first_line: int, words: set[str], width: int = 8) -> str:
    """Return up to ``width`` numbered lines of ``body`` around the line naming most query words."""
    lines = body.split("\n")
    best, best_score = 0, -1
    for index, line in enumerate(lines):
        lowered = line.lower()
        score = sum(1 for word in words if word in lowered)
        if score > best_score:
            best, best_score = index, score
    start = max(0, min(best - 2, len(lines) - width))
    shown = lines[start : start + width]
    return "\n".join(f"{first_line + start + i}: {text[:200]}" for i, text in enumerate(shown))


def _pack(vector: Any) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()


_OPEN: dict[Path, CodeIndex] = {}
_OPEN_LOCK = threading.Lock()


def open_index(path: Path, workspace: Workspace, **options: Any) -> CodeIndex:
    """Return the process's ``CodeIndex`` for ``path`` (opened once, then shared)."""
    with _OPEN_LOCK:
        index = _OPEN.get(path)
        if index is None or index.embedder is not options.get("embedder"):
            if index is not None:
                index.close()
            index = CodeIndex(path, workspace, **options)
            _OPEN[path] = index
        else:
            index.exclude = list(options.get("exclude", index.exclude))
            index.max_file_bytes = int(options.get("max_file_bytes", index.max_file_bytes))
        return index


def invalidate(root: Path) -> None:
    """Make every open index of the workspace ``root`` look at it again on its next search."""
    with _OPEN_LOCK:
        for index in _OPEN.values():
            if index.workspace.root == root:
                index.invalidate()
