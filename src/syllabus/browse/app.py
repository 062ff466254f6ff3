"""The browse server: a FastAPI app over one opened path, and `serve` that binds it.

Safe by default: it binds 127.0.0.1; no request names a file (collections are addressed by
their number in the list found at start, assets by a fixed table), so no request can reach
outside the opened directory; the labels file is the only thing written; requests must carry
this server's own Host (a page elsewhere cannot rebind a name to it) and a label must come as
JSON from this origin (a cross-site form cannot post one); the page's Content-Security-Policy
allows its own script and styles only, and the script puts record text in the page as text.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from syllabus.browse.funnel import funnels
from syllabus.browse.labels import LabelStore, agreements, judge_scores
from syllabus.browse.query import (
    SCORE_FIELD,
    Histogram,
    RecordQuery,
    count,
    page,
    score_histogram,
)
from syllabus.browse.source import Collection, Target, open_target, read_record
from syllabus.errors import UserError
from syllabus.store import read_rows

ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""The only files served besides the page: shipped in the package, no CDN."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PAGE_LIMIT = 200


def _asset(name: str) -> bytes:
    return resources.files("syllabus.browse").joinpath("static", name).read_bytes()


class LabelRequest(BaseModel):
    collection: int
    position: int
    score: int | None = None
    note: str = ""


class Session:
    """The opened target plus what the server keeps between requests."""

    def __init__(self, target: Target):
        self.target = target
        self.labels = LabelStore(target.labels_path)
        self.judge = judge_scores(target.judge_labels)
        self.funnels = funnels(target)
        self._histograms: dict[int, Histogram] = {}
        self._samples: dict[int, list[dict[str, Any]]] = {}
        self._labelled: tuple[int, pa.Array] | None = None
        self._lock = threading.Lock()

    def collection(self, index: int) -> Collection:
        try:
            return self.target.collection(index)
        except KeyError:
            raise HTTPException(404, f"no collection {index}") from None

    def labelled_ids(self) -> pa.Array:
        """The labelled ids as an Arrow array for the `labelled` filter, rebuilt after a label."""
        if self._labelled is None or self._labelled[0] != self.labels.version:
            ids = pa.array(self.labels.labelled_ids(), pa.string())
            self._labelled = (self.labels.version, ids)
        return self._labelled[1]

    def histogram(self, index: int) -> Histogram:
        with self._lock:
            if index not in self._histograms:
                self._histograms[index] = score_histogram(self.collection(index))
            return self._histograms[index]

    def samples(self, index: int) -> list[dict[str, Any]]:
        """A portfolio task's samples, one row per item with every candidate's answer."""
        if not 0 <= index < len(self.target.samples):
            raise HTTPException(404, f"no sample set {index}")
        if index not in self._samples:
            items: dict[str, dict[str, Any]] = {}
            for candidate, path in self.target.samples[index].files.items():
                for row in read_rows(path):
                    item = items.setdefault(str(row.get("key")), {"key": row.get("key")})
                    item.setdefault("candidates", {})[candidate] = {
                        name: row.get(name)
                        for name in (
                            "text",
                            "answer",
                            "passed",
                            "status",
                            "compliant",
                            "latency_s",
                            "agreement",
                            "error",
                        )
                    }
            self._samples[index] = list(items.values())
        return self._samples[index]

    def kept_collection(self, collection: Collection) -> int | None:
        """Where a dropped record's kept twin lives: the dataset that holds this one."""
        parent = str(Path(collection.name).parent)
        for index, other in enumerate(self.target.collections):
            if other.name == parent and other.role == "dataset":
                return index
        return None


def _query(params: dict[str, str]) -> RecordQuery:
    def number(name: str) -> float | None:
        value = params.get(name, "").strip()
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            raise HTTPException(400, f"{name} must be a number, got {value!r}") from None

    return RecordQuery(
        text=params.get("q", ""),
        kind=params.get("kind", ""),
        source=params.get("source", ""),
        generator=params.get("generator", ""),
        score_min=number("score_min"),
        score_max=number("score_max"),
        reason=params.get("reason", ""),
        step=params.get("step", ""),
        cluster=params.get("cluster", ""),
        record_id=params.get("id", ""),
        labelled=params.get("labelled", ""),
    )


