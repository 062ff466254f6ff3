"""Pricing, intervals, the decision and cascade figures on hand-made records, checked against
values worked out here by hand (no model needed)."""

from __future__ import annotations

import math

import pytest

from syllabus.portfolio.cascades import apgr, cpt, evaluate_cascade, pgr_curve
from syllabus.portfolio.config import (
    CandidateConfig,
    CascadeConfig,
    PortfolioConfig,
    PriceConfig,
    TaskConfig,
)
from syllabus.portfolio.pricing import pricing_for
from syllabus.portfolio.recommend import choose, option, wilson


def row(key, passed, latency=1.0, prompt=10, completion=5, **extra):
    return {
        "key": key,
        "text": "x",
        "passed": passed,
        "compliant": None,
        "latency_s": latency,
        "ttft_s": latency / 2,
        "streamed": True,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        **extra,
    }


def config(**task):
    task_config = TaskConfig(
        name="t",
        data="t.jsonl",
        **({"quality_threshold": 0.8, "p95_latency_s": 2.0, "daily_volume": 1000} | task),
    )
    candidate = CandidateConfig(name="a", model="smollm2", price=PriceConfig(usd_per_hour=1.0))
    return PortfolioConfig(name="p", candidates=[candidate], tasks=[task_config]), task_config


def test_self_hosted_price_comes_from_measured_throughput_and_is_never_zero():
    price = PriceConfig(usd_per_hour=3.6, utilisation=0.5)
    rows = [row("a", True, latency=2.0, completion=10), row("b", True, latency=2.0, completion=30)]
    pricing = pricing_for(price, rows)
    assert pricing.throughput_tok_s == pytest.approx(40 / 4.0)
    # $3.6/h at 50% busy = $0.002 per busy second; 10 tok/s -> $0.0002 per completion token.
    assert pricing.usd_per_token_out == pytest.approx(0.002 / 10)
    assert pricing.cost(10, 0, 1.5) == pytest.approx(0.003)  # no tokens, still its seconds
    per_call = [
        pricing.cost(r["prompt_tokens"], r["completion_tokens"], r["latency_s"]) for r in rows
    ]
    assert sum(per_call) == pytest.approx(40 * pricing.usd_per_token_out)
    api = pricing_for(PriceConfig(usd_per_mtok_in=2.0, usd_per_mtok_out=8.0), rows)
    assert api.cost(1000, 100, 99.0) == pytest.approx(0.002 + 0.0008)


def test_wilson_matches_the_formula():
    z = 1.959963984540054
    for passed, n in ((9, 10), (0, 5), (20, 20), (37, 50)):
        p = passed / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = wilson(passed, n, 0.95)
        assert lo == pytest.approx(max(0.0, centre - half), abs=1e-9)
        assert hi == pytest.approx(min(1.0, centre + half), abs=1e-9)


def test_the_lower_bound_decides_not_the_point_estimate():
    portfolio, task = config(p95_latency_s=3.5)
    pricing = pricing_for(PriceConfig(usd_per_hour=1.0), None)
    nine_of_ten = [row(str(i), i < 9) for i in range(10)]
    small = option("small", "candidate", nine_of_ten, pricing, task, portfolio)
    assert small["quality"] == 0.9 and small["ci_low"] < 0.8
    assert not small["meets"] and small["status"] == "inconclusive"
    assert "items would tell" in small["misses"]
    many = [row(str(i), i < 95, latency=3.0) for i in range(100)]
    large = option("large", "candidate", many, pricing, task, portfolio)
    assert large["ci_low"] >= 0.8 and large["meets"]
    # $1/h at 50% = $1/1800 per busy second; 3 s per call; 1000 calls a day for 30 days.
    assert large["cost_per_month_usd"] == pytest.approx(3.0 / 1800 * 1000 * 30)
    decision = choose(task, [small, large], 0.95)
    assert decision["choice"] == "large"
    assert decision["sentence"].startswith("t: use large ($50.00/month at 1,000 calls/day)")


