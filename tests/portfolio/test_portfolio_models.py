"""`syllabus portfolio` with real models: SmolLM2-135M ("small", in-process and behind
llama-cpp-python's OpenAI server) and Gemma 3 270M ("large") on the shipped capitals and code
tasks. The recommendation, the cascade figures and the monthly cost are recomputed here from
the per-sample records, with formulas written out in this file."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from syllabus.portfolio.run import run_portfolio
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

HOURLY, UTILISATION, DAYS = 0.05, 0.5, 30

PORTFOLIO = """\
name = "test"
calibration_share = 0.5

[[candidates]]
name = "small"
model = "smollm2"
price = {{ usd_per_hour = {hourly}, utilisation = {utilisation} }}

[[candidates]]
name = "small-served"
model = "{server}"
api_model = "smollm2"
max_retries = 0
price = {{ usd_per_hour = {hourly}, utilisation = {utilisation} }}

[[candidates]]
name = "large"
model = "gemma3-270m"
price = {{ usd_per_hour = {hourly}, utilisation = {utilisation} }}

[[candidates]]
name = "frontier"
model = "https://api.example.invalid/v1"
api_key_env = "SYLLABUS_TEST_NO_SUCH_KEY"
skip_without_key = true
price = {{ usd_per_mtok_in = 2.0, usd_per_mtok_out = 8.0 }}
assume = {{ prompt_tokens = 60, completion_tokens = 4 }}

[[tasks]]
name = "capitals"
data = "{repo}/recipes/portfolio/capitals.jsonl"
limit = 8
quality_threshold = 0.3
p95_latency_s = 20.0
daily_volume = 1000
max_tokens = 6

[[tasks]]
name = "code"
data = "{repo}/recipes/portfolio/code.jsonl"
limit = 4
quality_threshold = 0.5
p95_latency_s = 30.0
daily_volume = 200
max_tokens = 32

[[cascades]]
name = "logprob"
first = "small"
then = "large"
check = "logprob"
tasks = ["capitals"]

[[cascades]]
name = "agreement"
first = "small"
then = "large"
check = "agreement"
samples = 2
tasks = ["capitals"]

