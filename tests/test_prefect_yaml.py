"""prefect.yaml's deployments point at real flows whose parameters the UI can render."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

ROOT = Path(__file__).parent.parent
DEPLOYMENTS = {
    d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
}
REQUIRED = {
    "narrate-chapter": ["source"],
    "narrate-digest-elevenlabs": ["source"],
    "nightly-batch": ["source", "out_dir"],
    "narrate-book": ["book", "out_dir"],
    "redo-chunks": ["out_dir"],
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_deployment_has_a_described_enforced_schema(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    schema = parameter_schema(flow.fn).model_dump()
    assert deployment["enforce_parameter_schema"] is True
    assert schema["required"] == REQUIRED[name]
    # The UI shows these under each field; they come from the flow's docstring.
    assert all(p.get("description") for p in schema["properties"].values())
    if "options" in schema["properties"]:
        options = schema["definitions"]["NarrationOptions"]["properties"]
        assert {"generation", "chunking", "audio", "on_low_score"} <= set(options)
    # The deployment's own defaults must pass the schema (a run supplies the rest).
    validate(deployment.get("parameters", {}), schema, raise_on_error=True, ignore_required=True)


def test_the_nightly_batch_runs_at_two_on_a_cron_schedule() -> None:
    (schedule,) = DEPLOYMENTS["nightly-batch"]["schedules"]
    assert schedule["cron"] == "0 2 * * *"
    assert schedule["timezone"] == "{{ $NARRATOR_TIMEZONE }}"


def test_the_elevenlabs_deployment_selects_its_backend_for_its_runs() -> None:
    from tasks.settings import NarratorSettings

    env = DEPLOYMENTS["narrate-digest-elevenlabs"]["job_variables"]["env"]
    fields = {name.removeprefix("NARRATOR_").lower(): value for name, value in env.items()}
    assert NarratorSettings(**fields).backend == "elevenlabs"
