"""Screenshots of the Prefect UI for the guide, from a real local stack and a real run.

    apt-get install chromium        (once; Debian's package)
    .venv/bin/python deployments/screenshots.py [CHAPTER]

Brings up `narrator stack` on a free port with its own PREFECT_HOME, runs narrate-chapter
on CHAPTER (default: the bundled sample) through the API as the UI's Run button does,
waits for it to finish, then has headless Chromium photograph the deployments page, the
finished run, and its summary and chunk-table artifacts into docs/images/.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from flows import stack as ops

IMAGES = ops.ROOT / "docs" / "images"
SAMPLE = ops.ROOT / "samples" / "the-keeper-of-lantern-rock.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_chapter(stack: ops.Stack, chapter: Path) -> str:
    client = httpx.Client(base_url=stack.api_url, timeout=30)
    deployment = client.get("/deployments/name/narrate-chapter/narrate-chapter").json()
    run = client.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"source": str(chapter)}},
    ).json()
    while True:
        state = client.get(f"/flow_runs/{run['id']}").json()["state"]
        print(f"  {state['name']}", flush=True)
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(5)
    if state["type"] != "COMPLETED":
        raise SystemExit(f"run ended {state['name']}: {state['message']}")
    return str(run["id"])


def photograph(url: str, image: Path, height: int = 1000) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size=1440,{height}",
                "--virtual-time-budget=20000",
                f"--screenshot={image}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"  {image.relative_to(ops.ROOT)}")


def main() -> None:
    chapter = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else SAMPLE
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "NARRATOR_CACHE_DIR": str(Path(home) / "cache"),  # a cold run, as a first one is
        }
        stack = ops.start(port=free_port(), log_dir=Path(home) / "logs", env=env)
        try:
            print(f"stack at {stack.ui_url}; narrating {chapter.name}")
            run_id = run_chapter(stack, chapter)
            artifacts = httpx.post(
                f"{stack.api_url}/artifacts/filter",
                json={"artifacts": {"flow_run_id": {"any_": [run_id]}}},
            ).json()
            artifact = {a["key"].rsplit("-", 1)[-1]: a["id"] for a in artifacts}
            photograph(f"{stack.ui_url}/deployments", IMAGES / "ui-deployments.png", 700)
            photograph(f"{stack.ui_url}/runs/flow-run/{run_id}", IMAGES / "ui-flow-run.png")
            for kind, height in (("summary", 560), ("chunks", 1000)):
                photograph(
                    f"{stack.ui_url}/artifacts/artifact/{artifact[kind]}",
                    IMAGES / f"ui-{kind}-artifact.png",
                    height,
                )
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
