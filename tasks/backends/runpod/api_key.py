"""API keys (RunPod's, ElevenLabs'): from the settings, else from a Prefect Secret block.
Never logged: each key is registered with the redactor as soon as it is read."""

from typing import cast

from pydantic import SecretStr

from gpu_worker.errors import InputError
from gpu_worker.redaction import register_secret
from tasks.settings import NarratorSettings


def secret_key(value: SecretStr | None, block: str, service: str, variable: str) -> str:
    """`value` when set, else the Prefect Secret block named `block`."""
    if value is not None:
        key = value.get_secret_value()
        register_secret(key)
        return key
    from prefect.blocks.system import Secret

    try:
        secret = cast(Secret, Secret.load(block))
    except ValueError as e:
        raise InputError(
            f"no {service} API key: set {variable} or create the Prefect Secret block {block!r}"
        ) from e
    key = str(secret.get())
    register_secret(key)
    return key


def api_key(settings: NarratorSettings) -> str:
    """NARRATOR_RUNPOD_API_KEY, else the Prefect Secret block named in the settings."""
    return secret_key(
        settings.runpod_api_key, settings.runpod_api_key_block, "RunPod", "NARRATOR_RUNPOD_API_KEY"
    )
