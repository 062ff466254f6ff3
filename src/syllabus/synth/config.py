"""What `syllabus synth` makes: the `[synth]` table of a recipe.

Every generator runs once per leaf of the topic tree (`per_topic` jobs each); every job draws its
own audience, style, persona and concept words from the lists below, seeded by the job, so the
same recipe always asks the same questions and a re-run is served from the response cache.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from syllabus.backends.config import BackendConfig
from syllabus.config import StrictModel, at_least, between

DEFAULT_AUDIENCES = ["complete beginner", "high-school student", "university student", "expert"]
DEFAULT_STYLES = ["textbook", "tutorial", "lecture notes", "questions and answers"]
DEFAULT_PERSONAS = [
    "a patient teacher",
    "a working software engineer",
    "a mathematician who likes precise definitions",
    "a friendly tutor who uses everyday analogies",
]


class TopicsConfig(StrictModel):
    """The topic tree: subject -> topics -> subtopics. Leaves are what jobs are about."""

    subject: str = "Python programming"
    tree: dict[str, list[str]] | list[str] = Field(default_factory=list)
    """Topics, each optionally with subtopics: `["lists", "loops"]` or `{lists = ["slicing"]}`."""
    expand_topics: Annotated[int, at_least(0)] = 0
    """Ask the teacher for this many topics of `subject` (added to `tree`)."""
    expand_subtopics: Annotated[int, at_least(0)] = 0
    """Ask the teacher for this many subtopics of every topic that has none."""

    @model_validator(mode="after")
    def _some_topics(self) -> TopicsConfig:
        if not self.tree and not self.expand_topics:
            raise ValueError(
                "give topics in `tree` or ask the teacher for some with `expand_topics`"
            )
        return self


class DiversityConfig(StrictModel):
    """Randomness injected into every prompt (TinyStories / Phi-1 style)."""

    audiences: list[str] = Field(default_factory=lambda: list(DEFAULT_AUDIENCES), min_length=1)
    styles: list[str] = Field(default_factory=lambda: list(DEFAULT_STYLES), min_length=1)
    personas: list[str] = Field(default_factory=lambda: list(DEFAULT_PERSONAS), min_length=1)
    concept_words: list[str] = Field(default_factory=list)
    """Words to weave in; each prompt gets `words_per_prompt` of them (none when empty)."""
    words_per_prompt: Annotated[int, at_least(0)] = 2


class GroundingConfig(StrictModel):
    """Seed passages retrieved per topic from a local corpus (Cosmopedia v2 style)."""

    corpus: str
    """A Syllabus dataset, a JSONL file (`text` field) or a directory of .txt/.md/.rst/.py files."""
    passages: Annotated[int, between(1, 10)] = 1
    max_chars: Annotated[int, at_least(100)] = 800


class GeneratorConfig(StrictModel):
    """What every generator's table has: jobs per topic leaf and, optionally, its own teacher."""

    per_topic: Annotated[int, at_least(1)] = 1
    teacher: BackendConfig | None = None
    """This generator's own teacher (a table like [teacher]); default: the recipe's. E.g.
    exercises from a base model in completion mode while a chat model writes the prose."""


class TextbookConfig(GeneratorConfig):
    """Topic -> outline -> sections, each section one record (`per_topic`: outlines per leaf)."""

    sections: Annotated[int, between(1, 12)] = 3
    """Sections asked for in each outline (at most this many are written)."""
    max_tokens: Annotated[int, at_least(16)] = 350


