"""prefect.yaml's deployments point at real flows whose parameters the UI can render."""

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).parent.parent


def test_every_deployment_entrypoint_loads_with_a_parameter_schema() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert "narrate-chapter" in deployments
    for deployment in deployments.values():
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        schema = parameter_schema(flow.fn).model_dump()
        assert deployment["enforce_parameter_schema"] is True
        assert "source" in schema["properties"]
        assert schema["required"] == ["source"]
        options = schema["definitions"]["NarrationOptions"]["properties"]
        assert {"generation", "chunking", "audio", "on_low_score"} <= set(options)
