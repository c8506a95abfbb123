"""The RunPod API key: from the settings, else from a Prefect Secret block. Never logged."""

from typing import cast

from gpu_worker.errors import InputError
from gpu_worker.redaction import register_secret
from tasks.settings import NarratorSettings


def api_key(settings: NarratorSettings) -> str:
    """NARRATOR_RUNPOD_API_KEY, else the Prefect Secret block named in the settings."""
    if settings.runpod_api_key is not None:
        key = settings.runpod_api_key.get_secret_value()
        register_secret(key)
        return key
    from prefect.blocks.system import Secret

    try:
        secret = cast(Secret, Secret.load(settings.runpod_api_key_block))
    except ValueError as e:
        raise InputError(
            f"no RunPod API key: set NARRATOR_RUNPOD_API_KEY or create the "
            f"Prefect Secret block {settings.runpod_api_key_block!r}"
        ) from e
    key = str(secret.get())
    register_secret(key)
    return key
