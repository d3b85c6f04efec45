"""Local receivers for alerts and metrics: an HTTP webhook endpoint, an SMTP server and a StatsD UDP port,
each recording what reaches it. The notifiers under test talk to them over real sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookReceiver:
    """POSTs are recorded; the first ``fail_first`` answers are 500 (a flaky endpoint)."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    answered: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                receiver.answered += 1
                if receiver.answered <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.requests.append(Received(self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[str]:
        return [r.body.get("event") for r in self.requests if isinstance(r.body, dict)]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.requests)):
                return list(self.requests)
            time.sleep(0.2)
        raise AssertionError(f"the receiver did not get what was expected in {timeout:.0f} s; got "
                             f"{[(r.path, r.body) for r in self.requests]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class StatsdReceiver:
    """A UDP port that keeps every StatsD datagram."""

    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            self.lines.extend(data.decode().splitlines())

    def parsed(self) -> list[tuple[str, float, str, dict[str, str]]]:
        """(name, value, kind, tags) per datagram line."""
        out = []
        for line in list(self.lines):
            head, _, rest = line.partition("|#")
            name_value, kind = head.rsplit("|", 1)
            name, value = name_value.rsplit(":", 1)
            tags = dict(t.split(":", 1) for t in rest.split(",")) if rest else {}
            out.append((name, float(value), kind, tags))
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def http_connection(url: str, endpoint: str = "/hooks/ctloop") -> str:
    """``AIRFLOW_CONN_*`` value (JSON form) of an http connection to ``url``."""
    host, port = url.removeprefix("http://").split(":")
    return json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http",
                       "extra": {"endpoint": endpoint}})
