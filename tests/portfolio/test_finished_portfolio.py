"""A finished `syllabus portfolio` run with a HumanEval task, checked from what it wrote.

- HumanEval as a task kind: on the same problems and model, every item's completion, verdict
  and sandbox status equal `syllabus eval --task humaneval`'s, in completion and chat style.
- The figures: recommendation.json is recomputed from samples/<task>/<candidate>.jsonl alone
  with the formulas written out in this file (cost per call from tokens x price or busy
  seconds, the month at the task's volume, the Wilson bounds, p95, the lower-bound decision and
  the cheapest option that meets the bar), not with the package's own functions.
- The report of that run fits a 1,280 px window, with every plot drawn.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from statistics import NormalDist

import pytest

from syllabus.common.benchmarks import load_problems
from syllabus.eval import humaneval
from syllabus.portfolio.config import TaskConfig
from syllabus.portfolio.tasks import Item, load_items, score, stop_for
from tests.conftest import REPO

# Problems a 135M model solves some of and fails others: a mix of verdicts to compare.
PROBLEMS = ("HumanEval/23", "HumanEval/53", "HumanEval/2", "HumanEval/0")
LIMIT = 3  # the portfolio's `limit` keeps the first three; eval's --limit the same
MAX_TOKENS = 64  # the chat answers' functions fit (33 to 63 tokens measured)

PORTFOLIO = """\
name = "finished"
calibration_share = 0.5

[[candidates]]
name = "small"
model = "smollm2"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[[candidates]]
name = "small-chat"
model = "smollm2"
prompt_style = "chat"
price = {{ usd_per_mtok_in = 0.15, usd_per_mtok_out = 0.6 }}

[[tasks]]
name = "humaneval"
kind = "humaneval"
data = "problems.jsonl"
limit = {limit}
max_tokens = {max_tokens}
quality_threshold = 0.05
p95_latency_s = 60.0
daily_volume = 400

[[tasks]]
name = "capitals"
data = "{repo}/recipes/portfolio/capitals.jsonl"
limit = 8
quality_threshold = 0.1
p95_latency_s = 30.0
daily_volume = 5000
max_tokens = 6

[[cascades]]
name = "tests-then-chat"
first = "small"
then = "small-chat"
check = "tests"
tasks = ["humaneval"]
"""


def write_problems(path: Path) -> None:
    import dataclasses

    by_id = {p.task_id: p for p in load_problems()}
    path.write_text("".join(json.dumps(dataclasses.asdict(by_id[t])) + "\n" for t in PROBLEMS))


# -- without a model: the kind's items, stops and scoring ----------------------------------------


def humaneval_task(**fields) -> TaskConfig:
    return TaskConfig(
        name="he",
        kind="humaneval",
        **({"quality_threshold": 0.5, "p95_latency_s": 9.0, "daily_volume": 10} | fields),
    )


def test_humaneval_task_config():
    task = humaneval_task(limit=2)
    assert task.data is None and task.max_tokens == 384  # eval's default, unless set
    assert humaneval_task(max_tokens=64).max_tokens == 64
    with pytest.raises(ValueError, match="needs `data`"):
        TaskConfig(name="c", quality_threshold=0.5, p95_latency_s=9.0, daily_volume=10)
    with pytest.raises(ValueError, match="no `format`"):
        humaneval_task(format={"json_schema": {"type": "object"}})


def test_humaneval_items_are_evals_prompts_and_its_stops(tmp_path):
    items = load_items(humaneval_task(limit=2), tmp_path)
    problems = load_problems()[:2]
    assert [i.key for i in items] == [p.task_id for p in problems]
    for item, problem in zip(items, problems, strict=True):
        assert item.prompt == problem.prompt
        assert item.messages == [
            {"role": "user", "content": humaneval.CHAT_INSTRUCTION.format(prompt=problem.prompt)}
        ]
    task = humaneval_task()
    assert stop_for(task, items[0], "completion") == humaneval.STOP
    assert stop_for(task, items[0], "chat") == []
    write_problems(tmp_path / "problems.jsonl")
    from_file = load_items(humaneval_task(data="problems.jsonl", limit=3), tmp_path)
    assert [i.key for i in from_file] == list(PROBLEMS[:3])


def test_humaneval_scoring_runs_the_tests_in_the_sandbox(tmp_path):
    """Canonical solutions pass, a wrong body fails, a chat answer's code block is executed,
    a failed call fails: each verdict from eval.humaneval's own execution."""
    task = humaneval_task(limit=2)
    items = load_items(task, tmp_path)
    problems = load_problems()[:2]
    canonical = [p.canonical_solution + "\ndef after():\n    pass\n" for p in problems]
    rows = score(task, items, canonical, "completion", workers=2)
    assert [r["passed"] for r in rows] == [True, True]
    # The stop sequence cut the completion where eval cuts it: the trailing def is not run.
    assert rows[0]["answer"] == humaneval.truncate(canonical[0])
    wrong = score(task, items, ["    return None\n", None], "completion", workers=2)
    assert [r["passed"] for r in wrong] == [False, False]
    assert wrong[0]["status"] == "failed" and wrong[0]["exec_error"]
    assert wrong[1]["error_call"]
    first = problems[0]
    chat = f"Here it is:\n```python\n{first.prompt}{first.canonical_solution}```\nDone."
    (verdict,) = score(task, items[:1], [chat], "chat", workers=2)
    assert verdict["passed"] and verdict["answer"].startswith("    pass\n\n")


