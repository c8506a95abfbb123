"""The one error hierarchy of narrator, and its form on the wire.

Only `TransientError` is retried. Everything else is permanent: retrying it would make the
same mistake again, so it fails its chunk at once with a message that says how to fix it.

A failure crosses a process boundary (worker -> RunPod -> client, or the local endpoint) as
data, never as a message to search: `to_wire` turns any exception raised on the worker into
`{"kind": "transient" | "permanent" | "input", "code": ..., "message": ...}` and
`from_wire` turns that back into the matching exception. Every backend goes through this
pair, so one failure is retried on every backend or on none.
"""

import errno
import json
import re
from typing import Any, Literal

from gpu_worker.redaction import redact

Kind = Literal["transient", "permanent", "input"]


class NarratorError(Exception):
    """Base class of every error narrator raises on purpose. `code` names the failure for
    programs (e.g. "out_of_memory"); the message is for people."""

    kind: Kind = "permanent"
    default_code = "error"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(redact(message))  # what an error says may go anywhere
        self.code = code or self.default_code


class TransientError(NarratorError):
    """Worth retrying: 5xx, 429, timeouts, connection resets, a worker out of memory."""

    kind: Kind = "transient"
    default_code = "transient"


class PermanentError(NarratorError):
    """Not worth retrying: refused credentials, bad input, undecodable output."""

    default_code = "permanent"


class InputError(PermanentError):
    """The user's input (a file, a request field, an option) is unusable as given."""

    kind: Kind = "input"
    default_code = "invalid_input"


class StorageFull(PermanentError):
    """A disk or quota with no room left for what had to be written there."""

    default_code = "disk_full"


def storage_full(error: BaseException, where: object) -> StorageFull | None:
    """`error` as "disk full at <where>" when it is a full disk or quota (ENOSPC, EDQUOT);
    None for any other error."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"disk full at {where}: free some space there, then rerun")
    return None


class ValidationFailed(PermanentError):
    """Audio was made but no candidate reached the quality threshold and policy says fail."""

    default_code = "below_threshold"


# How the GPU stack reports a CUDA context it has lost: torch (a RuntimeError, AcceleratorError
# from 2.8), cuBLAS and cuDNN through torch, CTranslate2 (faster-whisper) and device-side
# asserts. Once one is raised, every later job on that worker fails the same way.
_CUDA_FAILURE = re.compile(
    r"CUDA error|CUDA failed|CUDA driver|CUBLAS_STATUS|CUDNN_STATUS|cuDNN error|"
    r"device-side assert|illegal memory access|unspecified launch failure"
)

_BY_KIND: dict[str, type[NarratorError]] = {
    "transient": TransientError,
    "permanent": PermanentError,
    "input": InputError,
}


def classify(error: BaseException) -> NarratorError:
    """`error` as a NarratorError: ours as they are; the few foreign failures a worker meets
    by their type (torch's CUDA out-of-memory and CUDA errors are worth a retry, on another
    worker for a CUDA error); anything else is a bug, permanent."""
    if isinstance(error, NarratorError):
        return error
    name = type(error).__name__
    if isinstance(error, MemoryError) or name == "OutOfMemoryError":  # torch.cuda's
        return TransientError(f"worker out of memory: {error}", code="out_of_memory")
    if isinstance(error, RuntimeError) and _CUDA_FAILURE.search(str(error)):
        if "out of memory" in str(error):  # CTranslate2's: the context survives it
            return TransientError(f"worker out of memory: {error}", code="out_of_memory")
        # The context is lost for good: retried on another worker, and this one replaced.
        return TransientError(f"worker CUDA error: {error}", code="cuda_error")
    if isinstance(error, TimeoutError):
        return TransientError(f"worker timed out: {error}", code="timeout")
    if storage_full(error, "") is not None:  # this worker's disk: another may have room
        where = getattr(error, "filename", None) or "the worker"
        return TransientError(f"disk full at {where} (on the worker): {error}", code="disk_full")
    return PermanentError(f"worker failed: {name}: {error}", code="internal_error")


def to_wire(error: BaseException) -> dict[str, str]:
    """The wire form of any exception raised while serving a request (URLs' credentials
    cut out of its message: it is logged and stored wherever it goes)."""
    known = classify(error)
    return {"kind": known.kind, "code": known.code, "message": redact(str(known))}


def from_wire(payload: Any, context: str = "") -> NarratorError:
    """The exception a wire error stands for; `context` (e.g. "job 42") prefixes its
    message. Also reads what workers sent before errors were data: a JSON string of the
    wire form, RunPod's own report of a handler that raised (`error_type`,
    `error_message`), and a plain "ClassName: message" string."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return _legacy(payload, context)
    prefix = f"{context}: " if context else ""
    if isinstance(payload, dict) and payload.get("kind") in _BY_KIND:
        cls = _BY_KIND[str(payload["kind"])]
        code = str(payload.get("code") or cls.default_code)
        return cls(prefix + str(payload.get("message", "")), code=code)
    if isinstance(payload, dict) and "error_message" in payload:  # runpod SDK: handler raised
        kind = str(payload.get("error_type", "")).strip("<>'").removeprefix("class '")
        return PermanentError(
            f"{prefix}worker failed: {kind}: {payload['error_message']}", code="internal_error"
        )
    return _legacy(str(payload), context)


def _legacy(message: str, context: str) -> NarratorError:
    """A worker's error from before the wire form: "ClassName: message". The class name is
    the only part read: TransientError is retried, anything else is not."""
    prefix = f"{context}: " if context else ""
    name = message.split(":", 1)[0].strip()
    if name == TransientError.__name__:
        return TransientError(prefix + message)
    if name == InputError.__name__:
        return InputError(prefix + message)
    return PermanentError(prefix + message)


def wire_string(error: BaseException) -> str:
    """The wire form as one JSON string: what a RunPod job's `error` field carries (RunPod
    itself reports a raised handler as a JSON string there too)."""
    return json.dumps(to_wire(error))
