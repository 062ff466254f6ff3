"""`syllabus route`: the portfolio's choice served as an OpenAI-compatible endpoint.

FastAPI + uvicorn (they come with llama-cpp-python[server]) on 127.0.0.1:

- POST /v1/chat/completions and /v1/completions, with and without `stream` (server-sent
  events ending in `data: [DONE]`; `stream_options.include_usage` adds a last chunk with the
  usage and no choices), GET /v1/models;
- `Authorization: Bearer KEY` when the route names an api_key_env (401 otherwise);
- errors in OpenAI's envelope {"error": {"message", "type", "code"}}: 400 for a bad request or
  a prompt longer than the model's context, 413 for a body over max_request_bytes, 404 for an
  unknown model, 422 when the models answered with no text, 503 when every backend failed;
- every call appended to the route log (JSONL): who answered, escalated or not, each attempt,
  tokens, latency, cost. `kind = "log"` tasks read it back, so production traffic becomes the
  next evaluation set.

A cascade answers with its first model and escalates when the check fails (log-prob
confidence, agreement of extra samples, the task's JSON format), scored by the functions
`syllabus portfolio` scores its records with (cascades.py), so the calibrated threshold applies
to the same score. An empty answer escalates; a single model's empty answer falls through like a
failure, and when nothing but empty answers came back the call is logged "empty" and refused
(422) with the reason, never passed on as a success. With `stream`, a cascade's
answer is HELD until its check has passed (or the second model has answered) and then sent as
one chunk: streaming what might be withdrawn would show users an answer that is then replaced.
A single model streams token by token. When a model fails (an error, not a bad answer) the
call falls through to the next one (the cascade's second model, then route.fallbacks); a
stream that already sent text cannot fall through and ends with an error event instead.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from syllabus.errors import BackendError, UserError
from syllabus.portfolio.build import served_config
from syllabus.portfolio.candidates import Candidate
from syllabus.portfolio.cascades import (
    Evidence,
    agreements,
    confidence,
    escalates,
    is_empty,
    mean_logprob,
)
from syllabus.portfolio.config import PortfolioConfig, load_portfolio, resolve
from syllabus.portfolio.pricing import Pricing, pricing_for
from syllabus.portfolio.tasks import check_format


def finite_or_text(value: float) -> float | str:
    """JSON has no infinity: -inf (an empty answer's score) is written "-inf"."""
    return value if math.isfinite(value) else str(value)


class RequestError(Exception):
    """A client mistake, answered with OpenAI's error envelope."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind


def envelope(message: str, kind: str, code: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass
class Attempt:
    candidate: str
    ok: bool
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    error: str = ""
    check: str = ""
    empty: bool = False
    """The call worked and the answer has no text (see `cascades.is_empty`)."""
    score: float | None = None
    """A cascade's first attempt: its check's score (`cascades.confidence`)."""


class Router:
    """What `syllabus route` serves: a candidate or a cascade, plus fallbacks. Thread-safe."""

    def __init__(self, config: PortfolioConfig, base: Path, recommendation: dict | None):
        if config.route is None:
            raise UserError("the portfolio file has no [route] table: add one with serve = NAME")
        self.config = config
        self.route = config.route
        self.name = self.route.serve
        self.cascade = config.cascade(self.route.serve)
        self.task = config.task(self.route.task) if self.route.task else None
        chain = [self.cascade.first, self.cascade.then] if self.cascade else [self.route.serve]
        self.chain = chain + [n for n in self.route.fallbacks if n not in chain]
        self.threshold = self._threshold(recommendation)
        self.candidates = {
            name: Candidate(served_config(config.candidate(name), recommendation), base)
            for name in self.chain
        }
        # Self-hosted calls cost their busy seconds, APIs their tokens (see pricing.py).
        self.prices = {
            name: self._measured_price(recommendation, name)
            or pricing_for(config.candidate(name).price, None)
            for name in self.chain
        }
        self.log_path = resolve(base, self.route.log)
        self._log_lock = threading.Lock()
        self.calls = 0

    def _threshold(self, recommendation: dict | None) -> float | None:
        cascade = self.cascade
        if cascade is None:
            return None
        if cascade.check == "tests":
            raise UserError(
                f"cascade {cascade.name}: the 'tests' check needs each item's unit tests, which "
                "live requests do not have; serve a cascade with a logprob, agreement or format check"
            )
        if cascade.check == "format" and (self.task is None or self.task.format is None):
            raise UserError(
                f"cascade {cascade.name}: the 'format' check needs route.task with a format"
            )
        if cascade.threshold is not None:
            return cascade.threshold
        found = None
        for task in (recommendation or {}).get("tasks", []):
            if task["task"] != self.route.task:
                continue
            found = next((c for c in task["cascades"] if c["name"] == cascade.name), None)
        if found is None and cascade.check == "format":
            return 1.0  # pass/fail, uncalibrated: escalate a non-compliant answer
        if found is None:
            raise UserError(
                f"cascade {cascade.name} has no threshold: set `threshold` in the portfolio file, or "
                "run `syllabus portfolio` (with route.task naming a task it runs on) and pass "
                "--from OUT to use the threshold it calibrated"
            )
        return float(found["threshold"])

    def _measured_price(self, recommendation: dict | None, name: str) -> Pricing | None:
        for task in (recommendation or {}).get("tasks", []):
            if self.route.task and task["task"] != self.route.task:
                continue
            for option in task["options"]:
                pricing = option.get("pricing") or {}
                if option["name"] == name and pricing.get("usd_per_token_out") is not None:
                    return Pricing(**pricing)
        return None

    def open(self) -> Router:
        for candidate in self.candidates.values():
            candidate.open()
        return self

    def close(self) -> None:
        for candidate in self.candidates.values():
            candidate.close()

    # -- one call -------------------------------------------------------------------------------

    def _generate(self, name: str, inputs: dict, params: dict, on_text) -> tuple[Any, Attempt]:
        candidate = self.candidates[name]
        start = time.perf_counter()
        try:
            request = candidate.request(**inputs, **params)
            completion = candidate.backend.stream(request, on_text)
        except BackendError as exc:
            return None, Attempt(name, False, time.perf_counter() - start, error=str(exc))
        usage = completion.usage
        cost = self.prices[name].cost(
            usage.prompt_tokens, usage.completion_tokens, completion.latency_s
        )
        return completion, Attempt(
            name,
            True,
            time.perf_counter() - start,
            usage.prompt_tokens,
            usage.completion_tokens,
            cost,
        )

    def _check(self, completion, inputs: dict, params: dict, attempts: list) -> bool:
        """The cascade's check on the first model's answer, scored by `cascades.confidence` as
        `syllabus portfolio` scores its records (extra samples count as attempts): True when
        it escalates."""
        cascade = self.cascade
        evidence = Evidence(text=completion.text)
        if is_empty(completion.text):
            pass  # escalates at any threshold: no samples drawn (nor measured by the portfolio)
        elif cascade.check == "logprob":
            evidence.mean_logprob = mean_logprob(completion)
        elif cascade.check == "format":
            evidence.compliant = check_format(completion.text, self.task)[0]
        else:
            samples = []
            for index in range(cascade.samples):
                sample_params = {
                    **params,
                    "temperature": cascade.temperature,
                    "seed": params["seed"] + 1 + index,  # the portfolio's seeds
                    "logprobs": 0,
                }
                sample, attempt = self._generate(
                    cascade.first, inputs, sample_params, lambda _: None
                )
                attempt.check = "agreement sample"
                attempts.append(attempt)
                samples.append(sample.text if sample is not None else None)
            # The task's answer extraction on the request's stop sequences, as measured.
            evidence.agrees = agreements(
                completion.text, samples, self.task, params.get("stop") or []
            )
        score = confidence(cascade, evidence)
        escalated = escalates(score, self.threshold)
        attempts[0].check = (
            f"{cascade.check} {score:.4g} vs threshold {self.threshold:.4g}"
            + (" (empty answer)" if is_empty(completion.text) else "")
            + (": escalate" if escalated else ": pass")
        )
        attempts[0].score = score
        return escalated

    def answer(self, inputs: dict, params: dict, on_text=None, model: str | None = None) -> dict:
        """Run the route for one call. `on_text` gets pieces as they may be shown: live for a
        single model, the whole held answer at once for a cascade. `model` may name one of the
        route's candidates to call it directly (then only the fallbacks follow it)."""
        direct = model is not None and model != self.name
        chain = [model, *[n for n in self.route.fallbacks if n != model]] if direct else self.chain
        cascade = None if direct else self.cascade
        start = time.perf_counter()
        attempts: list[Attempt] = []
        first_text: list[float] = []
        delivered: list[str] = []

        def live(piece: str) -> None:
            if piece and on_text is not None:
                if not first_text:
                    first_text.append(time.perf_counter() - start)
                delivered.append(piece)
                on_text(piece)

        completion, served_by, escalated = None, None, False
        for position, name in enumerate(chain):
            holding = cascade is not None and position == 0
            params_here = dict(params)
            if holding and cascade.check == "logprob":
                params_here["logprobs"] = 1
            result, attempt = self._generate(
                name, inputs, params_here, (lambda _: None) if holding else live
            )
            attempts.append(attempt)
            if result is None:
                if delivered:
                    break  # text already sent cannot be taken back: no fall-through
                continue
            attempt.empty = is_empty(result.text)
            if completion is None or not attempt.empty:
                # An answer with text stays the reply if every later model fails or is empty.
                completion, served_by = result, name
            if holding:
                # The check decides, as in the portfolio (an empty answer scores -inf, so it
                # escalates at every threshold but "never").
                escalated = self._check(result, inputs, params, attempts)
                if escalated:
                    continue
                break
            if attempt.empty and not delivered:
                continue  # nothing was shown: the next model may answer
            break
        status = "error" if completion is None else "empty" if is_empty(completion.text) else "ok"
        if status == "ok" and not delivered and on_text is not None:
            live(completion.text)  # a held (or unstreamed) answer goes out whole
        latency = time.perf_counter() - start
        costs = [a.cost_usd for a in attempts if a.ok]
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "id": uuid.uuid4().hex,
            "route": model if direct else self.name,
            # "empty": the models answered with no text; never logged (nor served) as "ok".
            "status": status,
            "served_by": served_by,
            "escalated": escalated,
            "attempts": [
                {**vars(a), "score": finite_or_text(a.score)} if a.score is not None else vars(a)
                for a in attempts
            ],
            **inputs,
            "max_tokens": params.get("max_tokens"),
            "stop": params.get("stop"),
            "temperature": params.get("temperature"),
            "completion": completion.text if completion is not None else None,
            "prompt_tokens": completion.usage.prompt_tokens if completion is not None else 0,
            "completion_tokens": completion.usage.completion_tokens
            if completion is not None
            else 0,
            "total_tokens": sum(a.prompt_tokens + a.completion_tokens for a in attempts),
            "latency_s": round(latency, 5),
            "ttft_s": round(first_text[0], 5) if first_text else None,
            "cost_usd": sum(costs) if all(c is not None for c in costs) else None,
            "finish_reason": completion.finish_reason if completion is not None else None,
        }
        self.write_log(record)
        return {"completion": completion, "record": record, "partial": bool(delivered)}

    def write_log(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._log_lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as sink:
                sink.write(line)
            self.calls += 1


# -- HTTP -----------------------------------------------------------------------------------------


def _text_content(content, where: str) -> str:
    """Message content as text: a string, or OpenAI's list of {"type": "text", "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise RequestError(
        400, f"{where}: content must be a string or a list of text parts", "invalid_value"
    )


def parse_body(raw: bytes, mode: str, router: Router) -> tuple[dict, dict, dict]:
    """(inputs, sampling params, options) from a request body, or a RequestError."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, "the body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object", "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "'model' is required", "missing_required_parameter")
    if model not in (router.name, *router.chain):
        raise RequestError(
            404,
            f"the model {model!r} does not exist here; this endpoint serves {router.name!r}",
            "model_not_found",
        )
    if mode == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty list", "invalid_value")
        parsed = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                "system",
                "user",
                "assistant",
            ):
                raise RequestError(
                    400,
                    f"messages[{index}]: needs a role of system, user or assistant",
                    "invalid_value",
                )
            parsed.append(
                {
                    "role": message["role"],
                    "content": _text_content(message.get("content"), f"messages[{index}]"),
                }
            )
        inputs = {"messages": parsed}
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(400, "'prompt' must be a string", "invalid_value")
        inputs = {"prompt": prompt}
    limit = router.route.max_tokens
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = router.route.default_max_tokens
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= limit
    ):
        raise RequestError(
            400, f"'max_tokens' must be an integer from 1 to {limit}", "invalid_value"
        )
    if body.get("n", 1) != 1:
        raise RequestError(400, "only n = 1 is supported", "unsupported_value")
    params: dict[str, Any] = {"max_tokens": max_tokens}
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int | float) or not low <= value <= high:
                raise RequestError(
                    400, f"'{key}' must be a number from {low} to {high}", "invalid_value"
                )
            params[key] = float(value)
    params.setdefault("temperature", router.config.temperature)
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise RequestError(400, "'stop' must be a string or up to 4 strings", "invalid_value")
        params["stop"] = stop
    seed = body.get("seed")
    params["seed"] = (
        seed if isinstance(seed, int) and not isinstance(seed, bool) else router.config.seed
    )
    stream_options = body.get("stream_options") or {}
    options = {
        "model": model,
        "stream": bool(body.get("stream", False)),
        "include_usage": bool(
            isinstance(stream_options, dict) and stream_options.get("include_usage")
        ),
    }
    return inputs, params, options


