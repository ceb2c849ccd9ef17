"""Local servers for the openai engine's tests, on 127.0.0.1 only.

- ScriptedServer: an OpenAI-compatible endpoint answering from the fake engine, which can be
  told to fail first (429 with Retry-After, 500, slow answers, 401, 400), to drive retries.
- LlamaServer: the real llama-cpp-python server with the packaged model, in a subprocess that
  a test can kill and restart.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from emopillars.engines import Message, Request, Sampling
from emopillars.engines.fake import FakeEngine
from emopillars.engines.llamacpp import packaged_model_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Script:
    """Failures to serve before answering normally: "429", "500", "slow", "401", "400ctx"."""

    failures: list[str] = field(default_factory=list)
    slow_seconds: float = 3.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_failure(self, body: dict[str, Any]) -> str | None:
        with self.lock:
            self.bodies.append(body)
            return self.failures.pop(0) if self.failures else None


def _schema_of(body: dict[str, Any]) -> dict[str, Any]:
    if "structured_outputs" in body:
        schema: dict[str, Any] = body["structured_outputs"]["json"]
        return schema
    response_format = body["response_format"]
    if response_format["type"] == "json_schema":
        schema = response_format["json_schema"]["schema"]
        return schema
    schema = response_format["schema"]
    return schema


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    fake = FakeEngine()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            failure = script.next_failure(body)
            error = {"error": {"message": "scripted failure", "type": "test"}}
            if failure == "429":
                return self._send(429, error, {"Retry-After": "0"})
            if failure == "500":
                return self._send(500, error, {})
            if failure == "401":
                return self._send(401, error, {})
            if failure == "400ctx":
                message = "This model's maximum context length is 2048 tokens"
                return self._send(400, {"error": {"message": message, "type": "test"}}, {})
            if failure == "slow":
                time.sleep(script.slow_seconds)
            request = Request(
                messages=tuple(Message(m["role"], m["content"]) for m in body["messages"]),
                schema=_schema_of(body),
                sampling=Sampling(max_tokens=body["max_tokens"], seed=body.get("seed", 0)),
                engine_fingerprint="scripted",
            )
            result = fake.generate([request])[0]
            self._send(
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": result.finish_reason,
                            "message": {"role": "assistant", "content": result.text},
                        }
                    ],
                    "usage": {
                        "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens,
                        "total_tokens": result.prompt_tokens + result.completion_tokens,
                    },
                },
                {},
            )

    return Handler


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server with the packaged model."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> None:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model_path()),
                   "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(self.port),
                   "--n_ctx", "4096"]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama server exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama server not ready in {timeout} s; see {self.log}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    stop = kill
