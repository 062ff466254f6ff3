"""The flywheel, one round end to end: `syllabus route` serves a model, a stream of requests it
has never seen arrives through the official `openai` client and is logged, the next model is
fine-tuned on the log's training part, and a portfolio round measures the model served and the
new one on the log's held-out part, against references the team holds.

`python -m syllabus.portfolio.flywheel ROUND.toml --unseen-by DIR -o OUT` (with `--serve
SERVE.toml --from RUN` when another file is served, e.g. a portfolio's built recommendation):

1. requests: dates task prompts (portfolio/dates.py) from a new seed, none of them a date in
   the dates splits named by `--unseen-by` (train, calibration, test), so the traffic is
   unseen by the model served and by its evaluation; their program-computed references are
   appended to the round task's `references` file (what a team with a checker would have);
2. serve: `syllabus route SERVE.toml [--from RUN]` (default: ROUND.toml itself) on a free port of 127.0.0.1, one chat call
   per request (temperature 0, stop at the first newline, as the task is measured), stopped
   after; the calls land in its [route].log;
3. round: `syllabus portfolio ROUND.toml`, whose `kind = "log"` task reads that same log with a
   `split` (measured on the held-out part) and whose built candidate trains on the same log
   with the same `log_split` (the training part; load_portfolio refuses different splits),
   on the team's labels where its build names them (`labels`: the corrections are learnt,
   not the served mistakes) and on the answers served otherwise.

The round must measure what was served (checked: a round candidate's model is the served
GGUF, or the served cascade is one of the round's), so its pass rate on the held-out traffic is the "before" and the built
candidate's is the "after"; `flywheel.json` holds the figures, the split's counts and
fingerprints, and the wall times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from syllabus.errors import UserError
from syllabus.finetune.data import log_parts, read_labels, request_key
from syllabus.portfolio import dates
from syllabus.portfolio.build import served_config
from syllabus.portfolio.config import PortfolioConfig, TaskConfig, load_portfolio, resolve
from syllabus.portfolio.run import run_portfolio
from syllabus.portfolio.tasks import read_route_log

STOP = ["\n"]
"""The dates task is scored on its first line; the calls stop there, as the portfolio's do."""


@dataclass
class Traffic:
    calls: int
    ok: int
    statuses: dict[str, int]
    seconds: float
    latency_p50_s: float | None
    latency_p95_s: float | None


@dataclass
class FlywheelResult:
    served: str
    """The route's name and the model file it served."""
    served_model: str
    previous: str
    """The round candidate that is the model served."""
    built: list[str]
    traffic: Traffic
    log: str
    calls_in_log_before: int
    split: dict
    """Counts per part, fingerprints of each part's requests, and the requests both share (0)."""
    references: str
    options: list[dict]
    """The round's options on the held-out traffic: name, items, quality and its interval."""
    against_previous: list[dict] = field(default_factory=list)
    """Each built candidate minus the model served, paired over the held-out items."""
    sentence: str = ""
    round_dir: str = ""
    wall_s: dict = field(default_factory=dict)


def log_task(config: PortfolioConfig) -> TaskConfig:
    tasks = [t for t in config.tasks if t.kind == "log" and t.split is not None]
    if len(tasks) != 1 or tasks[0].references is None:
        raise UserError(
            "the flywheel round needs exactly one kind = 'log' task with a `split` and "
            "`references` (the held-out traffic and the team's labels for it)"
        )
    return tasks[0]


def seen_references(directories: list[Path]) -> set[str]:
    """Every reference of the dates splits (train, calibration, test) in `directories`: the
    traffic avoids these dates, so no request is one the served model trained or was
    evaluated on."""
    seen: set[str] = set()
    for directory in directories:
        files = [directory / f"{split}.jsonl" for split in dates.SPLITS]
        if not any(f.exists() for f in files):
            raise UserError(f"{directory}: no dates splits (train/calibration/test.jsonl)")
        for file in files:
            if file.exists():
                seen |= set(dates.read_split(file).references)
    return seen


def unseen_requests(seed: int, calls: int, seen: set[str]) -> list[dates.DateItem]:
    """`calls` dates task items from `seed`, none with a date in `seen`."""
    drawn = dates.draw(seed, {"train": 0, "calibration": 0, "test": calls + len(seen)})["test"]
    fresh = [item for item in drawn if item.reference not in seen][:calls]
    if len(fresh) < calls:  # cannot happen while calls + seen fit in the calendar
        raise UserError(f"flywheel: only {len(fresh)} unseen dates for {calls} calls")
    return fresh


