"""PORTFOLIO.toml: the shipped example loads; mistakes name file:line and say what to do."""

from __future__ import annotations

import pytest

from syllabus.errors import UserError
from syllabus.portfolio.config import load_portfolio
from tests.conftest import REPO, run_cli

BASE = """\
name = "t"

[[candidates]]
name = "small"
model = "smollm2"
price = { usd_per_hour = 0.05 }

[[tasks]]
name = "capitals"
data = "capitals.jsonl"
quality_threshold = 0.6
p95_latency_s = 1.0
daily_volume = 100
"""


def write(tmp_path, text: str):
    (tmp_path / "capitals.jsonl").write_text(
        '{"prompt": "Q: France?\\nA:", "reference": "Paris"}\n'
    )
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def error_of(path) -> str:
    with pytest.raises(UserError) as info:
        load_portfolio(path)
    return str(info.value)


def test_example_portfolio_loads_with_every_kind_of_candidate():
    config, base = load_portfolio(REPO / "recipes" / "portfolio-example.toml")
    kinds = {c.name: c for c in config.candidates}
    assert kinds["smollm2-rag"].retrieval is not None
    assert kinds["smollm2-chat"].system_prompt
    assert kinds["frontier"].skip_without_key and kinds["frontier"].assume is not None
    assert {c.check for c in config.cascades} == {"logprob", "agreement", "tests"}
    assert config.route.serve in {c.name for c in config.cascades}


def test_unknown_key_names_file_and_line(tmp_path):
    path = write(tmp_path, BASE.replace('model = "smollm2"', 'model = "smollm2"\ntemprature = 1'))
    message = error_of(path)
    assert f"{path}:6: candidates.0.temprature: unknown key" in message


def test_price_must_be_api_or_hourly(tmp_path):
    both = BASE.replace(
        "price = { usd_per_hour = 0.05 }",
        "price = { usd_per_hour = 0.05, usd_per_mtok_in = 1.0, usd_per_mtok_out = 2.0 }",
    )
    assert "give either usd_per_mtok_in" in error_of(write(tmp_path, both))
    half = BASE.replace("price = { usd_per_hour = 0.05 }", "price = { usd_per_mtok_in = 1.0 }")
    assert "needs both usd_per_mtok_in and usd_per_mtok_out" in error_of(write(tmp_path, half))


def test_cascade_and_route_must_name_candidates(tmp_path):
    cascade = (
        BASE + '\n[[cascades]]\nname = "c"\nfirst = "small"\nthen = "large"\ncheck = "logprob"\n'
    )
    assert "no candidate named 'large'" in error_of(write(tmp_path, cascade))
    routed = BASE + '\n[route]\nserve = "nothing"\n'
    assert "route.serve: no candidate or cascade named 'nothing'" in error_of(
        write(tmp_path, routed)
    )


def test_missing_task_file_and_unmeasurable_candidate(tmp_path):
    path = write(tmp_path, BASE.replace("capitals.jsonl", "missing.jsonl"))
    assert "data file missing.jsonl does not exist" in error_of(path)
    keyless = BASE + (
        '\n[[candidates]]\nname = "api"\nmodel = "https://example.invalid/v1"\n'
        'api_key_env = "NO_SUCH_KEY_VAR"\nskip_without_key = true\n'
        "price = { usd_per_mtok_in = 1.0, usd_per_mtok_out = 2.0 }\n"
    )
    assert "skip_without_key needs an `assume` table" in error_of(write(tmp_path, keyless))


def test_cli_bad_portfolio_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, BASE.replace("quality_threshold = 0.6", "quality_threshold = 6"))
    result = run_cli("portfolio", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "tasks.0.quality_threshold: must be between 0 and 1, got 6" in result.stderr
    assert "Traceback" not in result.stderr
