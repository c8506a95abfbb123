"""Flows whose parameters are checked before Prefect records the run.

Prefect stores a flow run's parameters when it creates the run and validates them after,
so a call refused for a presigned URL in `voice` would still leave the URL in the run's
record, shown in the UI. `checked_flow` is `prefect.flow` with that order reversed for
calls from Python (the CLI, a batch's chapters, a user's script); a deployment's runs are
checked by the Prefect server against the flow's parameter schema before they exist.
"""

from collections.abc import Callable, Iterable
from typing import Any

from prefect import Flow
from prefect.futures import PrefectFuture
from prefect.utilities.callables import get_call_parameters


class ParametersCheckedFirst(Flow[Any, Any]):
    """A Prefect flow that validates its parameters before it creates its run."""

    def __call__(
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        self.validate_parameters(get_call_parameters(self.fn, args, kwargs))
        return super().__call__(*args, return_state=return_state, wait_for=wait_for, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> "ParametersCheckedFirst":
        """Prefect's copy with other options, still checked first (Prefect makes a Flow)."""
        copy = super().with_options(*args, **kwargs)
        copy.__class__ = ParametersCheckedFirst
        return copy  # type: ignore[return-value]


def checked_flow(**options: Any) -> Callable[[Callable[..., Any]], ParametersCheckedFirst]:
    """`@prefect.flow(**options)`, parameters checked before the run is recorded."""

    def decorate(fn: Callable[..., Any]) -> ParametersCheckedFirst:
        return ParametersCheckedFirst(fn=fn, **options)

    return decorate