def _usage(record: dict) -> dict:
    return {
        "prompt_tokens": record["prompt_tokens"],
        "completion_tokens": record["completion_tokens"],
        "total_tokens": record["prompt_tokens"] + record["completion_tokens"],
    }


def _failure(record: dict) -> RequestError:
    errors = [a["error"] for a in record["attempts"] if a["error"]]
    if errors and all("context" in e and ("exceed" in e or "longer" in e) for e in errors):
        return RequestError(
            400,
            f"the prompt is too long for the model's context: {errors[0]}",
            "context_length_exceeded",
        )
    return RequestError(
        503,
        "every model of this route failed: " + " | ".join(errors),
        "backend_unavailable",
        "server_error",
    )


def _empty(record: dict, router: Router) -> RequestError:
    """An answer with no text is refused with the reason, never passed on as a success."""
    names = list(dict.fromkeys(a["candidate"] for a in record["attempts"] if a.get("empty")))
    message = f"{', '.join(names)} answered with no text"
    completion_style = [
        n for n in names if router.candidates[n].config.prompt_style == "completion"
    ]
    if "messages" in record and completion_style:
        message += (
            f". {', '.join(completion_style)} is prompt_style 'completion': chat messages reach "
            "it as the plain transcript `syllabus portfolio` measures it on (one user message: "
            "its text, as a prompt), which this model does not continue. Send the kind of "
            "prompt it was measured on (/v1/completions), or give the candidate "
            "prompt_style = 'chat' (its chat template) and measure it again"
        )
    return RequestError(422, message, "empty_answer")