class ExerciseConfig(GeneratorConfig):
    """Phi-1 CodeExercises: signature + docstring (prompt), body (solution), unit tests."""

    mode: Literal["chat", "completion"] = "chat"
    """"chat": the teacher is asked for a function, then for asserts in a second call.
    "completion" (base models): HumanEval's shape. The teacher continues a file of worked
    functions (a few drawn per job from the `exercise_examples` template) with a new one: typed
    signature, docstring with >>> examples, body; the examples are its tests."""
    shots: Annotated[int, between(1, 8)] = 3
    """Completion mode: worked functions shown in each prompt."""
    attempts: Annotated[int, between(1, 20)] = 3
    """Best-of-n: fresh tries (new seeds) per job until one verifies."""
    repairs: Annotated[int, between(0, 5)] = 1
    """Chat mode: rounds of 'this failed with <error>, fix it' per attempt."""
    separate_tests: bool = True
    """Chat mode: ask for the tests in their own call (after the solution), not in the same
    answer."""
    keep_passing_asserts: bool = True
    """Keep the asserts that pass on the solution (at least `min_asserts`) instead of rejecting
    the exercise for one wrong expected value; they must still fail on an empty body. In
    completion mode the failing >>> examples are taken out of the docstring."""
    min_asserts: Annotated[int, between(1, 10)] = 2
    max_tokens: Annotated[int, at_least(16)] = 300
    time_limit_s: Annotated[float, between(0.5, 60)] = 5.0

    @model_validator(mode="after")
    def _chat_settings_in_chat_mode(self) -> ExerciseConfig:
        # Repairs and a separate tests call are chat requests; a base model cannot take them.
        chat_only = {"repairs", "separate_tests"} & self.model_fields_set
        if self.mode == "completion" and chat_only:
            raise ValueError(
                f"{', '.join(sorted(chat_only))}: chat-mode settings; in completion mode the "
                "docstring's >>> examples are the tests and there are no repair rounds"
            )
        return self


class ReasoningConfig(GeneratorConfig):
    """Word problems with worked solutions whose final answer a program confirms."""

    attempts: Annotated[int, between(1, 20)] = 2
    max_tokens: Annotated[int, at_least(16)] = 350
    tolerance: Annotated[float, between(0, 1)] = 1e-6
    """Relative difference allowed between the stated answer and the program's."""


class DialogueConfig(GeneratorConfig):
    """Student/teacher conversations about a topic."""

    min_turns: Annotated[int, between(2, 40)] = 4
    max_tokens: Annotated[int, at_least(16)] = 400


class DedupConfig(StrictModel):
    """Near-duplicate rejection inside the generated set (MinHash, shared with curation)."""

    enabled: bool = True
    threshold: Annotated[float, between(0.1, 1.0)] = 0.8
    num_perm: Annotated[int, between(16, 1024)] = 128
    shingle_size: Annotated[int, between(1, 20)] = 5


class SynthConfig(StrictModel):
    topics: TopicsConfig | None = None
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)
    grounding: GroundingConfig | None = None
    textbook: TextbookConfig | None = None
    exercise: ExerciseConfig | None = None
    reasoning: ReasoningConfig | None = None
    dialogue: DialogueConfig | None = None
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    templates: dict[str, str] = Field(default_factory=dict)
    """Jinja2 files overriding the shipped prompts, by name (see `syllabus synth --help`)."""
    constrained: Literal["auto", "on", "off"] = "auto"
    """Shape answers with grammars (a function with a docstring, `assert f(...) == ...` lines,
    Problem/Solution/Answer, Student/Teacher turns, numbered outlines). Only llama.cpp accepts
    GBNF grammars, so "auto" uses them with the embedded teacher and not over HTTP; "on" also
    sends them to an OpenAI-compatible server (llama-server accepts them)."""
    budget_tokens: Annotated[int, at_least(1)] | None = None
    """Stop once accepted records hold this many teacher tokens (repeats the plan as needed)."""
    max_cost_usd: Annotated[float, at_least(0)] | None = None
    """A ceiling on what the teacher is paid (at its price_in_per_mtok / price_out_per_mtok):
    a plan estimated above it is refused before the first call, and a run stops starting jobs
    once the answers it paid for (not those from the response cache, over every run into the
    same directory) reach it. Raise it and run again to continue (see synth/cost.py)."""
    concurrency: Annotated[int, between(1, 256)] | None = None
    """Jobs in flight at once (default: the teacher's concurrency, at least 2 so verification
    overlaps generation)."""

    @property
    def generators(self) -> list[str]:
        return [g for g in GENERATORS if getattr(self, g) is not None]

    @model_validator(mode="after")
    def _topics_when_generating(self) -> SynthConfig:
        if self.generators and self.topics is None:
            raise ValueError("[synth.topics] is required: what should the teacher write about?")
        return self


GENERATORS = ("textbook", "exercise", "reasoning", "dialogue")
