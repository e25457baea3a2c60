"""Requests through a load balancer from a thread, back to back, while a test changes what is
behind it: every answer that is not 200, and every connection error, is kept."""

from __future__ import annotations

import threading
import time

import requests


class Traffic:
    def __init__(self, url: str, pause_s: float = 0.0) -> None:
        self.url = url
        self.pause_s = pause_s
        self.sent = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                self.sent += 1
                try:
                    r = session.post(self.url, json={"prompt": "hi"}, timeout=10)
                    if r.status_code != 200:
                        self.failed.append(str(r.status_code))
                except requests.RequestException as exc:
                    self.failed.append(type(exc).__name__)
                time.sleep(self.pause_s)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