def create_app(router: Router, api_key: str | None):
    app = FastAPI(title=f"syllabus route: {router.name}", docs_url=None, redoc_url=None)
    # Generation waits on each model's worker thread; these threads only wait, so there can be
    # many (a default executor of cores + 4 would queue clients before the models do).
    pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="syllabus-route")

    def error_response(exc: RequestError) -> JSONResponse:
        return JSONResponse(envelope(str(exc), exc.kind, exc.code), status_code=exc.status)

    def authorise(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {api_key}":
            raise RequestError(
                401,
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                "invalid_api_key",
            )

    async def read_body(request: Request) -> bytes:
        limit = router.route.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the request body is over {limit} bytes", "request_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise RequestError(
                    413, f"the request body is over {limit} bytes", "request_too_large"
                )
        return bytes(body)

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            authorise(request)
        except RequestError as exc:
            return error_response(exc)
        names = [router.name, *[n for n in router.chain if n != router.name]]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "syllabus"} for n in names
            ],
        }

    async def handle(request: Request, mode: str):
        try:
            authorise(request)
            inputs, params, options = parse_body(await read_body(request), mode, router)
        except RequestError as exc:
            return error_response(exc)
        created = int(time.time())
        prefix = "chatcmpl" if mode == "chat" else "cmpl"
        call_id = f"{prefix}-{uuid.uuid4().hex}"
        obj = "chat.completion" if mode == "chat" else "text_completion"
        loop = asyncio.get_running_loop()

        def choice(text: str | None, finish: str | None, final: bool) -> dict:
            if mode == "chat":
                key = "message" if final else "delta"
                content = (
                    {"role": "assistant", "content": text}
                    if final
                    else ({} if text is None else {"content": text})
                )
                return {"index": 0, key: content, "finish_reason": finish, "logprobs": None}
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}

        if not options["stream"]:
            result = await loop.run_in_executor(
                pool, router.answer, inputs, params, None, options["model"]
            )
            record = result["record"]
            if result["completion"] is None:
                return error_response(_failure(record))
            if record["status"] == "empty":
                return error_response(_empty(record, router))
            return JSONResponse(
                {
                    "id": call_id,
                    "object": obj,
                    "created": created,
                    "model": options["model"],
                    "system_fingerprint": record["served_by"],
                    "choices": [choice(record["completion"], record["finish_reason"], True)],
                    "usage": _usage(record),
                },
                headers={
                    "x-syllabus-served-by": record["served_by"],
                    "x-syllabus-escalated": str(record["escalated"]).lower(),
                },
            )

        queue: asyncio.Queue = asyncio.Queue()

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("text", piece))

        def work() -> None:
            try:
                loop.call_soon_threadsafe(
                    queue.put_nowait,
                    ("done", router.answer(inputs, params, on_text, options["model"])),
                )
            except Exception as exc:  # a bug must still end the stream
                loop.call_soon_threadsafe(queue.put_nowait, ("crash", exc))

        pool.submit(work)
        chunk_object = "chat.completion.chunk" if mode == "chat" else "text_completion"
        usage_field = {"usage": None} if options["include_usage"] else {}

        def chunk(choices: list[dict], **extra) -> str:
            return json.dumps(
                {
                    "id": call_id,
                    "object": chunk_object,
                    "created": created,
                    "model": options["model"],
                    "choices": choices,
                    **usage_field,
                    **extra,
                }
            )

        async def events():
            if mode == "chat":
                yield {
                    "data": chunk(
                        [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                                "logprobs": None,
                            }
                        ]
                    )
                }
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield {"data": chunk([choice(value, None, False)])}
                    continue
                if kind == "crash":
                    yield {
                        "data": json.dumps(
                            envelope(f"internal error: {value}", "server_error", "internal_error")
                        )
                    }
                    break
                record = value["record"]
                if value["completion"] is None or record["status"] != "ok":
                    failure = (
                        _empty(record, router)
                        if record["status"] == "empty"
                        else (_failure(record))
                    )
                    yield {"data": json.dumps(envelope(str(failure), failure.kind, failure.code))}
                    break
                if value["partial"] and record["served_by"] is None:
                    break
                yield {"data": chunk([choice(None, record["finish_reason"], False)])}
                if options["include_usage"]:
                    yield {"data": chunk([], usage=_usage(record))}
                break
            yield {"data": "[DONE]"}

        return EventSourceResponse(events(), ping=15)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, "complete")

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return JSONResponse(
            envelope(f"no route {request.url.path}", "invalid_request_error", "not_found"),
            status_code=404,
        )

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc):
        return JSONResponse(
            envelope(
                f"{request.method} is not allowed on {request.url.path}",
                "invalid_request_error",
                "method_not_allowed",
            ),
            status_code=405,
        )

    return app


def serve(
    path: Path | str,
    *,
    port: int = 8080,
    host: str = "127.0.0.1",
    recommendation_dir: Path | str | None = None,
    on_ready=None,
) -> None:
    """Serve the portfolio's [route] until interrupted."""
    import uvicorn

    config, base = load_portfolio(path)
    recommendation = None
    if recommendation_dir is not None:
        file = Path(recommendation_dir) / "recommendation.json"
        if not file.exists():
            raise UserError(
                f"{file} does not exist: run `syllabus portfolio {path} -o {recommendation_dir}` first"
            )
        recommendation = json.loads(file.read_text())
    router = Router(config, base, recommendation)
    api_key = None
    if config.route.api_key_env:
        import os

        api_key = os.environ.get(config.route.api_key_env)
        if not api_key:
            raise UserError(
                f"route.api_key_env names {config.route.api_key_env}, which is not set: export the "
                "key clients must send, or remove api_key_env to serve without one"
            )
    router.open()
    try:
        app = create_app(router, api_key)
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        )
        if on_ready is not None:
            on_ready(router)
        server.run()
    finally:
        router.close()
