"""A batch's chapters as flow runs of the narrate-chapter deployment, on any worker.

`narrate_batch(chapter_deployment=...)` hands each chapter to Prefect as its own flow run
(`run_deployment`), so every worker serving the work pool, on any machine, takes chapters,
and a process that dies takes only its own chapter with it. At most `max_in_flight` of the
batch's runs are unfinished at once; the endpoint's global concurrency limit bounds the
chunk jobs of every run together. A run that ends Crashed (its worker died: the
heartbeat automation of flows/stack.py marks it so) is submitted again, up to `resubmits`
times; its chunks already generated come from the cache, so only unfinished chunks are
generated again.
"""

import time
import typing
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.states import State

POLL_SECONDS = 2.0


def run_chapters(
    deployment: str,
    parameters: dict[str, dict[str, Any]],
    max_in_flight: int,
    resubmits: int = 2,
) -> dict[str, State[Any]]:
    """Run each chapter's flow run (`parameters`: chapter -> its parameters) and return each
    chapter's final state, in the order given."""
    logger = get_run_logger()
    waiting = list(parameters)
    attempts = dict.fromkeys(parameters, 0)
    running: dict[UUID, str] = {}
    final: dict[str, State[Any]] = {}
    with get_client(sync_client=True) as client:
        while waiting or running:
            while waiting and len(running) < max_in_flight:
                chapter = waiting.pop(0)
                attempts[chapter] += 1
                run = typing.cast(
                    FlowRun,
                    run_deployment(
                        deployment, parameters=parameters[chapter], timeout=0, as_subflow=True
                    ),
                )  # a flow is sync here: run_deployment returns the run, not a coroutine
                running[run.id] = chapter
                logger.info("%s: flow run %s (%s)", chapter, run.name, run.id)
            time.sleep(POLL_SECONDS)
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(running)))
            )
            for run in runs:
                if run.state is None or not run.state.is_final():
                    continue
                chapter = running.pop(run.id)
                worker = run.labels.get("prefect.worker.name", "?")
                if run.state.is_crashed() and attempts[chapter] <= resubmits:
                    why = run.state.message
                    logger.warning(
                        "%s: flow run %s crashed on worker %s (%s); submitting it again",
                        *(chapter, run.name, worker, why),
                    )
                    waiting.insert(0, chapter)
                    continue
                logger.info("%s: %s on worker %s", chapter, run.state.name, worker)
                final[chapter] = run.state
    return {c: final[c] for c in parameters}
