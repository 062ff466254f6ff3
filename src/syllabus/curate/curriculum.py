"""Curriculum: the order records are written in (easy to hard, or a seeded shuffle)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from syllabus.curate.config import CurriculumConfig
from syllabus.errors import UserError


def order_table(table: pa.Table, config: CurriculumConfig) -> tuple[pa.Table, dict]:
    """Reorder rows (which carry a `seq` column: the input order) as `config` says.

    Returns the table and a note for stats.json (what the order is by; records without the
    key, which go last).
    """
    table = table.sort_by("seq")
    n = table.num_rows
    note: dict = {"order": config.order}
    if config.order == "input" or n == 0:
        return table, note
    if config.order == "shuffle":
        permutation = np.random.default_rng(config.seed).permutation(n)
        note["seed"] = config.seed
        return table.take(pa.array(permutation)), note
    if config.order == "length":
        keys = np.array([len(t) for t in table.column("text").to_pylist()], dtype=np.float64)
    else:
        name = "quality_score" if config.order == "score" else config.key
        if not name:
            raise UserError("curate.curriculum: order = meta needs key = the meta field to sort by")
        keys = np.full(n, np.nan)
        for i, meta in enumerate(table.column("meta").to_pylist()):
            value = json.loads(meta or "{}").get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                keys[i] = float(value)
        missing = int(np.isnan(keys).sum())
        if missing == n:
            hint = " (set curate.quality.model to score records)" if config.order == "score" else ""
            raise UserError(f"curate.curriculum: no record has a numeric meta {name!r}{hint}")
        note.update(key=name, missing_key=missing)
    signed = -keys if config.descending else keys
    signed = np.where(np.isnan(signed), np.inf, signed)
    permutation = np.lexsort((np.arange(n), signed))  # stable: ties keep input order
    note["descending"] = config.descending
    return table.take(pa.array(permutation)), note