def test_the_saving_is_against_a_dearer_option_never_a_cheaper_one_that_misses():
    portfolio, task = config(quality_threshold=0.5, p95_latency_s=5.0)
    pricing = pricing_for(PriceConfig(usd_per_hour=1.0), None)
    good = [row(str(i), i < 40, latency=2.0) for i in range(50)]
    bad = [row(str(i), i < 5, latency=0.5) for i in range(50)]
    dear = [row(str(i), True, latency=4.0) for i in range(50)]
    best = option("best", "candidate", good, pricing, task, portfolio)
    cheap = option("cheap-but-wrong", "candidate", bad, pricing, task, portfolio)
    alone = choose(task, [best, cheap], 0.95)
    assert alone["choice"] == "best" and "cheaper than" not in alone["sentence"]
    dearest = option("dearest", "candidate", dear, pricing, task, portfolio)
    decision = choose(task, [best, cheap, dearest], 0.95)
    # $1/h at 50%: 4 s against 2 s per call.
    assert decision["sentence"].endswith("; 2.0x cheaper than dearest.")


def test_none_meets_says_by_how_much():
    portfolio, task = config(p95_latency_s=0.5)
    pricing = pricing_for(PriceConfig(usd_per_hour=1.0), None)
    slow = option(
        "slow", "candidate", [row(str(i), True) for i in range(200)], pricing, task, portfolio
    )
    weak = option(
        "weak",
        "candidate",
        [row(str(i), i < 100, latency=0.1) for i in range(200)],
        pricing,
        task,
        portfolio,
    )
    decision = choose(task, [slow, weak], 0.95)
    assert decision["choice"] is None
    assert "slow p95 0.500 s over; weak " in decision["sentence"]
    assert slow["misses"] == "latency: p95 1.000 s is 0.500 s over 0.5 s"
    lo = wilson(100, 200, 0.95)[0]
    assert f"weak {0.8 - lo:.3f} short on quality" in decision["sentence"]
    assert weak["misses"] == f"quality: lower bound {lo:.3f} is {0.8 - lo:.3f} below 0.8"


def test_routellm_figures_on_a_known_curve():
    points = [
        {"share_escalated": 0.0, "quality": 0.2},
        {"share_escalated": 0.5, "quality": 0.6},
        {"share_escalated": 1.0, "quality": 0.8},
    ]
    xs, pgr = pgr_curve(points, weak=0.2, strong=0.8)
    assert pgr == pytest.approx([0.0, 2 / 3, 1.0])
    # Trapezoids: 0.5 * (0 + 2/3) / 2 + 0.5 * (2/3 + 1) / 2.
    assert apgr(xs, pgr) == pytest.approx(1 / 6 + 5 / 12)
    assert cpt(xs, pgr, 0.5) == pytest.approx(0.375)  # 0.5 = (2/3) * x / 0.5
    assert cpt(xs, pgr, 0.8) == pytest.approx(0.7)  # 0.8 = 2/3 + (1/3) * (x - 0.5) / 0.5
    assert cpt(xs, [0.0, 0.1, 0.2], 0.5) is None


