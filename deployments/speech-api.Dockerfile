# narrator's speech API (`narrator serve`): OpenAI's POST /v1/audio/speech and seed 004's
# routes, on the orchestrator side. It generates on the RunPod endpoint (the worker image,
# gpu_worker/Dockerfile) or, unset, on this container's CPU with the embedded engine (whose
# models come inside its PyPI packages: nothing downloads at run time). Build from the repo
# root:
#
#   docker build -f deployments/speech-api.Dockerfile -t REGISTRY/narrator-api:0.1.0 .
#   docker run -p 8880:8880 -e NARRATOR_API_KEY=... \
#       -e NARRATOR_BACKEND=runpod -e NARRATOR_RUNPOD_ENDPOINT_ID=... \
#       -e NARRATOR_RUNPOD_API_KEY=... -e NARRATOR_CACHE_DIR=s3://bucket/narrator-cache \
#       -e PREFECT_API_URL=http://prefect:4200/api REGISTRY/narrator-api:0.1.0
#
# Each request is a Prefect flow run: with PREFECT_API_URL, on your Prefect server (its UI
# shows every request's chunks, retries and logs); without it, a temporary server inside the
# container. The chunk cache is shared with chapters when NARRATOR_CACHE_DIR points at the
# same S3 prefix. Runs as an unprivileged user.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    NARRATOR_CACHE_DIR=/home/narrator/cache \
    NARRATOR_VOICE_LIBRARY=/home/narrator/voices

RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv \
 && useradd --create-home narrator

WORKDIR /app
COPY pyproject.toml README.md ./
COPY flows flows
COPY tasks tasks
COPY gpu_worker gpu_worker
COPY local_endpoint local_endpoint
COPY bench bench
RUN pip install --upgrade pip && pip install .

USER narrator
WORKDIR /home/narrator
EXPOSE 8880
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8880/health', timeout=4)"
CMD ["narrator", "serve", "--host", "0.0.0.0", "--port", "8880"]
