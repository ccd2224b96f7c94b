"""Typed errors shared by the CLI, the Triton models and the gateway.

Every error a user can cause derives from :class:`MLSharpError` and carries a message a person
understands; transports map the class to a status code in one table (gateway) or to a
per-request Triton error, so one bad input never fails its neighbours.
"""

from __future__ import annotations


class MLSharpError(Exception):
    """Base class of all errors MLSharp raises on purpose."""

    #: short machine-readable code, used in API error bodies
    code: str = "mlsharp_error"


class InvalidImageError(MLSharpError):
    """The bytes are not a decodable image (empty, truncated, corrupt, unsupported)."""

    code = "invalid_image"


class ImageTooLargeError(MLSharpError):
    """The image exceeds the configured byte or pixel limit (includes decompression bombs)."""

    code = "image_too_large"


class InvalidParameterError(MLSharpError):
    """A request parameter (focal length, format, size...) is out of range or unknown."""

    code = "invalid_parameter"


class CheckpointError(MLSharpError):
    """The checkpoint cannot be downloaded, read, or does not match the network."""

    code = "checkpoint_error"


#: code -> class, for transports that carry the code (Triton errors, job rows); explicit, so a
#: new error class is a conscious addition to the wire contract
ERROR_CLASSES: dict[str, type[MLSharpError]] = {
    cls.code: cls
    for cls in (MLSharpError, InvalidImageError, ImageTooLargeError, InvalidParameterError, CheckpointError)
}


def error_from_code(code: str, message: str) -> MLSharpError | None:
    """The typed error a code names, or None for codes that are not ours (e.g. internal_error)."""
    cls = ERROR_CLASSES.get(code)
    return cls(message) if cls is not None else None
