"""Recipe loading: TOML validated with pydantic, errors that name the file, line and key.

Each stage owns its config model; `syllabus.recipe.Recipe` composes them. This module holds the
shared machinery: a strict base model, range checks with readable messages, and the loader.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from syllabus.errors import UserError


class StrictModel(BaseModel):
    """Config base: unknown keys are errors, not silently ignored options."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def between(lo: float, hi: float) -> AfterValidator:
    """Range check whose message reads 'must be between 0 and 2, got 7'."""

    def check(value: float) -> float:
        if not lo <= value <= hi:
            raise PydanticCustomError(
                "range",
                "must be between {lo} and {hi}, got {value}",
                {"lo": lo, "hi": hi, "value": value},
            )
        return value

    return AfterValidator(check)


def at_least(lo: float) -> AfterValidator:
    def check(value: float) -> float:
        if value < lo:
            raise PydanticCustomError(
                "range", "must be at least {lo}, got {value}", {"lo": lo, "value": value}
            )
        return value

    return AfterValidator(check)


PositiveInt = Annotated[int, at_least(1)]

# Tags of the discriminated unions used in recipes (backend kinds).
UNION_TAGS = {"embedded", "openai", "hf"}


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling, or remove it)"
    if kind == "missing":
        return "required key is missing"
    if kind == "range":
        return error["msg"]
    if kind == "union_tag_invalid":
        return f"must be one of {error['ctx']['expected_tags']}, got {error['ctx']['tag']!r}"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    message = error["msg"][0].lower() + error["msg"][1:]
    message = message.removeprefix("value error, ")
    return f"{message}, got {shown}"


def _key_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of `loc` in TOML source: the key under its table header."""
    keys = [str(part) for part in loc if not isinstance(part, int)]
    if not keys:
        return None
    table, key = keys[:-1], keys[-1]
    current: list[str] = []
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assignment = re.compile(r"^\s*(?:\"?([\w.-]+)\"?)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if match := header.match(line):
            current = [part.strip().strip('"') for part in match.group(1).split(".")]
            continue
        if match := assignment.match(line):
            dotted = current + match.group(1).split(".")
            if dotted[: len(table) + 1] == table + [key]:
                return number
    return None


def format_validation_error(path: Path | str, text: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(
            part
            for part in error["loc"]
            if not (isinstance(part, str) and part.startswith("function-"))
        )
        # Discriminated unions put their tag in the location; users never wrote it as a key.
        loc = tuple(
            part for i, part in enumerate(loc) if part not in UNION_TAGS or i == len(loc) - 1
        )
        if error["type"] == "union_tag_invalid":
            loc = (*loc, error["ctx"]["discriminator"].strip("'"))
        key = ".".join(str(part) for part in loc) or "(top level)"
        line = _key_line(text, loc)
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"{where}: {key}: {_describe(error)}")
    return "\n".join(lines)


def load_toml(path: Path | str) -> tuple[dict[str, Any], str]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such recipe file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not valid UTF-8 (byte {raw[exc.start]:#04x}); save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None


def merge_tables(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied, table by table (a preset's way of changing a recipe)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_preset(data: dict, preset: str | None, path: Path | str) -> dict:
    """The recipe `data` with its `[presets.PRESET]` overrides applied (as it is, for None)."""
    if preset is None:
        return data
    presets = data.get("presets") or {}
    if preset not in presets:
        known = ", ".join(presets) or "none"
        raise UserError(f"{path}: no preset {preset!r} (presets in this recipe: {known})")
    return merge_tables(data, presets[preset])
