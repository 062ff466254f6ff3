"""The route's cascade check and the portfolio's on the same answers, without a model: a scripted
backend answers as told, and the route must score and decide as `cascades.confidence_score` does
on the record the portfolio keeps for the same answers (fast; the replay with real models is
test_route_replay.py)."""

from __future__ import annotations

import math

from syllabus.backends import Backend, Completion, Usage
from syllabus.portfolio.cascades import agreements, confidence_score, escalates
from syllabus.portfolio.config import PortfolioConfig
from syllabus.portfolio.server import Router


class Scripted(Backend):
    """Answers each request with the next text of `texts` (the first call is the answer, the
    next ones the agreement samples)."""

    kind = "scripted"
    capabilities = frozenset({"chat", "complete", "logprobs", "seed"})

    def __init__(self, texts: list[str]):
        super().__init__()
        self.texts = list(texts)
        self.seen: list = []

    @property
    def model_id(self) -> str:
        return "scripted"

    def _generate(self, request) -> Completion:
        self.seen.append(request)
        return Completion(text=self.texts.pop(0), usage=Usage(prompt_tokens=3, completion_tokens=2))


def router(tmp_path, check: str, threshold: float, kind: str = "exact") -> Router:
    config = PortfolioConfig.model_validate(
        {
            "name": "p",
            "seed": 7,
            "candidates": [
                {"name": n, "model": "smollm2", "price": {"usd_per_hour": 1.0}}
                for n in ("small", "large")
            ],
            "tasks": [
                {
                    "name": "sums",
                    "kind": kind,
                    "data": "sums.jsonl",
                    "quality_threshold": 0.5,
                    "p95_latency_s": 1.0,
                    "daily_volume": 10,
                }
            ],
            "cascades": [
                {
                    "name": "c",
                    "first": "small",
                    "then": "large",
                    "check": check,
                    "samples": 3,
                    "threshold": threshold,
                }
            ],
            "route": {"serve": "c", "task": "sums", "log": "log.jsonl"},
        }
    )
    return Router(config, tmp_path, None)


def serve(route: Router, small: list[str], large: list[str]) -> tuple[dict, Scripted]:
    route.candidates["small"].backend = first = Scripted(small)
    route.candidates["large"].backend = Scripted(large)
    params = {"max_tokens": 8, "temperature": 0.0, "seed": 7, "stop": ["\n\nQuestion:"]}
    try:
        return route.answer({"prompt": "Question: 40 + 2?\nAnswer:"}, params)["record"], first
    finally:
        route.close()


def test_agreement_compares_the_tasks_answer_as_the_portfolio_does(tmp_path):
    route = router(tmp_path, "agreement", threshold=2 / 3)
    answer, samples = " 42", [" It is 42.", "42", " 41"]
    record, small = serve(route, [answer, *samples], ["42"])
    # The portfolio's record of the same answers, scored by the same functions.
    stop = ["\n\nQuestion:"]
    row = {"text": answer, "agrees": agreements(answer, samples, route.task, stop)}
    score = confidence_score(route.cascade, row)
    assert row["agrees"] == [True, True, False]  # the number, not the whole text, is compared
    assert score == 2 / 3
    assert record["attempts"][0]["score"] == score
    assert record["escalated"] == escalates(score, 2 / 3) is False
    assert record["served_by"] == "small" and record["completion"] == answer
    # The samples were drawn at the cascade's temperature with the portfolio's seeds.
    drawn = small.seen[1:]
    assert [r.params.seed for r in drawn] == [8, 9, 10]
    assert {r.params.temperature for r in drawn} == {route.cascade.temperature}


def test_an_empty_first_answer_escalates_without_samples(tmp_path):
    route = router(tmp_path, "agreement", threshold=0.0)
    record, small = serve(route, ["  \n"], ["42"])
    assert confidence_score(route.cascade, {"text": "  \n", "agrees": []}) == -math.inf
    assert len(small.seen) == 1  # no agreement samples for an empty answer
    assert record["attempts"][0]["score"] == "-inf" and record["attempts"][0]["empty"]
    assert record["escalated"] and record["served_by"] == "large"
    assert record["status"] == "ok"


def test_an_empty_answer_everywhere_is_logged_empty_not_ok(tmp_path):
    route = router(tmp_path, "logprob", threshold=-1.0)
    record, _ = serve(route, [""], [""])
    assert record["status"] == "empty" and record["escalated"]
    assert [a["empty"] for a in record["attempts"]] == [True, True]
