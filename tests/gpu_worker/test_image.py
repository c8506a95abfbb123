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


def dockerfile_values() -> dict[str, str]:
    """ARG defaults and ENV values of gpu_worker/Dockerfile, ${VAR} expanded as Docker does."""
    text = (ROOT / "gpu_worker" / "Dockerfile").read_text().replace("\\\n", " ")
    values: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["ARG"] and "=" in words[1]:
            name, default = words[1].split("=", 1)
            values[name] = default
        if words[:1] == ["ENV"]:
            for pair in words[1:]:
                name, value = pair.split("=", 1)
                for known, setting in values.items():
                    value = value.replace("${" + known + "}", setting)
                values[name] = value
    return values


def test_the_images_defaults_read_the_layout_the_download_writes() -> None:
    """Serverless workers see the volume at /runpod-volume; gpu_worker.weights writes the
    folders the image's settings name, and a cold start may not reach any hub."""
    from gpu_worker.weights import chatterbox_dir, whisper_dir

    image = dockerfile_values()
    models = Path(image["MODELS_DIR"])
    assert models == Path("/runpod-volume/models")
    assert image["NARRATOR_CHATTERBOX_DIR"] == str(chatterbox_dir(models, multilingual=False))
    assert image["NARRATOR_WHISPER_MODEL"] == str(whisper_dir(models, image["WHISPER_MODEL"]))
    assert image["NARRATOR_VOICES_ROOT"] == "/runpod-volume/voices"
    assert image["HF_HUB_OFFLINE"] == "1"
    assert image["HF_HOME"].startswith("/runpod-volume/")  # never a download per cold start


def test_the_image_points_ctranslate2_at_torchs_cuda_libraries() -> None:
    """No CUDA from the base image: CTranslate2 finds cuBLAS and cuDNN in torch's wheels,
    under the venv of the base image's Python."""
    image = dockerfile_values()
    dockerfile = (ROOT / "gpu_worker" / "Dockerfile").read_text()
    python = dockerfile.split("FROM python:", 1)[1].split("-", 1)[0]
    for library in ("cublas", "cudnn"):
        assert f"/opt/venv/lib/python{python}/site-packages/nvidia/{library}/lib" in (
            image["LD_LIBRARY_PATH"].split(":")
        )


def test_the_image_requirements_exclude_the_releases_that_break_the_worker() -> None:
    """setuptools 81 removed pkg_resources (the watermarker then fails to import);
    CTranslate2 4.7 needs CUDA 12.8, which torch 2.6 cu124 does not bring; numpy 2 is not
    chatterbox 0.1.7's."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "gpu_worker" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = requirement.specifier
    assert not pins["setuptools"].contains("81.0")
    assert pins["ctranslate2"].contains("4.6.3") and not pins["ctranslate2"].contains("4.7.0")
    assert not pins["numpy"].contains("2.0.0")
    assert pins["chatterbox-tts"].contains("0.1.7") and not pins["chatterbox-tts"].contains("0.1.8")
