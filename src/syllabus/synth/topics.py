"""The topic tree: subject -> topics -> subtopics, given in the recipe or grown by the teacher.
Its leaves are what jobs are about; coverage is counted against them."""

from __future__ import annotations

from dataclasses import dataclass

from syllabus.backends import Backend
from syllabus.errors import BackendError, UserError
from syllabus.synth.config import TopicsConfig
from syllabus.synth.parsing import numbered_list
from syllabus.synth.prompts import Templates, job_seed


@dataclass(frozen=True)
class Topic:
    subject: str
    path: tuple[str, ...]
    """('data structures', 'lists'): the topic and, when there is one, its subtopic."""

    @property
    def name(self) -> str:
        return " > ".join(self.path)

    @property
    def leaf(self) -> str:
        return self.path[-1]

    @property
    def query(self) -> str:
        return " ".join((self.subject, *self.path))


def topics_max_tokens(count: int) -> int:
    """The answer cap of a request for `count` topics or subtopics."""
    return max(64, 16 * count)


def build_tree(
    config: TopicsConfig, backend: Backend, templates: Templates, seed: int
) -> tuple[list[Topic], dict]:
    """Leaves of the tree, plus a record of what the teacher added (for stats/manifest)."""
    tree: dict[str, list[str]] = (
        {topic: [] for topic in config.tree}
        if isinstance(config.tree, list)
        else {topic: list(subs) for topic, subs in config.tree.items()}
    )
    expanded: dict = {"topics": [], "subtopics": {}}
    if config.expand_topics:
        new = _ask(backend, templates, config.subject, None, config.expand_topics, seed)
        for topic in new:
            if topic.lower() not in {t.lower() for t in tree}:
                tree[topic] = []
                expanded["topics"].append(topic)
    if config.expand_subtopics:
        for topic, subtopics in tree.items():
            if not subtopics:
                subtopics += _ask(
                    backend, templates, config.subject, topic, config.expand_subtopics, seed
                )
                expanded["subtopics"][topic] = list(subtopics)
    leaves = [
        Topic(config.subject, (topic, sub) if sub else (topic,))
        for topic, subtopics in tree.items()
        for sub in (subtopics or [None])
    ]
    if not leaves:
        raise UserError("synth.topics: the teacher gave no usable topics; list some in `tree`")
    return leaves, expanded


def _ask(
    backend: Backend, templates: Templates, subject: str, parent: str | None, count: int, seed: int
) -> list[str]:
    prompt = templates.render("topics", subject=subject, parent=parent, count=count)
    try:
        answer = backend.chat(
            [{"role": "user", "content": prompt}],
            seed=job_seed(seed, "topics", subject, parent),
            max_tokens=topics_max_tokens(count),
        )
    except BackendError as exc:
        raise UserError(f"synth.topics: could not expand the topic tree: {exc}") from None
    return numbered_list(answer.text, count)
