"""The page in a real browser (Debian's chromium, headless, over the DevTools protocol)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from syllabus.curate.labels import latest_per_record
from syllabus.store import read_rows
from tests.browse.cdp import CHROMIUM, Browser
from tests.browse.conftest import BENCHMARK_SPAN, HOSTILE, env_for_worktree

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    running = Browser()
    yield running
    running.close()


def rows(browser: Browser) -> list[dict]:
    return browser.evaluate(
        "[...document.querySelectorAll('#list tbody tr[data-position]')].map(tr => ({"
        "position: Number(tr.dataset.position), kind: tr.children[1].textContent,"
        "score: tr.children[3].textContent, label: tr.children[4].textContent,"
        "text: tr.children[5].textContent}))"
    )


def detail_position(browser: Browser) -> int | None:
    heading = browser.evaluate("document.querySelector('#detail h2')?.textContent || ''")
    return int(heading.split("·")[0].strip("# ")) if heading else None


def test_read_filter_page_label_and_reload(server, curate_out, browser):
    browser.events.clear()
    browser.open(server.url)
    first = rows(browser)
    assert len(first) == 50 and [r["position"] for r in first] == list(range(50))
    browser.wait_for("document.querySelector('#status').textContent.includes('of 120 records')")

    # Filter: kind textbook and a full-text search typed after "/".
    browser.evaluate("document.querySelector('#f-kind').value = 'textbook'")
    browser.press("/")
    browser.type_text("step by STEP")
    browser.press("Enter")
    # Exercises and the hostile record say nothing of steps.
    expected = sum(1 for index in range(120) if index % 5 != 0 and index != 3)
    browser.wait_for(
        f"document.querySelector('#status').textContent.startsWith('{expected} of 120')"
    )
    matched = rows(browser)
    assert len(matched) == 50 and all(r["kind"] == "textbook" for r in matched)
    assert all("step by step" in r["text"].lower() for r in matched)

    # Page forward with "]" and back with "[".
    browser.press("]")
    browser.wait_for(
        f"document.querySelector('#list tbody tr')?.dataset.position > {matched[-1]['position']}"
    )
    second = rows(browser)
    assert len(second) == expected - 50 and second[0]["position"] > matched[-1]["position"]
    assert not {r["position"] for r in second} & {r["position"] for r in matched}
    browser.press("[")
    browser.wait_for(
        f"document.querySelector('#list tbody tr')?.dataset.position == {matched[0]['position']}"
    )

    # Open with j, label with a digit, write a note with n ... Enter.
    browser.press("j")
    browser.wait_for(
        f"document.querySelector('#detail h2')?.textContent.startsWith('#{matched[0]['position']} ')"
    )
    browser.press("j")
    target = matched[1]["position"]
    browser.wait_for(f"document.querySelector('#detail h2')?.textContent.startsWith('#{target} ')")
    browser.press("4")
    browser.wait_for("document.querySelector('#your-label').textContent === 'your label 4'")
    browser.press("n")
    browser.type_text("clear, but no exercise")
    browser.press("Enter")
    labels_path = curate_out.with_name("curated.labels.jsonl")
    browser.wait_for("document.activeElement.id !== 'note'")
    browser.wait_for("document.querySelector('#note-state').textContent === 'note saved'")
    browser.wait_for(
        f"document.querySelector('tr[data-position=\"{target}\"] td.label').textContent === '4'"
    )
    written = read_rows(labels_path)
    assert written[-1]["score"] == 4 and written[-1]["note"] == "clear, but no exercise"
    assert written[-1]["classifier"] == pytest.approx(target * 7 % 50 / 10)
    assert written[-1]["text"].startswith(f"Section {target} ")

    # A reload keeps the filters, the opened record and its label and note.
    browser.reload()
    browser.wait_for(f"document.querySelector('#detail h2')?.textContent.startsWith('#{target} ')")
    assert browser.evaluate("document.querySelector('#your-label').textContent") == "your label 4"
    assert browser.evaluate("document.querySelector('#note').value") == "clear, but no exercise"
    assert browser.evaluate("document.querySelector('#f-q').value") == "step by STEP"
    assert browser.evaluate("document.querySelector('.labelbar button.on').textContent") == "4"

    # Relabel: the last label wins, in the page and for fit.
    browser.press("2")
    browser.wait_for("document.querySelector('#your-label').textContent === 'your label 2'")
    assert [r["score"] for r in latest_per_record(read_rows(labels_path))] == [2]
    assert browser.errors() == []


def test_label_with_the_keyboard_then_fit_on_the_labels(server, curate_out, browser, tmp_path):
    browser.events.clear()
    browser.open(server.url)
    # Label 24 records with j then a digit: long ones high, short ones low.
    for _ in range(24):
        before = detail_position(browser)
        browser.press("j")
        browser.wait_for(
            f"(document.querySelector('#detail h2')?.textContent || '') && "
            f"!document.querySelector('#detail h2').textContent.startsWith('#{before} ')"
        )
        position = detail_position(browser)
        text = browser.evaluate("document.querySelector('#record-text').textContent")
        score = 4 if text.count("step by step") >= 2 else 1
        browser.press(str(score))
        browser.wait_for(
            f"document.querySelector('#your-label').textContent === 'your label {score}'"
        )
        assert position is not None
    browser.evaluate("document.querySelector('#tabs button[data-tab=labels]').click()")
    browser.wait_for(
        "document.querySelector('#tab-labels h2')?.textContent === '24 records labelled'"
    )
    classifier_pairs = browser.evaluate(
        "document.querySelector('#tab-labels table.grid tr:nth-child(2) td:nth-child(2)').textContent"
    )
    assert classifier_pairs == "24"
    assert browser.errors() == []

    labels = curate_out.with_name("curated.labels.jsonl")
    model = tmp_path / "edu"
    done = subprocess.run(
        [sys.executable, "-m", "syllabus.cli", "fit", str(labels), "-o", str(model)],
        env=env_for_worktree(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["labels"] == "graded" and metrics["n_train"] + metrics["n_test"] == 24
    assert metrics["source"] == str(labels)


def test_funnel_scores_duplicates_contamination_and_hostile_text(server, browser):
    browser.events.clear()
    browser.open(server.url)

    # The hostile record renders as text: no script ran, no element was made from it.
    browser.evaluate("document.querySelector('input[name=id]').value = ''")
    browser.evaluate("document.querySelector('#f-q').value = 'Escaping lesson'")
    browser.evaluate("document.querySelector('#filters').requestSubmit()")
    browser.wait_for("document.querySelectorAll('#list tbody tr[data-position]').length === 1")
    browser.press("j")
    browser.wait_for("!!document.querySelector('#record-text')")
    assert HOSTILE in browser.evaluate("document.querySelector('#record-text').textContent")
    assert (
        browser.evaluate(
            "document.querySelectorAll('#detail script, #detail img, #list img').length"
        )
        == 0
    )
    assert browser.evaluate("window.__pwned === undefined")

    # The funnel: each drop reason opens the rejected records it dropped.
    browser.evaluate("document.querySelector('#tabs button[data-tab=funnel]').click()")
    browser.wait_for("!!document.querySelector('#tab-funnel button[data-reason]')")
    steps = browser.evaluate(
        "[...document.querySelectorAll('#tab-funnel td.name:first-child')].map(td => td.textContent)"
    )
    assert steps == ["read", "filters", "dedup", "decontam"]
    browser.evaluate(
        "document.querySelector('#tab-funnel button[data-reason=\"near duplicate\"]').click()"
    )
    browser.wait_for("document.querySelector('#status').textContent.startsWith('3 of 10')")
    assert browser.evaluate(
        "document.querySelector('#collection').selectedOptions[0].textContent"
    ).startswith("rejected")

    # A near-duplicate shows its kept member, one click away.
    browser.press("j")
    browser.wait_for(
        "[...document.querySelectorAll('#detail button')].some(b => b.textContent === 'open kept member')"
    )
    kept_id = browser.evaluate("document.querySelector('#detail code').textContent")
    browser.evaluate(
        "[...document.querySelectorAll('#detail button')].find(b => b.textContent === 'open kept member').click()"
    )
    browser.wait_for(f"document.querySelector('#detail .dim')?.textContent.startsWith('{kept_id}')")
    assert browser.evaluate(
        "document.querySelector('#collection').selectedOptions[0].textContent"
    ).startswith(". ")

    # A decontamination hit: the benchmark span is highlighted.
    browser.evaluate("document.querySelector('#tabs button[data-tab=funnel]').click()")
    browser.evaluate("document.querySelector('#tab-funnel button[data-reason=humaneval]').click()")
    browser.wait_for("document.querySelector('#status').textContent.startsWith('1 of 10')")
    browser.press("j")
    browser.wait_for("!!document.querySelector('#record-text mark')")
    assert (
        browser.evaluate("document.querySelector('#record-text mark').textContent")
        == BENCHMARK_SPAN
    )

    # The score histogram: six buckets; a bucket lists exactly its records.
    browser.evaluate("document.querySelector('#collection').value = '0'")
    browser.evaluate("document.querySelector('#collection').dispatchEvent(new Event('change'))")
    browser.evaluate("document.querySelector('#tabs button[data-tab=scores]').click()")
    browser.wait_for("document.querySelectorAll('#tab-scores .bar').length === 6")
    counts = browser.evaluate(
        "[...document.querySelectorAll('#tab-scores .bars > span')].map(s => Number(s.textContent))"
    )
    buckets = [index * 7 % 50 // 10 for index in range(120)]  # the fixture's scores
    assert counts == [buckets.count(bucket) for bucket in range(6)]
    browser.evaluate("document.querySelector('#tab-scores button[data-bucket=\"3\"]').click()")
    browser.wait_for(
        f"document.querySelector('#status').textContent.startsWith('{buckets.count(3)} of 120')"
    )
    assert all(3 <= float(r["score"]) < 4 for r in rows(browser))
    assert browser.errors() == []
