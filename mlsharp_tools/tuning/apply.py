"""Write a tuning winner into the real repository: configs, repository.json and tuning.json.

Why through :func:`mlsharp.triton.repository.write_configs`: the configs come from the typed options
(never edited text), every file is rendered and validated before the first write, and each write
is atomic; tuning.json goes last, so it never describes configs that are not on disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlsharp.triton.models import RepositoryOptions
from mlsharp.triton.repository import write_configs
from mlsharp_tools.tuning.space import TUNED_FIELDS, TuneError

#: the record of the last tuning, at the repository root beside repository.json
TUNING_FILE = "tuning.json"


def tuned_fields(opts: RepositoryOptions) -> dict[str, Any]:
    """The tuned fields of ``opts`` as JSON values (preferred sizes resolved)."""
    values = {name: getattr(opts, name) for name in TUNED_FIELDS}
    values["preferred_batch_sizes"] = list(opts.resolved_preferred_batch_sizes())
    return values


def with_fields(current: RepositoryOptions, fields: Mapping[str, Any]) -> RepositoryOptions:
    """``current`` with the tuned fields of a result; anything else in ``fields`` is refused."""
    unknown = sorted(set(fields) - set(TUNED_FIELDS))
    if unknown:
        raise TuneError(f"tuning result sets fields the tuner does not own: {unknown}")
    values = dict(fields)
    if values.get("preferred_batch_sizes") is not None:
        values["preferred_batch_sizes"] = tuple(values["preferred_batch_sizes"])
    return dataclasses.replace(current, **values)


def apply_winner(repository: Path, options: RepositoryOptions, document: Mapping[str, Any]) -> list[Path]:
    """Write every config.pbtxt, repository.json, then tuning.json; returns the paths written."""
    record = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    return write_configs(repository, options, {TUNING_FILE: record})