def test_cascade_thresholds_come_from_one_split_and_figures_from_the_other():
    portfolio, task = config(quality_threshold=0.5)
    portfolio.calibration_share = 0.5
    # First model: right when confident (logprob > -1), wrong otherwise; second always right.
    first = [
        row(
            f"k{i}",
            i % 2 == 0,
            latency=0.1,
            logprob_latency_s=0.1,
            mean_logprob=-0.5 if i % 2 == 0 else -2.0 - i / 10,
        )
        for i in range(12)
    ]
    then = [row(f"k{i}", True, latency=1.0) for i in range(12)]
    cascade = CascadeConfig(name="c", first="a", then="b", check="logprob")
    price = PriceConfig(usd_per_hour=3.6, utilisation=1.0)  # $0.001 per busy second
    result = evaluate_cascade(
        cascade, task, portfolio, first, then, pricing_for(price, first), pricing_for(price, then)
    )
    calibration, report = set(result["calibration_items"]), set(result["report_items"])
    assert not calibration & report and len(calibration | report) == 12
    finite = [p["threshold"] for p in result["curve"] if math.isfinite(p["threshold"])]
    by_key = {r["key"]: r for r in first}
    assert sorted(finite) == sorted({by_key[k]["mean_logprob"] for k in calibration})
    # Recompute the operating point on the report items from the records.
    t = result["threshold"]
    escalated = [k for k in report if by_key[k]["mean_logprob"] < t]
    quality = sum(True if k in escalated else by_key[k]["passed"] for k in report) / len(report)
    cost = sum(0.1 * 0.001 + (1.0 * 0.001 if k in escalated else 0) for k in report) / len(report)
    point = result["operating_point"]
    assert point["share_escalated"] == pytest.approx(len(escalated) / len(report))
    assert point["quality"] == pytest.approx(quality)
    assert point["cost_per_request_usd"] == pytest.approx(cost)
    assert result["option"]["items"] == len(report)
    # The confident answers are exactly the right ones here, so the cascade recovers the whole
    # gap at the share of wrong answers: APGR is high and CPT(80%) is under that share.
    assert result["apgr"] > 0.5
    assert result["cpt80"] <= sum(not by_key[k]["passed"] for k in report) / len(report) + 1e-9


# -- the typed result and the report of a whole analysis ----------------------------------------


def portfolio_result():
    """`analyse` over hand-made records: a small and a large candidate on 16 items, a hosted
    one priced from assumed tokens, and a log-prob cascade of the two measured ones; the texts
    that made the option table run wide (no usage reported, not streamed) included."""
    from syllabus.portfolio.config import AssumedTokens
    from syllabus.portfolio.run import analyse
    from syllabus.portfolio.tasks import Item

    keys = [f"k{i:02d}" for i in range(16)]
    small = [
        row(
            k,
            i % 2 != 0,
            latency=0.2,
            streamed=False,
            usage_unreported=True,
            logprob_latency_s=0.25,
            mean_logprob=-0.3 - (2.0 if i % 2 == 0 else 0.0) - i / 100,
        )
        for i, k in enumerate(keys)
    ]
    large = [row(k, i != 5, latency=1.5, prompt=40, completion=12) for i, k in enumerate(keys)]
    task = TaskConfig(
        name="capitals-of-the-world",
        data="t.jsonl",
        quality_threshold=0.7,
        p95_latency_s=2.0,
        daily_volume=25_000,
    )
    hourly = PriceConfig(usd_per_hour=1.2)
    portfolio = PortfolioConfig(
        name="wide-portfolio",
        candidates=[
            CandidateConfig(name="small-model-served-locally", model="smollm2", price=hourly),
            CandidateConfig(name="large", model="smollm2", price=hourly),
            CandidateConfig(
                name="frontier",
                model="openai:https://example.invalid/v1",
                api_key_env="NO_SUCH_KEY_FOR_TESTS",
                skip_without_key=True,
                price=PriceConfig(usd_per_mtok_in=2.0, usd_per_mtok_out=8.0),
                assume=AssumedTokens(prompt_tokens=300, completion_tokens=40),
            ),
        ],
        tasks=[task],
        cascades=[
            CascadeConfig(
                name="small-then-large", first="small-model-served-locally", then="large",
                check="logprob",
            )
        ],
    )  # fmt: skip
    items = {task.name: [Item(key=k, prompt="x") for k in keys]}
    records = {(task.name, "small-model-served-locally"): small, (task.name, "large"): large}
    return analyse(portfolio, items, records)


def test_analysis_is_typed_and_recommendation_json_keeps_its_shape():
    import json

    result = portfolio_result()
    task = result.task("capitals-of-the-world")
    assert [o["name"] for o in task.options] == [
        "small-model-served-locally",
        "large",
        "frontier",
        "small-then-large",
    ]
    assert task.choice is not None
    assert task.choice in {o["name"] for o in task.options if o["meets"]}
    assert task.sentence.startswith("capitals-of-the-world: use ")
    data = json.loads(json.dumps(result.to_json()))
    assert list(data)[:6] == [
        "name",
        "confidence",
        "bound",
        "bound_reason",
        "days_per_month",
        "tasks",
    ]
    saved = data["tasks"][0]
    assert saved["choice"] == task.choice and saved["items"] == 16
    assert saved["cascades"][0]["name"] == "small-then-large"
    # Non-finite thresholds are strings in the JSON (JSON has no infinity).
    assert all(isinstance(p["threshold"], str | float | int) for p in saved["cascades"][0]["curve"])


