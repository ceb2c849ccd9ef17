"""An instant OpenAI-compatible chat endpoint for client benchmarks, on 127.0.0.1 only.

    python benchmarks/mock_openai_server.py PORT

Every POST (whatever its path) gets the same canned chat completion at once, over HTTP/1.1
with keep-alive; GET /v1/models answers too, so a client that lists models finds one. Plain
asyncio streams and a hand-written HTTP/1.1 reader: no web framework's cost on the server
side, which runs in its own process so that it never counts as client CPU.
"""

from __future__ import annotations

import asyncio
import json
import sys

ANSWER = json.dumps({"labels": [{"emotion": "joy", "intensity": 0.7}]})
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": "mock",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": ANSWER},
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 500, "completion_tokens": 35, "total_tokens": 535},
    }
).encode()
MODELS = json.dumps(
    {"object": "list", "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "x"}]}
).encode()


def _response(body: bytes) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


POST_RESPONSE = _response(COMPLETION)
GET_RESPONSE = _response(MODELS)


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            writer.write(POST_RESPONSE if head.startswith(b"POST") else GET_RESPONSE)
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
