"""The worker image holds what the RunPod handler runs, and nothing of the orchestrator or of
the development tools: its build context (gpu_worker/Dockerfile + .dockerignore) is checked
here the way Docker reads it, and the code in it is checked to import only itself."""

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_context() -> set[str]:
    """The tracked files Docker sends for `docker build -f gpu_worker/Dockerfile .`: every
    .dockerignore rule in order, the last that matches a path (or a folder above it) wins,
    `!` re-including."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sent = set()
    for path in tracked:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        included = True
        for keep, pattern in rules:
            if any(fnmatch.fnmatchcase(p, pattern.replace("**/", "*/")) for p in prefixes):
                included = keep
        if included:
            sent.add(path)
    return sent


def test_the_build_context_is_the_worker_package_only() -> None:
    context = build_context()
    assert "gpu_worker/handler.py" in context and "gpu_worker/requirements.txt" in context
    assert not any(p.startswith(("local_endpoint/", "tasks/", "flows/", "tests/")) for p in context)
    assert not any("fault" in p or "endpoint" in p for p in context), sorted(context)


def test_the_dockerfile_copies_only_what_the_context_holds() -> None:
    dockerfile = (ROOT / "gpu_worker" / "Dockerfile").read_text()
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    context = build_context()
    for source in copied:
        assert any(p == source or p.startswith(source + "/") for p in context), source


def test_the_worker_code_imports_nothing_outside_the_image() -> None:
    outside = {"tasks", "flows", "local_endpoint", "prefect", "prefect_aws", "bench"}
    for path in sorted(build_context()):
        if not path.endswith(".py"):
            continue
        tree = ast.parse((ROOT / path).read_text(), path)
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in outside, f"{path} imports {name}"


def test_the_handler_starts_without_the_orchestrator() -> None:
    """Importing the handler loads none of the orchestrator's packages."""
    code = (
        "import sys, gpu_worker.handler, gpu_worker.best_of_n; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'tasks', 'flows', 'local_endpoint', 'prefect'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
