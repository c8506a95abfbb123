"""A proxy in front of the local RunPod endpoint (or the moto S3 server) that changes what
the client receives: the hostile network and the flaky cloud of the integrity tests, over a
real socket.

    proxy = TamperingProxy(endpoint_url)
    proxy.once(lambda answer: answer.path.endswith("/run") and answer.with_json({...}))
    base = serve(proxy.app)          # point the client at base instead of the endpoint

A rule sees each answer (method, path, status, body) and returns a changed Answer, or
something false to let it through. A rule given with `once` is dropped after it changed one
answer; `always` keeps it. `log` lists every answer the client actually got.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def with_json(self, body: Any, status: int | None = None) -> "Answer":
        return replace(
            self,
            body=json.dumps(body).encode(),
            status=self.status if status is None else status,
            headers={"content-type": "application/json"},
        )

    def with_body(self, body: bytes, status: int, **headers: str) -> "Answer":
        return replace(self, body=body, status=status, headers=headers)


Rule = Callable[[Answer], Any]


class TamperingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[tuple[Rule, bool]] = []  # (rule, keep after it fired)
        self.log: list[Answer] = []
        self.fired: list[Answer] = []  # the answers a rule changed, as changed
        self._client: httpx.AsyncClient | None = None

    def once(self, rule: Rule) -> None:
        self.rules.append((rule, False))

    def always(self, rule: Rule) -> None:
        self.rules.append((rule, True))

    @property
    def app(self) -> "TamperingProxy":
        """The ASGI app to serve (the proxy itself)."""
        return self

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=60)
        query = scope.get("query_string", b"").decode()
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() != b"host"}
        got = await self._client.request(scope["method"], url, content=body, headers=headers)
        kept = {
            k: v
            for k, v in got.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
        }
        answer = Answer(
            scope["method"],
            scope["path"],
            got.status_code,
            got.content,
            {"content-type": "application/json", **kept},
        )
        for rule, keep in list(self.rules):
            changed = rule(answer)
            if isinstance(changed, Answer):
                answer = changed
                self.fired.append(answer)
                if not keep:
                    self.rules.remove((rule, keep))
                break
        self.log.append(answer)
        headers_out = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        length = got.headers.get("content-length") if answer.method == "HEAD" else None
        headers_out.append((b"content-length", (length or str(len(answer.body))).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers_out})
        await send({"type": "http.response.body", "body": answer.body})