def test_an_item_is_fingerprinted_with_its_tests_and_the_task_version(tmp_path):
    (item,) = load_items(humaneval_task(limit=1), tmp_path)
    assert isinstance(item, Item)
    assert item.content["spec"]["tests"] == load_problems()[0].test
    assert item.content["spec"]["task_version"] == humaneval.TASK_VERSION


# -- a finished run on SmolLM2 --------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(smollm2_path, tmp_path_factory):
    """The portfolio above, run to the end; and `syllabus eval` on the same problems."""
    from syllabus.backends.specs import backend_for
    from syllabus.eval.run import EvalSettings, evaluate
    from syllabus.portfolio.run import run_portfolio

    root = tmp_path_factory.mktemp("finished")
    write_problems(root / "problems.jsonl")
    path = root / "portfolio.toml"
    path.write_text(PORTFOLIO.format(repo=REPO, limit=LIMIT, max_tokens=MAX_TOKENS))
    out = root / "out"
    run_portfolio(path, out, show_progress=False)
    evals = {}
    backend = backend_for("smollm2")
    try:
        for style in ("completion", "chat"):
            settings = EvalSettings(limit=LIMIT, max_tokens=MAX_TOKENS, prompt_style=style)
            evaluate(
                backend,
                [f"humaneval={root / 'problems.jsonl'}"],
                root / f"eval-{style}",
                settings,
                show_progress=False,
            )
            samples = root / f"eval-{style}" / "humaneval" / "samples.jsonl"
            evals[style] = {r["task_id"]: r for r in map(json.loads, samples.open())}
    finally:
        backend.close()
    return path, out, evals


def read_samples(out: Path, task: str, candidate: str) -> dict[str, dict]:
    path = out / "samples" / task / f"{candidate}.jsonl"
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_humaneval_verdicts_equal_syllabus_evals(finished):
    _, out, evals = finished
    for candidate, style in (("small", "completion"), ("small-chat", "chat")):
        mine = read_samples(out, "humaneval", candidate)
        theirs = evals[style]
        # eval writes samples as they finish (in any order); the portfolio in item order.
        assert list(mine) == list(PROBLEMS[:LIMIT]) and set(theirs) == set(mine)
        for key, row in mine.items():
            assert row["answer"] == theirs[key]["completion"], (candidate, key)
            assert row["passed"] == theirs[key]["passed"], (candidate, key)
            assert row["status"] == theirs[key]["status"], (candidate, key)
    verdicts = [r["passed"] for s in evals.values() for r in s.values()]
    assert any(verdicts) and not all(verdicts), verdicts  # a mix, so equality means something


# -- the figures, recomputed from the records ----------------------------------------------------

Z = NormalDist().inv_cdf(1 - (1 - 0.95) / 2)  # 1.95996...: the default confidence, two-sided
DAYS_PER_MONTH = 30


def wilson(passed: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def p95(values: list[float]) -> float:
    """The 95th percentile, linear between the two closest ranks (numpy's default)."""
    ranked = sorted(values)
    position = 0.95 * (len(ranked) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ranked) - 1)
    return ranked[below] + (ranked[above] - ranked[below]) * (position - below)


def call_cost(price: dict, row: dict) -> float:
    """An API's call: its tokens at the list prices. Self-hosted: the seconds the hardware
    worked on it, at usd_per_hour / 3600 / utilisation per busy second (idle time is paid)."""
    if "usd_per_hour" in price:
        return row["latency_s"] * price["usd_per_hour"] / 3600 / price.get("utilisation", 0.5)
    return (
        row["prompt_tokens"] * price["usd_per_mtok_in"]
        + row["completion_tokens"] * price["usd_per_mtok_out"]
    ) / 1_000_000


def figures(passed: list[bool], costs: list[float], latencies: list[float], task: dict) -> dict:
    n = len(passed)
    low, high = wilson(sum(passed), n)
    per_call = sum(costs) / n
    return {
        "items": n,
        "quality": sum(passed) / n,
        "ci_low": low,
        "ci_high": high,
        "latency_p95_s": p95(latencies),
        "cost_per_request_usd": per_call,
        "cost_per_month_usd": per_call * task["daily_volume"] * DAYS_PER_MONTH,
        # The bar is met only by the interval's lower bound, and the p95 objective as measured.
        "meets": low >= task["quality_threshold"] and p95(latencies) <= task["p95_latency_s"],
    }


