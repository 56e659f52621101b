"""Helpers for tests of `s2s serve`: a live server on a free loopback port, plain HTTP calls,
and a tiny captioning run."""

import contextlib
import http.client
import json
import socket
import threading
import time

TINY_CAPTIONER = {
    "name": "tiny-shapes", "task": "captioning",
    "data": {"dataset": "shapes", "src": "image", "tgt": "caption",
             "sizes": {"train": 40, "validation": 4, "test": 4}},
    "tokenizer": {"type": "unigram", "vocab_size": 40},
    "model": {"arch": "captioner", "encoder": {"type": "cnn", "image_size": 32, "channels": [4, 8]},
              "decoder": {"type": "rnn", "emb_dim": 8, "hidden_dim": 16}},
    "train": {"batch_tokens": 200, "max_steps": 1, "eval_every": 1, "eval_metric": "exact",
              "precision": "fp32"},
    "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 12, "batch_size": 8},
}


def train_captioner(folder):
    """A captioning run trained for one step: enough to serve, caption and attend."""
    from s2s.recipe import recipe_from_dict
    from s2s.train import train

    train(recipe_from_dict(TINY_CAPTIONER), folder / "tiny-shapes", device="cpu", log=lambda *a: None)
    return folder / "tiny-shapes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app):
    """Run `app` under uvicorn in a thread on 127.0.0.1; yields (host, port)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)


def call(where, method: str, path: str, body=None, headers: dict | None = None,
         timeout: float = 60) -> tuple[int, dict]:
    """One request; a dict or list body is sent as JSON. Returns (status, decoded JSON)."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(*where, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers,
                           encode_chunked=headers.get("Transfer-Encoding") == "chunked")
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def multipart(fields: dict, files: dict) -> tuple[bytes, dict]:
    """A multipart/form-data body: fields {name: text}, files {name: (filename, bytes)}."""
    boundary = "s2s-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def run_clients(count: int, client) -> None:
    """`client(i)` for i in range(count), each in its own thread, all finished (or 60 s) on return."""
    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