class RouteProcess:
    """`syllabus route` in a subprocess on a free port of 127.0.0.1, until close()."""

    def __init__(self, serve: Path, from_dir: Path | None, stderr: Path, start_timeout_s=300):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        command = [sys.executable, "-m", "syllabus.cli", "route", str(serve)]
        command += ["--port", str(self.port)]
        if from_dir is not None:
            command += ["--from", str(from_dir)]
        stderr.parent.mkdir(parents=True, exist_ok=True)
        self.stderr = stderr
        with stderr.open("wb") as sink:
            self.proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"syllabus route exited: {stderr.read_text()[-1500:]}")
            try:
                answer = httpx.get(self.url + "/models", timeout=2)
                if answer.status_code == 200:
                    self.model = answer.json()["data"][0]["id"]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.close()
        raise UserError(f"syllabus route did not answer within {start_timeout_s} s (see {stderr})")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(url: str, model: str, items: list[dates.DateItem], max_tokens: int) -> None:
    """One chat call per item through the official client, one at a time."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
    for item in items:
        # A refusal (4xx) is logged by the route like any call ("error" or "empty"), so the
        # round sees it; it is not retried here.
        with contextlib.suppress(openai.APIStatusError):
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": item.prompt}],
                max_tokens=max_tokens,
                stop=STOP,
                temperature=0.0,
            )


def append_labels(path: Path, items: list[dates.DateItem]) -> None:
    """The program's reference for each request, keyed as the log's calls are (request_key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink:
        for item in items:
            row = {"messages": [{"role": "user", "content": item.prompt}]}
            sink.write(json.dumps({**row, "reference": item.reference}, ensure_ascii=False))
            sink.write("\n")


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def served_in_round(
    serve: PortfolioConfig, round_config: PortfolioConfig, recommendation, round_path: Path
) -> tuple[str, str]:
    """The round's name for what the route serves, and what that is: a candidate whose model
    is the served one (a built candidate of the serve file is the GGUF `--from` names), or the
    served cascade by its name. The round must measure what answered the traffic."""
    cascade = serve.cascade(serve.route.serve)
    if cascade is not None:
        if round_config.cascade(cascade.name) is None:
            raise UserError(
                f"{round_path}: the route serves cascade {cascade.name}; the round must "
                "measure it (a [[cascades]] of the same name)"
            )
        return cascade.name, f"cascade {cascade.first} -> {cascade.then}"
    served = served_config(serve.candidate(serve.route.serve), recommendation)
    # Model specs are paths from the working directory (or packaged names), as in `route`.
    served_model = Path(served.model).expanduser().resolve()
    for candidate in round_config.candidates:
        if candidate.model and Path(candidate.model).expanduser().resolve() == served_model:
            return candidate.name, str(served_model)
    raise UserError(
        f"{round_path}: no candidate's model is the served one ({served.model}): the round "
        "must measure the model that answered the traffic"
    )


def run_flywheel(
    round_path: Path | str,
    out: Path | str,
    *,
    serve_path: Path | str | None = None,
    from_dir: Path | str | None = None,
    calls: int = 300,
    seed: int = 1,
    unseen_by: list[Path | str] = (),
    show_progress: bool = True,
) -> FlywheelResult:
    """One round (see the module's docstring): `serve_path` (default: the round file itself)
    is served by `syllabus route [--from from_dir]`; `calls` requests from `seed`, none with a
    date in the splits of `unseen_by`."""
    start = time.monotonic()
    out = Path(out)
    round_path = Path(round_path)
    serve_path = Path(serve_path) if serve_path is not None else round_path
    serve, serve_base = load_portfolio(serve_path)
    round_config, round_base = load_portfolio(round_path)
    if serve.route is None:
        raise UserError(f"{serve_path}: no [route] table to serve")
    task = log_task(round_config)
    log = resolve(serve_base, serve.route.log).resolve()
    if resolve(round_base, task.data).resolve() != log:
        raise UserError(
            f"{round_path}: task {task.name} reads {task.data}, but the route logs to {log}: "
            "point the task's data at the route's log"
        )
    recommendation = None
    if from_dir is not None:
        recommendation = json.loads((Path(from_dir) / "recommendation.json").read_text())
    previous, served_model = served_in_round(serve, round_config, recommendation, round_path)
    before = len(read_route_log(log)) if log.exists() else 0
    items = unseen_requests(seed, calls, seen_references([Path(d) for d in unseen_by]))
    references = resolve(round_base, task.references)
    append_labels(references, items)

    route = RouteProcess(serve_path, Path(from_dir) if from_dir else None, out / "route.txt")
    serve_start = time.monotonic()
    try:
        send(route.url, route.model, items, task.max_tokens)
    finally:
        route.close()
    serve_s = time.monotonic() - serve_start
    logged = read_route_log(log)
    ours = logged[before:]
    statuses: dict[str, int] = {}
    for call in ours:
        statuses[call["status"]] = statuses.get(call["status"], 0) + 1
    latencies = [c["latency_s"] for c in ours if c["status"] == "ok"]
    traffic = Traffic(
        calls=len(ours),
        ok=statuses.get("ok", 0),
        statuses=statuses,
        seconds=round(serve_s, 1),
        latency_p50_s=_quantile(latencies, 0.5),
        latency_p95_s=_quantile(latencies, 0.95),
    )

    parts = log_parts(logged, task.split)
    labels = read_labels(references)
    split = {
        **task.split.model_dump(),
        "train_calls": len(parts.train),
        "heldout_calls": len(parts.heldout),
        "train_requests": len({request_key(c) for c in parts.train}),
        "heldout_requests": len({request_key(c) for c in parts.heldout}),
        "train_fingerprint": parts.fingerprint("train"),
        "heldout_fingerprint": parts.fingerprint("heldout"),
        "shared_requests": len(parts.shared_requests()),
        # What training on the labels changes: calls of the training part served wrong.
        "train_calls_served_unlike_label": sum(
            1
            for c in parts.train
            if request_key(c) in labels
            and (c.get("completion") or "").strip() != labels[request_key(c)].strip()
        ),
    }
    round_start = time.monotonic()
    result = run_portfolio(round_path, out / "round", show_progress=show_progress)
    round_s = time.monotonic() - round_start
    decision = result.task(task.name)
    options = [
        {
            k: o.get(k)
            for k in ("name", "items", "passed", "quality", "ci_low", "ci_high", "latency_p95_s")
        }
        for o in decision.options
        if o.get("measured")
    ]
    against = []
    if decision.specialization is not None:
        against = [
            row
            for row in asdict(decision.specialization)["against_untuned"]
            if row["against"] == previous
        ]
    flywheel = FlywheelResult(
        served=serve.route.serve,
        served_model=served_model,
        previous=previous,
        built=list(result.builds),
        traffic=traffic,
        log=str(log),
        calls_in_log_before=before,
        split=split,
        references=str(references),
        options=options,
        against_previous=against,
        sentence=decision.sentence,
        round_dir=str(out / "round"),
        wall_s={
            "serve": round(serve_s, 1),
            "round": round(round_s, 1),
            "total": round(time.monotonic() - start, 1),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "flywheel.json.tmp"
    partial.write_text(json.dumps(asdict(flywheel), indent=2))
    os.replace(partial, out / "flywheel.json")
    return flywheel


def summary(result: FlywheelResult) -> str:
    lines = [
        f"served {result.served} ({result.served_model}): {result.traffic.calls} calls, "
        f"{result.traffic.ok} ok, in {result.traffic.seconds:.0f} s "
        f"(p95 {result.traffic.latency_p95_s} s)",
        f"split (heldout {result.split['heldout']}, seed {result.split['seed']}): "
        f"{result.split['train_calls']} calls trained on, {result.split['heldout_calls']} held "
        f"out, {result.split['shared_requests']} requests shared; "
        f"{result.split['train_calls_served_unlike_label']} calls trained on were served "
        "unlike their label",
    ]
    for o in result.options:
        lines.append(
            f"  {o['name']}: {o['quality']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}] "
            f"on {o['items']} held-out calls"
        )
    for row in result.against_previous:
        if row["difference"] is not None:
            lines.append(
                f"  {row['built']} - {row['against']}: {row['difference']:+.3f} "
                f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] (paired)"
            )
    lines.append(result.sentence)
    lines.append(f"wall time {result.wall_s['total']:.0f} s; figures in {result.round_dir}/..")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m syllabus.portfolio.flywheel",
        description="One flywheel round: serve, log unseen traffic, fine-tune on the log's "
        "training part, measure on its held-out part.",
    )
    parser.add_argument("round", type=Path, help="the round's portfolio TOML")
    parser.add_argument(
        "--serve", type=Path, help="the TOML `syllabus route` serves (default: ROUND itself)"
    )
    parser.add_argument(
        "--from", dest="from_dir", type=Path, help="its portfolio run (built models)"
    )
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1, help="the traffic's seed")
    parser.add_argument(
        "--unseen-by",
        type=Path,
        action="append",
        default=[],
        help="a directory of dates splits whose dates the traffic avoids (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        result = run_flywheel(
            args.round,
            args.out,
            serve_path=args.serve,
            from_dir=args.from_dir,
            calls=args.calls,
            seed=args.seed,
            unseen_by=args.unseen_by,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(summary(result))


if __name__ == "__main__":
    main()