def _int(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None


def create_app(target: Target, *, allowed_hosts: set[str] | None = None) -> FastAPI:
    session = Session(target)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.session = session

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = request.headers.get("host", "")
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"error": f"unexpected Host {host!r}"}, status_code=421)
        if request.method != "GET":
            origin = request.headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != host:
                return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
            if not request.headers.get("content-type", "").startswith("application/json"):
                return JSONResponse({"error": "send JSON"}, status_code=415)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse({"error": str(exc)}, status_code=500)

    @app.get("/")
    def index() -> Response:
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "no such asset")
        return Response(_asset(name), media_type=ASSETS[name])

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "root": str(target.root),
            "labels_path": str(target.labels_path),
            "labelled": len(session.labels.labelled_ids()),
            "collections": [
                {
                    "index": index,
                    "name": c.name,
                    "role": c.role,
                    "rows": c.rows,
                    "kinds": c.kinds,
                }
                for index, c in enumerate(target.collections)
            ],
            "funnels": [funnel.to_json() for funnel in session.funnels],
            "samples": [
                {"index": i, "name": s.name, "candidates": list(s.files)}
                for i, s in enumerate(target.samples)
            ],  # fmt: skip
            "judge_files": [str(path.relative_to(target.root)) for path in target.judge_labels],
        }

    @app.get("/api/records")
    def records(request: Request) -> dict[str, Any]:
        params = dict(request.query_params)
        collection = session.collection(_int(params, "c", 0))
        query = _query(params)
        limit = min(max(_int(params, "limit", 50), 1), PAGE_LIMIT)
        labelled = session.labelled_ids() if query.labelled else None
        result = page(collection, query, _int(params, "cursor", 0), limit, labelled).to_json()
        for row in result["rows"]:
            label = session.labels.get(row["id"])
            row["label"] = label.get("score") if label else None
            row["judge"] = session.judge.get(row["id"])
        return result

    @app.get("/api/count")
    def count_records(request: Request) -> dict[str, Any]:
        params = dict(request.query_params)
        collection = session.collection(_int(params, "c", 0))
        query = _query(params)
        labelled = session.labelled_ids() if query.labelled else None
        return {"total": count(collection, query, labelled)}

    @app.get("/api/record")
    def record(c: int, pos: int) -> dict[str, Any]:
        collection = session.collection(c)
        try:
            found = read_record(collection, pos)
        except KeyError:
            raise HTTPException(404, f"no record at {pos}") from None
        found["collection"] = c
        found["label"] = session.labels.get(found["id"])
        found["judge"] = session.judge.get(found["id"])
        found["classifier"] = found["meta"].get(SCORE_FIELD)
        found["kept_collection"] = (
            session.kept_collection(collection) if found["meta"].get("duplicate_of") else None
        )
        return found

    @app.get("/api/histogram")
    def histogram(c: int) -> dict[str, Any]:
        collection = session.collection(c)
        result = session.histogram(c)
        examples = {}
        for bucket, items in result.examples.items():
            examples[bucket] = []
            for item in items:
                found = read_record(collection, item["position"])
                examples[bucket].append({**item, "id": found["id"], "snippet": found["text"][:200]})
        return {"buckets": result.buckets, "examples": examples, "unscored": result.unscored}

    @app.post("/api/label")
    def label(body: LabelRequest) -> dict[str, Any]:
        collection = session.collection(body.collection)
        try:
            found = read_record(collection, body.position)
        except KeyError:
            raise HTTPException(404, f"no record at {body.position}") from None
        classifier = found["meta"].get(SCORE_FIELD)
        row = session.labels.write(
            found,
            score=body.score,
            note=body.note[:4000],
            collection=collection.name,
            classifier=classifier if isinstance(classifier, int | float) else None,
            judge=session.judge.get(found["id"]),
        )
        return {"label": row, "labelled": len(session.labels.labelled_ids())}

    @app.get("/api/agreement")
    def agreement() -> dict[str, Any]:
        return {
            "labelled": len(session.labels.labelled_ids()),
            "labels_path": str(target.labels_path),
            "agreement": [asdict(a) for a in agreements(session.labels, session.judge)],
        }

    @app.get("/api/samples")
    def samples(s: int, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        items = session.samples(s)
        limit = min(max(limit, 1), PAGE_LIMIT)
        return {"total": len(items), "items": items[offset : offset + limit]}

    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use (another `syllabus browse`?): "
                "pass --port with a free one"
            ) from None
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(64)
    return sock


def serve(
    path: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    labels: Path | str | None = None,
    on_ready: Callable[[Target, str], None] | None = None,
) -> None:
    """Open `path`, bind host:port and serve the page until interrupted."""
    import uvicorn

    target = open_target(path, labels)
    sock = _bind(host, port)
    # pyarrow imports pandas the first time it converts a Python value (a filter's operand):
    # pay that here, at start, rather than on the first search a person makes.
    pa.scalar("")
    if target.collections:
        page(target.collections[0], RecordQuery(), 0, 1)
    port = sock.getsockname()[1]
    names = {host, "localhost", "127.0.0.1"} if host in {"127.0.0.1", "localhost"} else {host}
    allowed = {f"{name}:{port}" for name in names} | {f"[{host}]:{port}"}
    app = create_app(target, allowed_hosts=allowed)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    if on_ready is not None:
        on_ready(target, url)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.session.labels.close()
        sock.close()
