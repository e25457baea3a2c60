"""An HTTP fake of the two object APIs the lease and the record use on GCS and Azure
(reconciler/clouds/objects.py), speaking their wire format on 127.0.0.1:

    GCS    GET    /storage/v1/b/B/o/NAME?alt=media         x-goog-generation header
           POST   /upload/storage/v1/b/B/o?uploadType=media&name=N&ifGenerationMatch=G
           DELETE /storage/v1/b/B/o/NAME[?ifGenerationMatch=G]
    Azure  GET | PUT | DELETE /CONTAINER/NAME with If-Match / If-None-Match: * and ETags

Preconditions as the services document them: GCS 412 when the live generation is not the
one given (0: no live object), Azure 412 on an ETag mismatch and 409 (BlobAlreadyExists)
for If-None-Match: * on an existing blob. Every request needs a bearer token (401 without);
`deny` answers 403 to everything, `seen` records what was asked.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class ObjectStoreFake:
    objects: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # key -> (data, gen)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    deny: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _generations: Any = field(default_factory=lambda: itertools.count(1_700_000_000_000_001))

    def next_generation(self) -> int:
        return int(next(self._generations))


def _etag(generation: int) -> str:
    return f'"0x{generation:X}"'


def serve(fake: ObjectStoreFake) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            return

        def _reply(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.seen.append((method, self.path, dict(self.headers)))
            if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                return self._reply(401, b'{"error": {"message": "no credentials"}}')
            if fake.deny:
                return self._reply(403, b'{"error": {"message": "permission denied"}}')
            with fake.lock:
                if parts.path.startswith(("/storage/v1/b/", "/upload/storage/v1/b/")):
                    return self._gcs(method, parts.path, query, body)
                return self._azure(method, unquote(parts.path.lstrip("/")), body)

        def _gcs(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
            if method == "POST":
                bucket = path.split("/")[5]
                key = f"{bucket}/{query['name']}"
            else:
                _, _, _, _, bucket, _, name = path.split("/", 6)
                key = f"{bucket}/{unquote(name)}"
            live = fake.objects.get(key)
            wanted = query.get("ifGenerationMatch")
            if wanted is not None and int(wanted) != (live[1] if live else 0):
                return self._reply(412, b'{"error": {"code": 412, "message": "conditionNotMet"}}')
            if method == "GET":
                if live is None:
                    return self._reply(404, b"No such object")
                return self._reply(200, live[0], {"x-goog-generation": str(live[1])})
            if method == "DELETE":
                if live is None:
                    return self._reply(404, b"")
                del fake.objects[key]
                return self._reply(204)
            generation = fake.next_generation()
            fake.objects[key] = (body, generation)
            reply = json.dumps({"name": query["name"], "generation": str(generation)})
            return self._reply(200, reply.encode())

        def _azure(self, method: str, key: str, body: bytes) -> None:
            if not self.headers.get("x-ms-version") or not self.headers.get("x-ms-date"):
                return self._reply(400, b"MissingRequiredHeader")
            live = fake.objects.get(key)
            if_match = self.headers.get("If-Match")
            if self.headers.get("If-None-Match") == "*" and live is not None:
                return self._reply(409, b"BlobAlreadyExists")
            if if_match is not None and (live is None or _etag(live[1]) != if_match):
                return self._reply(412, b"ConditionNotMet")
            if method == "GET":
                if live is None:
                    return self._reply(404, b"BlobNotFound")
                return self._reply(200, live[0], {"ETag": _etag(live[1])})
            if method == "DELETE":
                if live is None:
                    return self._reply(404, b"BlobNotFound")
                del fake.objects[key]
                return self._reply(202)
            if self.headers.get("x-ms-blob-type") != "BlockBlob":
                return self._reply(400, b"MissingRequiredHeader x-ms-blob-type")
            generation = fake.next_generation()
            fake.objects[key] = (body, generation)
            return self._reply(201, b"", {"ETag": _etag(generation)})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
