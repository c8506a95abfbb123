"""Errors as data: the wire form round-trips, and what older workers sent is read sensibly."""

import json
import pickle

import pytest

from gpu_worker.errors import (
    InputError,
    PermanentError,
    TransientError,
    ValidationFailed,
    from_wire,
    to_wire,
    wire_string,
)


@pytest.mark.parametrize(
    "error",
    [
        TransientError("endpoint busy", code="throttled"),
        PermanentError("bad key"),
        InputError("n_candidates: too many"),
        ValidationFailed("chunk 3 stayed below 85"),
    ],
)
def test_the_wire_form_round_trips_kind_code_and_message(error: Exception) -> None:
    back = from_wire(wire_string(error))
    assert isinstance(
        back, type(error).__mro__[1] if type(error) is ValidationFailed else type(error)
    )
    assert back.code == error.code and str(back) == str(error)  # type: ignore[attr-defined]
    assert from_wire(to_wire(error)).code == error.code  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("sent", "kind", "code"),
    [
        # workers before the wire form: "ClassName: message"; only the class name counts
        ("TransientError: CUDA out of memory", TransientError, "transient"),
        ("InputError: invalid request: n_candidates: ...", InputError, "invalid_input"),
        ("ValueError: the request timed out in a way no retry fixes", PermanentError, "permanent"),
        ("something went wrong", PermanentError, "permanent"),
        # the runpod SDK's report of a handler that raised
        (
            json.dumps({"error_type": "<class 'KeyError'>", "error_message": "'text'"}),
            PermanentError,
            "internal_error",
        ),
        (
            {"kind": "transient", "code": "out_of_memory", "message": "m"},
            TransientError,
            "out_of_memory",
        ),
        ({"kind": "nonsense", "message": "m"}, PermanentError, "permanent"),
        ("", PermanentError, "permanent"),
    ],
)
def test_older_and_foreign_error_forms_are_read(sent: object, kind: type, code: str) -> None:
    error = from_wire(sent, "job 7 FAILED on the worker")
    assert type(error) is kind and error.code == code
    assert str(error).startswith("job 7 FAILED on the worker")


def test_an_error_keeps_its_code_through_pickle() -> None:
    """Prefect keeps a failed task's exception pickled in its state."""
    back = pickle.loads(pickle.dumps(TransientError("full", code="out_of_memory")))
    assert type(back) is TransientError and back.code == "out_of_memory" and str(back) == "full"