def cascade_figures(
    cascade: dict, first: dict[str, dict], then: dict[str, dict], prices: dict, task: dict
) -> dict:
    """Check "tests": score 1 when the first answer passed its tests, else 0 (a failed call
    -inf); an item escalates when its score is under the threshold, and then costs and waits
    for both calls and gets the second model's verdict. Over the report items only."""
    threshold = float(cascade["threshold"])
    passed, costs, latencies = [], [], []
    for key in cascade["report_items"]:
        a, b = first[key], then[key]
        confidence = -math.inf if a["text"] is None else (1.0 if a["passed"] else 0.0)
        escalated = confidence < threshold
        passed.append(b["passed"] if escalated else a["passed"])
        costs.append(
            call_cost(prices[cascade["first"]], a)
            + (call_cost(prices[cascade["then"]], b) if escalated else 0.0)
        )
        latencies.append(a["latency_s"] + (b["latency_s"] if escalated else 0.0))
    return figures(passed, costs, latencies, task)


def test_recommendation_recomputed_from_the_records(finished):
    path, out, _ = finished
    portfolio = tomllib.loads(path.read_text())
    prices = {c["name"]: c["price"] for c in portfolio["candidates"]}
    recommendation = json.loads((out / "recommendation.json").read_text())
    assert recommendation["bound"] == "lower" and recommendation["confidence"] == 0.95
    chosen = []
    for task in recommendation["tasks"]:
        settings = next(t for t in portfolio["tasks"] if t["name"] == task["task"])
        assert task["daily_volume"] == settings["daily_volume"]
        expected: dict[str, dict] = {}
        records = {name: read_samples(out, task["task"], name) for name in prices}
        for name, rows in records.items():
            rows = list(rows.values())
            expected[name] = figures(
                [r["passed"] for r in rows],
                [call_cost(prices[name], r) for r in rows],
                [r["latency_s"] for r in rows],
                settings,
            )
        for cascade in task["cascades"]:
            assert cascade["check"] == "tests"
            expected[cascade["name"]] = cascade_figures(
                cascade, records[cascade["first"]], records[cascade["then"]], prices, settings
            )
        assert {o["name"] for o in task["options"]} == set(expected)
        for saved in task["options"]:
            for figure, value in expected[saved["name"]].items():
                assert saved[figure] == pytest.approx(value, rel=1e-9, abs=1e-12), (
                    task["task"],
                    saved["name"],
                    figure,
                )
        # The choice: the cheapest per month of the options that meet the bar (ties: quality).
        meeting = [
            (f["cost_per_month_usd"], -f["quality"], n) for n, f in expected.items() if f["meets"]
        ]
        choice = min(meeting)[2] if meeting else None
        assert task["choice"] == choice
        if choice is not None:
            month = expected[choice]["cost_per_month_usd"]
            assert f"use {choice} (${month:,.2f}/month" in task["sentence"]
            dearer = [
                f["cost_per_month_usd"]
                for f in expected.values()
                if f["cost_per_month_usd"] > month
            ]
            if dearer:  # the saving quoted is against the dearest option, as a ratio
                assert f"; {max(dearer) / month:.1f}x cheaper than " in task["sentence"]
            else:
                assert "cheaper than" not in task["sentence"]
            chosen.append(choice)
        else:
            assert "no option meets the bar" in task["sentence"]
    assert chosen, "no task chose an option: the decision went unchecked"


def test_self_hosted_throughput_is_the_records_tokens_over_their_seconds(finished):
    _, out, _ = finished
    recommendation = json.loads((out / "recommendation.json").read_text())
    for task in recommendation["tasks"]:
        rows = list(read_samples(out, task["task"], "small").values())
        small = next(o for o in task["options"] if o["name"] == "small")
        tokens = sum(r["completion_tokens"] for r in rows)
        seconds = sum(r["latency_s"] for r in rows)
        assert small["throughput_tok_s"] == pytest.approx(tokens / seconds)
        assert small["pricing"]["kind"] == "self-hosted"
        api = next(o for o in task["options"] if o["name"] == "small-chat")
        assert api["pricing"]["kind"] == "api"


# -- the report of the finished run ---------------------------------------------------------------


def test_finished_report_fits_1280_px_with_every_plot(finished, tmp_path):
    from tests.report.test_browser import CHROMIUM, layout_at_1280, open_in_chromium

    if CHROMIUM is None:
        pytest.skip("chromium not installed (make test installs Debian's `chromium` when root)")
    _, out, _ = finished
    page = out / "report.html"
    dom, console = open_in_chromium(page, tmp_path / "profile")
    assert console == []
    html_tag = dom[: dom.index(">", dom.index("<html")) + 1]
    assert 'data-rendered-plots="3"' in html_tag and "data-errors" not in html_tag
    layout = layout_at_1280(page, tmp_path)
    assert int(layout["tables"]) >= 3  # two tasks' options, the cascade's operating rows
    assert int(layout["scroll-width"]) <= 1280, layout
    assert layout["wide-tables"] == "none", layout
    # The cascade: its sweep as a curve, and named operating rows rather than a row per threshold.
    assert '<tr data-point="' in dom and "chosen threshold" in dom