[[cascades]]
name = "tests"
first = "small"
then = "large"
check = "tests"
tasks = ["code"]
"""


def wilson_low(passed: int, n: int, z: float = 1.959963984540054) -> float:
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half


def read_rows(out, task, candidate) -> dict[str, dict]:
    path = out / "samples" / task / f"{candidate}.jsonl"
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def busy_cost(seconds: float) -> float:
    return HOURLY / 3600 / UTILISATION * seconds


@pytest.fixture(scope="module")
def measured(llama_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("portfolio")
    path = root / "p.toml"
    path.write_text(
        PORTFOLIO.format(repo=REPO, server=llama_server, hourly=HOURLY, utilisation=UTILISATION)
    )
    out = root / "out"
    result = run_portfolio(path, out, show_progress=False)
    return path, out, result, json.loads((out / "recommendation.json").read_text())


def test_records_have_streamed_latency_tokens_and_answers(measured):
    _, out, _, _ = measured
    for candidate in ("small", "small-served", "large"):
        rows = read_rows(out, "capitals", candidate)
        assert len(rows) == 8
        for row in rows.values():
            assert row["text"] is not None and row["error"] == ""
            assert row["streamed"] and 0 < row["ttft_s"] <= row["latency_s"]
            assert 0 < row["completion_tokens"] <= 6
            # llama-cpp-python's server streams without usage: counted, and flagged as such.
            assert row["usage_unreported"] == (candidate == "small-served")
            assert (row["prompt_tokens"] > 20) == (candidate != "small-served")
    small = read_rows(out, "capitals", "small")
    assert all(r["mean_logprob"] is not None and r["mean_logprob"] <= 0 for r in small.values())
    # The log-prob copy of the model answers as the candidate does (greedy, same weights).
    assert all(r["logprob_text"] == r["text"] for r in small.values())
    assert all(len(r["samples"]) == 2 and r["agreement"] in (0, 0.5, 1) for r in small.values())
    # The same weights in-process and behind llama.cpp's server give the same greedy answers.
    served = read_rows(out, "capitals", "small-served")
    same = sum(small[k]["text"].strip() == served[k]["text"].strip() for k in small)
    assert same >= 6, [(small[k]["text"], served[k]["text"]) for k in small]


def test_recommendation_and_monthly_cost_match_the_records(measured):
    _, out, _, recommendation = measured
    for task in recommendation["tasks"]:
        volume, bar, objective = (
            task["daily_volume"],
            task["quality_threshold"],
            task["p95_latency_s"],
        )
        expected = {}
        for candidate in ("small", "small-served", "large"):
            rows = list(read_rows(out, task["task"], candidate).values())
            passed = sum(r["passed"] for r in rows)
            latencies = sorted(r["latency_s"] for r in rows)
            monthly = np.mean([busy_cost(r["latency_s"]) for r in rows]) * volume * DAYS
            option = next(o for o in task["options"] if o["name"] == candidate)
            assert option["quality"] == pytest.approx(passed / len(rows))
            assert option["ci_low"] == pytest.approx(wilson_low(passed, len(rows)))
            assert option["cost_per_month_usd"] == pytest.approx(monthly)
            assert option["cost_per_month_usd"] > 0
            p95 = np.interp(0.95 * (len(latencies) - 1), range(len(latencies)), latencies)
            assert option["latency_p95_s"] == pytest.approx(p95)
            tokens = sum(r["completion_tokens"] for r in rows)
            assert option["throughput_tok_s"] == pytest.approx(
                tokens / sum(r["latency_s"] for r in rows)
            )
            expected[candidate] = (
                wilson_low(passed, len(rows)) >= bar and p95 <= objective,
                monthly,
            )
        for cascade in task["cascades"]:
            figures = cascade["option"]
            expected[cascade["name"]] = (
                figures["ci_low"] >= bar and figures["latency_p95_s"] <= objective,
                figures["cost_per_month_usd"],
            )
        frontier = next(o for o in task["options"] if o["name"] == "frontier")
        assert not frontier["measured"] and not frontier["meets"]
        assert frontier["cost_per_month_usd"] == pytest.approx(
            (60 * 2.0 + 4 * 8.0) / 1e6 * volume * DAYS
        )
        meeting = {name: cost for name, (meets, cost) in expected.items() if meets}
        assert task["choice"] == (min(meeting, key=meeting.get) if meeting else None)
        assert task["sentence"].startswith(f"{task['task']}: ")


def test_cascade_figures_match_the_records(measured):
    _, out, _, recommendation = measured
    capitals = next(t for t in recommendation["tasks"] if t["task"] == "capitals")
    small, large = read_rows(out, "capitals", "small"), read_rows(out, "capitals", "large")
    cascades = {c["name"]: c for c in capitals["cascades"]}
    assert set(cascades) == {"logprob", "agreement"}
    for name, score in (("logprob", "mean_logprob"), ("agreement", "agreement")):
        cascade = cascades[name]
        calibration, report = set(cascade["calibration_items"]), set(cascade["report_items"])
        assert not calibration & report and calibration | report == set(small)
        finite = sorted(
            float(p["threshold"]) for p in cascade["curve"] if math.isfinite(float(p["threshold"]))
        )
        assert finite == sorted({small[k][score] for k in calibration})
        curve = []
        for point in cascade["curve"]:
            t = float(point["threshold"])
            up = {k for k in report if small[k][score] < t}
            quality = np.mean(
                [large[k]["passed"] if k in up else small[k]["passed"] for k in report]
            )
            cost = np.mean(
                [
                    busy_cost(
                        (
                            small[k]["logprob_latency_s"]
                            if name == "logprob"
                            else small[k]["latency_s"]
                        )
                        + (small[k]["samples_latency_s"] if name == "agreement" else 0)
                        + (large[k]["latency_s"] if k in up else 0)
                    )
                    for k in report
                ]
            )
            assert point["share_escalated"] == pytest.approx(len(up) / len(report))
            assert point["quality"] == pytest.approx(quality)
            assert point["cost_per_request_usd"] == pytest.approx(cost)
            curve.append((len(up) / len(report), quality))
        weak = np.mean([small[k]["passed"] for k in report])
        strong = np.mean([large[k]["passed"] for k in report])
        assert cascade["weak_quality"] == pytest.approx(weak)
        assert cascade["strong_quality"] == pytest.approx(strong)
        if strong != weak:
            best = {}
            for x, y in curve:
                best[x] = max(best.get(x, -1), y)
            xs = sorted(best)
            pgr = [(best[x] - weak) / (strong - weak) for x in xs]
            area = sum((xs[i + 1] - xs[i]) * (pgr[i] + pgr[i + 1]) / 2 for i in range(len(xs) - 1))
            assert cascade["apgr"] == pytest.approx(area)
    code = next(t for t in recommendation["tasks"] if t["task"] == "code")
    tests = code["cascades"][0]
    small_code, large_code = read_rows(out, "code", "small"), read_rows(out, "code", "large")
    at_check = next(p for p in tests["curve"] if p["threshold"] == 1.0)
    report = tests["report_items"]
    assert at_check["share_escalated"] == pytest.approx(
        np.mean([not small_code[k]["passed"] for k in report])
    )
    assert at_check["quality"] == pytest.approx(
        np.mean([small_code[k]["passed"] or large_code[k]["passed"] for k in report])
    )


def test_report_renders_in_chromium(measured, tmp_path):
    from tests.report.test_browser import CHROMIUM, open_in_chromium

    if CHROMIUM is None:
        pytest.skip("chromium not installed (make test installs Debian's `chromium` when root)")
    _, out, _, recommendation = measured
    dom, console = open_in_chromium(out / "report.html", tmp_path / "profile")
    assert console == []
    html_tag = dom[: dom.index(">", dom.index("<html")) + 1]
    assert "data-errors" not in html_tag
    assert 'data-rendered-plots="3"' in html_tag
    for task in recommendation["tasks"]:
        assert f'data-task="{task["task"]}"' in dom
    assert "ASSUMED" in dom and "Pareto front" in dom
    markdown = (out / "report.md").read_text()
    assert "APGR" in markdown and "frontier" in markdown


def test_rerun_resumes_and_a_changed_task_is_measured_again(measured, tmp_path):
    path, out, first, _ = measured
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    again = run_portfolio(path, copy, show_progress=False)
    for before, after in zip(first.tasks, again.tasks, strict=True):
        assert [o.get("latencies_s") for o in before.options] == [
            o.get("latencies_s") for o in after.options
        ]
    changed = tmp_path / "changed.toml"
    changed.write_text(path.read_text().replace("max_tokens = 6", "max_tokens = 5"))
    fresh = run_portfolio(changed, copy, show_progress=False)
    capitals = fresh.task("capitals")
    small = next(o for o in capitals.options if o["name"] == "small")
    assert (
        small["latencies_s"]
        != next(o for o in first.tasks[0].options if o["name"] == "small")["latencies_s"]
    )
    # --fresh measures everything again, even what matches: new latencies for an unchanged task.
    (copy / "notes.txt").write_text("mine")
    remeasured = run_portfolio(changed, copy, show_progress=False, fresh=True)
    for before, after in zip(fresh.tasks, remeasured.tasks, strict=True):
        assert [o.get("latencies_s") for o in before.options] != [
            o.get("latencies_s") for o in after.options
        ]
    assert (copy / "notes.txt").read_text() == "mine"


def test_cli_prints_one_sentence_per_task(measured, tmp_path):
    path, out, _, recommendation = measured
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    result = run_cli("portfolio", str(path), "-o", str(copy), "--quiet")
    assert result.returncode == 0, result.stderr
    for task in recommendation["tasks"]:
        assert task["sentence"][:40] in result.stdout.replace("\n", " ")
