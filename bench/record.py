"""Where a benchmark's figures go: bench/results/NAME-DATE.json, with the machine and date
(NARRATOR_BENCH_RESULTS names another folder: the benches' smoke tests write there)."""

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("NARRATOR_BENCH_RESULTS") or Path(__file__).parent / "results")


def save(name: str, figures: dict[str, Any], suffix: str = "") -> Path:
    """Write `figures` with today's date, the machine and Python (unless `figures` has its
    own) to bench/results/NAME-DATE[SUFFIX].json; returns the file."""
    RESULTS.mkdir(exist_ok=True)
    today = datetime.date.today().isoformat()
    path = RESULTS / f"{name}-{today}{suffix}.json"
    header = {
        "date": today,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    path.write_text(json.dumps({**header, **figures}, indent=2, default=str) + "\n")
    return path
