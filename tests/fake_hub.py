"""A stand-in for the Hugging Face Hub (which tests cannot reach), serving model repos from
local folders over the Hub's public HTTP contract, enough for `huggingface_hub`'s
`snapshot_download` and `hf_hub_download` (1.x and 2.x) with `HF_ENDPOINT` pointed at it:

    GET  /api/models/{repo}/revision/{rev}      the commit and its files ("siblings")
    GET  /api/models/{repo}/tree/{rev}/?...     every file with its size and git oid
    HEAD /{repo}/resolve/{rev}/{path}            X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{path}            the bytes

`requests` records every path asked for, so a test can tell what was downloaded.
"""

import hashlib
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

COMMIT = "0" * 39 + "1"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos  # "owner/name" -> folder holding the repo's files
        self.requests: list[str] = []

    def files(self, repo: str) -> dict[str, Path]:
        if repo not in self.repos:
            raise HTTPException(404, headers={"X-Error-Code": "RepoNotFound"})
        root = self.repos[repo]
        return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
            self.requests.append(f"{request.method} {request.url.path}")
            return await call_next(request)

        @app.get("/api/models/{owner}/{name}/revision/{revision}")
        def revision(owner: str, name: str, revision: str) -> JSONResponse:
            files = self.files(f"{owner}/{name}")
            return JSONResponse(
                {
                    "id": f"{owner}/{name}",
                    "modelId": f"{owner}/{name}",
                    "sha": COMMIT,
                    "private": False,
                    "siblings": [{"rfilename": path} for path in files],
                }
            )

        @app.get("/api/models/{owner}/{name}/tree/{revision}")
        @app.get("/api/models/{owner}/{name}/tree/{revision}/")
        def tree(owner: str, name: str, revision: str) -> JSONResponse:
            files = self.files(f"{owner}/{name}")
            entries = [
                {
                    "type": "file",
                    "path": path,
                    "size": f.stat().st_size,
                    "oid": git_oid(f.read_bytes()),
                }
                for path, f in files.items()
            ]
            return JSONResponse(entries)

        @app.api_route("/{owner}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
        def resolve(owner: str, name: str, revision: str, path: str, request: Request) -> Response:
            files = self.files(f"{owner}/{name}")
            if path not in files:
                raise HTTPException(404, headers={"X-Error-Code": "EntryNotFound"})
            data = files[path].read_bytes()
            headers = {
                "X-Repo-Commit": COMMIT,
                "ETag": f'"{git_oid(data)}"',
                "Content-Length": str(len(data)),
            }
            body = b"" if request.method == "HEAD" else data
            return Response(body, headers=headers, media_type="application/octet-stream")

        return app
