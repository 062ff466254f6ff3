"""Prompt templates (shipped Jinja2 defaults, overridable per recipe) and the per-job random
choices that keep a small teacher from writing the same text over and over."""

from __future__ import annotations

import ast
import hashlib
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from syllabus.errors import UserError
from syllabus.synth.config import DiversityConfig

TEMPLATE_NAMES = (
    "topics",
    "outline",
    "section",
    "exercise",
    "exercise_tests",
    "exercise_repair",
    "exercise_completion",
    "exercise_examples",
    "reasoning",
    "reasoning_program",
    "dialogue",
)


RAW_FILES = {"exercise_examples": "exercise_examples.py"}
"""Templates that are files to read, not Jinja2 to render (the worked functions a base model
is shown: Python source, checked by its own doctests)."""


def default_template(name: str) -> str:
    file = RAW_FILES.get(name, f"{name}.j2")
    return resources.files("syllabus.synth").joinpath(f"templates/{file}").read_text()


class Templates:
    """The templates a run uses; `hashes` go into every record's provenance."""

    def __init__(self, overrides: dict[str, str] | None = None, base_dir: Path | None = None):
        self.sources: dict[str, str] = {}
        self.origins: dict[str, str] = {}
        unknown = set(overrides or {}) - set(TEMPLATE_NAMES)
        if unknown:
            raise UserError(
                f"synth.templates: unknown template {sorted(unknown)}; the names are "
                + ", ".join(TEMPLATE_NAMES)
            )
        for name in TEMPLATE_NAMES:
            path = (overrides or {}).get(name)
            if path is None:
                self.sources[name], self.origins[name] = default_template(name), "default"
                continue
            resolved = (
                Path(path) if Path(path).is_absolute() or base_dir is None else base_dir / path
            )
            try:
                self.sources[name] = resolved.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UserError(f"synth.templates.{name}: cannot read {resolved} ({exc})") from None
            self.origins[name] = str(path)
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self._compiled = {}
        for name, source in self.sources.items():
            if name in RAW_FILES:
                continue
            try:
                self._compiled[name] = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise UserError(
                    f"synth.templates.{name} ({self.origins[name]}):{exc.lineno}: {exc.message}"
                ) from None
        self.hashes = {
            name: hashlib.sha256(source.encode()).hexdigest()[:16]
            for name, source in self.sources.items()
        }

    def examples(self) -> list[str]:
        """The worked functions of `exercise_examples`: each top-level function with the comment
        lines just above it (its `# Topic:`)."""
        source = self.sources["exercise_examples"]
        origin = self.origins["exercise_examples"]
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise UserError(
                f"synth.templates.exercise_examples ({origin}):{exc.lineno}: not Python ({exc.msg})"
            ) from None
        lines = source.splitlines()
        examples = []
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            start = node.lineno - 1
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1
            examples.append("\n".join(lines[start : node.end_lineno]))
        if not examples:
            raise UserError(
                f"synth.templates.exercise_examples ({origin}): no functions; give worked "
                "functions (typed signature, docstring with >>> examples, body)"
            )
        return examples

    def render(self, template: str, **variables) -> str:
        try:
            return self._compiled[template].render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise UserError(
                f"synth.templates.{template} ({self.origins[template]}): {exc.message}; "
                f"available variables: {', '.join(sorted(variables))}"
            ) from None


@dataclass(frozen=True)
class Voice:
    """Who writes, for whom, how, and which words to weave in: drawn per job."""

    audience: str
    style: str
    persona: str
    words: tuple[str, ...]


def job_seed(*parts: object) -> int:
    """A seed that depends only on the job's identity, never on run order."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31)


def choose_voice(config: DiversityConfig, seed: int) -> Voice:
    rng = random.Random(seed)
    words: tuple[str, ...] = ()
    if config.concept_words and config.words_per_prompt:
        count = min(config.words_per_prompt, len(config.concept_words))
        words = tuple(rng.sample(config.concept_words, count))
    return Voice(
        audience=rng.choice(config.audiences),
        style=rng.choice(config.styles),
        persona=rng.choice(config.personas),
        words=words,
    )
