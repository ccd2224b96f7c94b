"""A repository's generated files: every ``config.pbtxt`` plus ``repository.json`` (its typed options).

Why persist the options: tools that change a served repository after export (``mlsharp tune``)
must rebuild configs from the same typed :class:`RepositoryOptions` the exporter used, never by
editing or parsing pbtxt text. ``repository.json`` sits at the repository root, where Triton only
looks for model directories and ignores plain files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlsharp.errors import MLSharpError
from mlsharp.fileio import atomic_write
from mlsharp.triton.models import RepositoryOptions, all_configs

#: the typed options of a generated repository, at its root
OPTIONS_FILE = "repository.json"
#: bumped when a field changes meaning (new fields with defaults need no bump)
OPTIONS_SCHEMA = 1


class RepositoryOptionsError(MLSharpError):
    """``repository.json`` is missing or cannot be turned back into options."""

    code = "repository_options"


def options_to_json(opts: RepositoryOptions) -> dict[str, Any]:
    """Plain JSON values (tuples become lists)."""
    values = dataclasses.asdict(opts)
    if values["preferred_batch_sizes"] is not None:
        values["preferred_batch_sizes"] = list(values["preferred_batch_sizes"])
    return values


def options_from_json(values: Mapping[str, Any]) -> RepositoryOptions:
    """Options from JSON; unknown fields are refused (a newer exporter wrote them)."""
    known = {f.name for f in dataclasses.fields(RepositoryOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RepositoryOptionsError(f"unknown repository options {unknown}: written by a newer mlsharp?")
    try:
        return RepositoryOptions(**values)
    except TypeError as error:
        raise RepositoryOptionsError(f"incomplete repository options: {error}") from error


def load_options(repository: Path) -> RepositoryOptions:
    """The options a repository was generated from, with a message that says what to do if absent."""
    path = repository / OPTIONS_FILE
    if not path.is_file():
        hint = "" if (repository / "mlsharp" / "config.pbtxt").is_file() else " (and no mlsharp ensemble)"
        raise RepositoryOptionsError(
            f"{repository} has no {OPTIONS_FILE}{hint}: it was exported by an older mlsharp or is not an "
            "mlsharp repository. Re-export it (python -m export ... --out DIR) so that its typed options "
            "are recorded; configs are never parsed back from config.pbtxt."
        )
    try:
        document = json.loads(path.read_text())
        if document.get("schema") != OPTIONS_SCHEMA:
            raise RepositoryOptionsError(
                f"{path}: schema {document.get('schema')!r}, this mlsharp reads {OPTIONS_SCHEMA}"
            )
        return options_from_json(document["options"])
    except (json.JSONDecodeError, KeyError, AttributeError) as error:
        raise RepositoryOptionsError(f"{path} is not a valid {OPTIONS_FILE}: {error}") from error


def render(opts: RepositoryOptions) -> dict[str, bytes]:
    """Every generated file's bytes by path relative to the repository (validated, nothing written)."""
    files = {f"{name}/config.pbtxt": cfg.to_pbtxt().encode() for name, cfg in all_configs(opts).items()}
    document = {"schema": OPTIONS_SCHEMA, "options": options_to_json(opts)}
    files[OPTIONS_FILE] = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    return files


def write_configs(
    dest: Path, opts: RepositoryOptions, extra_files: Mapping[str, bytes] | None = None
) -> list[Path]:
    """Write every config.pbtxt and repository.json for ``opts``, then ``extra_files`` (relative
    path -> bytes, e.g. the tuner's record); returns the paths written.

    All files are rendered and validated before the first write, and each write is atomic, so a
    bad option never leaves a mix of old and new configs behind.
    """
    files = render(opts) | dict(extra_files or {})
    written = []
    for relative, data in files.items():
        path = dest / relative
        atomic_write(path, data)
        written.append(path)
    return written