def test_cascade_report_shows_named_operating_rows_not_one_per_threshold(tmp_path):
    from syllabus.portfolio.report import operating_rows, render_html, render_markdown

    result = portfolio_result()
    cascade = result.tasks[0].cascades[0]
    rows = operating_rows(cascade)
    assert len(cascade["curve"]) > len(rows) >= 3  # the sweep has more points than rows
    names = [name for name, _, _ in rows]
    assert any(name.startswith("small-model-served-locally alone") for name in names)
    assert any("large alone" in name for name in names)
    chosen = [(name, point) for name, point, is_chosen in rows if is_chosen]
    assert len(chosen) == 1 and "chosen threshold" in chosen[0][0]
    assert chosen[0][1] == cascade["operating_point"]
    assert 0 < chosen[0][1]["share_escalated"] < 1  # small alone does not reach the bar
    shares = [point["share_escalated"] for _, point, _ in rows]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0
    html = render_html(result)
    section = html[html.index("<h3>Cascade small-then-large") : html.index('id="latency"')]
    assert section.count("<tr data-point=") == len(rows)
    assert 'class="text best"' in section  # the chosen threshold's row is highlighted
    assert html.count('<svg class="plot"') == 3  # quality-cost, latency, every cascade's curve
    md = render_markdown(result)
    assert "APGR" in md and "chosen threshold**" in md  # bold: the chosen row
    # Each option's verdict is a cell that never breaks inside a word.
    for o in result.tasks[0].options:
        row = html[html.index(f'<tr data-option="{o["name"]}">') :]
        assert row[: row.index("</tr>")].rstrip().endswith(f"<td>{o['status']}</td>")


def test_run_portfolio_writes_the_typed_result_as_recommendation_json(tmp_path, monkeypatch):
    """`run_portfolio` end to end with measuring replaced by the hand-made records: the
    returned result, recommendation.json and the two reports agree."""
    import json

    from syllabus.portfolio import run as portfolio_run
    from syllabus.portfolio.tasks import Item

    (tmp_path / "t.jsonl").write_text('{"prompt": "x", "reference": "y"}\n')
    (tmp_path / "p.toml").write_text(
        'name = "p"\n\n[[candidates]]\nname = "small"\nmodel = "smollm2"\n'
        'price = { usd_per_hour = 1.0 }\n\n[[candidates]]\nname = "large"\n'
        'model = "smollm2"\nprice = { usd_per_hour = 2.0 }\n\n[[tasks]]\nname = "t"\n'
        'data = "t.jsonl"\nquality_threshold = 0.5\np95_latency_s = 5.0\ndaily_volume = 100\n'
    )
    keys = [f"k{i}" for i in range(30)]
    records = {
        ("t", "small"): [row(k, i % 4 != 0, latency=0.5) for i, k in enumerate(keys)],
        ("t", "large"): [row(k, True, latency=2.0) for k in keys],
    }
    items = {"t": [Item(key=k, prompt="x") for k in keys]}
    monkeypatch.setattr(portfolio_run, "measure", lambda *args, **kwargs: (items, records))
    result = portfolio_run.run_portfolio(tmp_path / "p.toml", tmp_path / "out", show_progress=False)
    assert result.task("t").choice == "small"  # 0.75 [0.57, 0.87] clears 0.5, at half the price
    saved = json.loads((tmp_path / "out" / "recommendation.json").read_text())
    assert saved == json.loads(json.dumps(result.to_json()))
    assert saved["tasks"][0]["choice"] == "small" and saved["manifest"]["status"] == "finished"
    html = (tmp_path / "out" / "report.html").read_text()
    assert result.task("t").sentence.split(":")[0] in html and 'data-option="small"' in html
