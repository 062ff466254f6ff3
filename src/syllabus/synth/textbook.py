"""Textbook sections: the teacher explains a topic to an audience, with a worked example."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import jinja2

from syllabus.backends import Backend, Completion, Request
from syllabus.synth.config import TextbookConfig
from syllabus.types import Provenance, Record

DEFAULT_TEMPLATE = """\
Write a short textbook section for a {{ audience }} reader about "{{ topic }}" in Python.
Start with a one-sentence definition, then explain why it matters, then give one small,
complete code example with a sentence explaining its output."""


def load_template(config: TextbookConfig) -> str:
    return Path(config.template).read_text() if config.template else DEFAULT_TEMPLATE


def plan(config: TextbookConfig, seed: int) -> list[dict]:
    """Every section to write, each with its own seed so results don't depend on run order."""
    jobs = []
    for topic, audience, repeat in itertools.product(
        config.topics, config.audiences, range(config.sections_per_topic)
    ):
        job_seed = random.Random(f"{seed}/{topic}/{audience}/{repeat}").randrange(2**31)
        jobs.append({"topic": topic, "audience": audience, "repeat": repeat, "seed": job_seed})
    return jobs


def requests(backend: Backend, config: TextbookConfig, jobs: list[dict]) -> list[Request]:
    template = jinja2.Template(load_template(config), undefined=jinja2.StrictUndefined)
    return [
        backend.request(
            messages=[{"role": "user", "content": template.render(**job)}], seed=job["seed"]
        )
        for job in jobs
    ]


def to_record(
    job: dict, completion: Completion, backend: Backend, config: TextbookConfig
) -> Record | None:
    """The teacher's answer as a record, or None when it is empty."""
    text = completion.text.strip()
    if not text:
        return None
    template = load_template(config)
    return Record(
        text=text,
        kind="textbook",
        source=f"synth/textbook/{job['topic']}",
        meta={
            "topic": job["topic"],
            "audience": job["audience"],
            "repeat": job["repeat"],
            "finish_reason": completion.finish_reason,
            "completion_tokens": completion.usage.completion_tokens,
        },
        provenance=Provenance(
            generator="synth.textbook",
            model=backend.model_id,
            template=config.template or "default",
            template_hash=hashlib.sha256(template.encode()).hexdigest()[:16],
            seed=job["seed"],
        ),
    )


def job_key(job: dict) -> str:
    return f"{job['topic']}|{job['audience']}|{job['repeat']}"


def pending(jobs: list[dict], done: set[str]) -> Iterator[dict]:
    return (job for job in jobs if job_key(job) not in done)
