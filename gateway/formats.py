"""Output formats as the gateway sees them: names, file extensions and media types.

The core package (`mlsharp.formats`) is the single source of truth; the gateway only needs the
names and how to label downloads, so a Triton-only deployment does not have to run encoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class FormatLabel:
    """How one output format is stored and served."""

    name: str
    extension: str  # with the leading dot
    media_type: str


@cache
def format_labels() -> dict[str, FormatLabel]:
    """All output formats, in the core package's order."""
    from mlsharp.formats import FORMAT_INFO, OUTPUT_FORMATS

    labels = {}
    for name in OUTPUT_FORMATS:
        info = FORMAT_INFO[name]
        extension = str(getattr(info, "extension", f".{name}"))
        if not extension.startswith("."):
            extension = "." + extension
        labels[name] = FormatLabel(
            name, extension, str(getattr(info, "media_type", "application/octet-stream"))
        )
    return labels


def known_formats() -> tuple[str, ...]:
    return tuple(format_labels())


def file_suffix(fmt: str) -> str:
    """The format's extension, with the format name in front when formats share it
    (``ply-clean`` -> ``.ply-clean.ply``) so one job's files never collide."""
    labels = format_labels()
    extension = labels[fmt].extension
    shared = sum(label.extension == extension for label in labels.values()) > 1
    return f".{fmt}{extension}" if shared and extension != f".{fmt}" else extension


def output_name(fmt: str, *, stem: str = "output", random_weights: bool = False) -> str:
    """File name of one result; random-weight results are stamped, as the CLI stamps them."""
    stamp = ".RANDOM-WEIGHTS" if random_weights else ""
    return f"{stem}{stamp}{file_suffix(fmt)}"
