"""`s2s serve` from a client's seat: every route, batching, abuse, the API key, the command."""

import asyncio
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")

from s2s.api import load  # noqa: E402
from s2s.cli import cli  # noqa: E402
from s2s.serve.app import create_app, load_models, model_names  # noqa: E402
from s2s.serve.batching import Batcher  # noqa: E402
from serving import call, free_port, live_server, multipart, run_clients  # noqa: E402

SENTENCE = "Saturday, 4 July 1998"
DATES = ["Saturday, 4 July 1998", "le 1er juillet 2003", "7/4/98", "3 March 2011",
         "Sunday, 9 May 1976", "12/25/01", "der 3. Oktober 1990", "1 January 2000"]


@pytest.fixture(scope="module")
def models(trained_run, transformer_run, captioning_run):
    return load_models([trained_run, transformer_run, captioning_run], device="cpu")


@pytest.fixture(scope="module")
def server(models):
    with live_server(create_app(models)) as where:
        yield where


def png(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims width x height (a bomb when that is huge)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def picture_bytes(seed: int = 3) -> bytes:
    import io

    from s2s.data.shapes import generate

    buffer = io.BytesIO()
    next(iter(generate("test", 1, seed=seed)))["image"].save(buffer, format="PNG")
    return buffer.getvalue()


def test_names_are_directory_names_made_unique(tmp_path):
    assert model_names([tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "x"]) == \
        ["run", "run-2", "x"]


def test_models_health_schema_and_page(server):
    status, answer = call(server, "GET", "/v1/models")
    assert status == 200
    by_name = {m["name"]: m for m in answer["models"]}
    assert by_name.keys() == {"tiny", "tiny-transformer", "tiny-shapes"}
    assert by_name["tiny-transformer"]["layers"] == 2 and by_name["tiny-transformer"]["heads"] == 2
    assert by_name["tiny"]["decode"]["beam"] == 2 and by_name["tiny-shapes"]["task"] == "captioning"
    assert call(server, "GET", "/health")[1]["status"] == "ok"
    status, schema = call(server, "GET", "/openapi.json")
    assert status == 200 and {"/v1/translate", "/v1/attention", "/v1/caption", "/v1/models"} <= \
        schema["paths"].keys()
    import http.client

    for path, kind in [("/", "text/html"), ("/static/explorer.js", "javascript"),
                       ("/static/explorer.css", "text/css")]:
        connection = http.client.HTTPConnection(*server, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200 and kind in response.getheader("content-type"), path
        body = response.read().decode()
        assert "http://" not in body and "https://" not in body, f"{path} loads something from elsewhere"


def test_translate_answers_what_the_api_gives(server, models):
    status, answer = call(server, "POST", "/v1/translate", {
        "model": "tiny", "text": DATES[:3], "beam": 3, "n_best": 2, "align": True})
    assert status == 200, answer
    assert answer["model"] == "tiny"
    assert answer["translations"] == models["tiny"].translate(DATES[:3], beam=3, n_best=2, align=True)
    status, plain = call(server, "POST", "/v1/translate", {"model": "tiny", "text": [SENTENCE]})
    assert "alignment" not in plain["translations"][0]["hypotheses"][0]


def test_attention_answers_the_inspect_record(server, models, tmp_path):
    out = tmp_path / "x.json"
    result = CliRunner().invoke(cli, ["inspect", str(models["tiny-transformer"].run.dir), SENTENCE,
                                      "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    status, record = call(server, "POST", "/v1/attention", {"model": "tiny-transformer", "text": SENTENCE})
    assert status == 200, record
    assert {k: v for k, v in record.items() if k != "weights"} == \
        {k: v for k, v in written.items() if k != "weights"}
    np.testing.assert_allclose(record["weights"], written["weights"], rtol=1e-5, atol=1e-7)
    status, one = call(server, "POST", "/v1/attention", {
        "model": "tiny-transformer", "text": SENTENCE, "target": "1998-07-04", "layer": 1,
        "head": "mean", "words": True, "kind": "cross"})
    assert status == 200 and one["shape"][:2] == [1, 1] and one["extra"]["target"] == "1998-07-04"
    assert one == models["tiny-transformer"].attention(SENTENCE, "1998-07-04", "cross", 1, "mean", True)


def test_caption_an_upload_with_region_attention(server, models):
    body, headers = multipart({"model": "tiny-shapes", "n_best": "2"}, {"image": ("a.png", picture_bytes())})
    status, answer = call(server, "POST", "/v1/caption", body, headers)
    assert status == 200, answer
    import io

    from PIL import Image

    expected = models["tiny-shapes"].caption([Image.open(io.BytesIO(picture_bytes()))], n_best=2,
                                             attention=True)[0]
    assert answer == {"model": "tiny-shapes", **expected}
    attention = answer["hypotheses"][0]["attention"]
    assert attention["grid"] == [8, 8] and attention["shape"][-1] == 64


def test_concurrent_requests_share_forward_passes(trained_run):
    model = load(trained_run, device="cpu")
    expected = {s: r["hypotheses"][0]["text"] for s, r in zip(DATES, model.translate(DATES))}
    passes = []
    encode = model.run.model.encode

    def counted(*args):  # every batch of beam search encodes once
        passes.append(args[0].size(0))
        return encode(*args)

    model.run.model.encode = counted
    requests = [DATES[i % len(DATES)] for i in range(32)]
    answers: dict[int, list] = {i: [] for i in range(len(requests))}
    start = threading.Barrier(len(requests))

    def client(i):
        start.wait()
        answers[i].append(call(where, "POST", "/v1/translate", {"text": [requests[i]]}))

    app = create_app({"tiny": model}, window=0.05)
    with live_server(app) as where:
        run_clients(len(requests), client)
        batcher = app.state.service.batchers["tiny"]
        assert batcher.jobs == len(requests)  # each answered once
    assert len(passes) < len(requests) / 2 and sum(passes) == len(requests), passes
    for i, sentence in enumerate(requests):
        assert len(answers[i]) == 1
        status, answer = answers[i][0]
        assert status == 200, answer
        translated = answer["translations"]
        assert len(translated) == 1 and translated[0]["source"] == sentence  # nobody else's
        assert translated[0]["hypotheses"][0]["text"] == expected[sentence]


def test_requests_join_a_running_decoding_and_each_gets_its_own_answer(transformer_run):
    """Continuous batching: requests arriving while others decode join them between steps;
    requests of other kinds (alignments) and other options (beam) are answered too, each once,
    with what `translate` gives alone."""
    model = load(transformer_run, device="cpu")
    expected = {beam: {s: r["hypotheses"][0]["text"] for s, r in zip(DATES, model.translate(DATES, beam=beam))}
                for beam in (1, 2)}
    requests = [(DATES[i % len(DATES)], 1 + i % 4 // 3, i % 7 == 6) for i in range(40)]  # text, beam, align
    answers: dict[int, list] = {i: [] for i in range(len(requests))}

    def client(i):
        time.sleep(0.003 * i)  # arrivals spread over many decoding steps
        text, beam, align = requests[i]
        answers[i].append(call(where, "POST", "/v1/translate", {"text": [text], "beam": beam, "align": align}))

    app = create_app({model.name: model}, window=0.002)
    with live_server(app) as where:
        run_clients(len(requests), client)
        assert app.state.service.batchers[model.name].jobs == len(requests)  # each answered once
    for i, (text, beam, align) in enumerate(requests):
        assert len(answers[i]) == 1
        status, answer = answers[i][0]
        assert status == 200, answer
        (translated,) = answer["translations"]
        assert translated["source"] == text
        assert translated["hypotheses"][0]["text"] == expected[beam][text]
        assert ("alignment" in translated["hypotheses"][0]) == align


def test_a_translation_session_answers_what_translate_gives(transformer_run):
    model = load(transformer_run, device="cpu")
    session = model.translation_session()
    assert session.add(DATES[:3], ["a", "b", "c"], beam=2, n_best=2) == []
    done = {}
    for _ in range(3):
        done.update(session.step())
    late = list("defghijk")[:len(DATES) - 3]
    done.update(session.add(DATES[3:], late, beam=2, n_best=2))
    while len(session):
        done.update(session.step())
    for tag, record in zip("abcdefghijk", model.translate(DATES, beam=2, n_best=2)):
        assert done[tag]["source"] == record["source"]
        assert [h["text"] for h in done[tag]["hypotheses"]] == [h["text"] for h in record["hypotheses"]]
        assert [h["score"] for h in done[tag]["hypotheses"]] == pytest.approx(
            [h["score"] for h in record["hypotheses"]], abs=1e-4)


class ScriptedStream:
    """A stream whose items take `len(item)` steps; it fails on an item "boom"."""

    def __init__(self):
        self.flying: list[list] = []  # [tag, steps left]
        self.batches: list[list] = []

    def accepts(self, key):
        return key == "stream"

    def add(self, key, items, tags):
        self.batches.append(list(items))
        self.flying += [[tag, len(item), item] for tag, item in zip(tags, items)]
        return []

    def step(self):
        if any(item == "boom" for _, _, item in self.flying):
            raise RuntimeError("a bug")
        for entry in self.flying:
            entry[1] -= 1
        done = [(tag, item.upper()) for tag, left, item in self.flying if left <= 0]
        self.flying = [entry for entry in self.flying if entry[1] > 0]
        time.sleep(0.002)
        return done

    def reset(self):
        self.flying = []

    def __len__(self):
        return len(self.flying)


def test_the_batcher_streams_joins_and_is_not_starved_or_stopped_by_a_bug():
    async def scenario():
        stream = ScriptedStream()
        batcher = Batcher("scripted", lambda key, items: [f"{key}:{i}" for i in items], max_items=8,
                          window=0.001, max_wait=0.02, stream=stream)
        batcher.start()
        long = asyncio.ensure_future(batcher.submit("stream", ["x" * 60]))  # 60 steps
        await asyncio.sleep(0.02)
        late = await batcher.submit("stream", ["ab", "c"])  # joins the running decoding
        assert late == ["AB", "C"] and not long.done()
        other = await asyncio.wait_for(batcher.submit("plain", ["p"]), 5)  # not starved
        assert other == ["plain:p"]
        assert await long == ["X" * 60]
        broken = asyncio.ensure_future(batcher.submit("stream", ["boom"]))
        with pytest.raises(RuntimeError):
            await broken
        assert await batcher.submit("stream", ["ok"]) == ["OK"]  # still serving
        assert batcher.jobs == 5  # each answered once
        await batcher.stop()
        return stream.batches

    batches = asyncio.run(scenario())
    assert ["ab", "c"] in batches  # one job, one batch, while the long one ran


def test_a_large_request_is_not_starved_by_a_stream_of_small_ones():
    """Jobs join in arrival order: one that does not fit yet holds back those behind it."""
    async def scenario():
        batcher = Batcher("scripted", lambda key, items: items, max_items=8, window=0.001,
                          stream=ScriptedStream())
        batcher.start()
        stop = asyncio.Event()

        async def small_client(steps):
            while not stop.is_set():
                await batcher.submit("stream", ["a" * steps])  # finishing at staggered times

        clients = [asyncio.ensure_future(small_client(3 + i)) for i in range(6)]
        await asyncio.sleep(0.05)
        before = batcher.jobs
        big = await asyncio.wait_for(batcher.submit("stream", ["ab"] * 8), 5)
        overtaken = batcher.jobs - before - 1  # small jobs answered while the big one waited
        stop.set()
        await asyncio.gather(*clients)
        await batcher.stop()
        return big, overtaken

    big, overtaken = asyncio.run(scenario())
    assert big == ["AB"] * 8
    assert overtaken <= 6, overtaken  # only those already decoding when it came


def chunks(total: int):
    for _ in range(total // 65536):
        yield b" " * 65536


TOO_BIG = json.dumps({"text": ["x" * (1 << 20)]}).encode()
ABUSE = [
    ("a body over 1 MB", "/v1/translate", TOO_BIG, {"Content-Type": "application/json"}, 413, "body"),
    ("1 MB streamed", "/v1/translate", chunks(2 << 20),
     {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, 413, "body"),
    ("10,000 tokens", "/v1/translate", {"text": ["7 " * 10000]}, {}, 422, "text[0]"),
    ("malformed JSON", "/v1/translate", b'{"text": ["a"', {"Content-Type": "application/json"}, 400, "body"),
    ("not JSON at all", "/v1/translate", b"text=a", {"Content-Type": "text/plain"}, 415, "body"),
    ("unknown key", "/v1/translate", {"text": ["a"], "beem": 3}, {}, 422, "beem"),
    ("a string for a list", "/v1/translate", {"text": "a"}, {}, 422, "text"),
    ("a string for a number", "/v1/translate", {"text": ["a"], "beam": "3"}, {}, 422, "beam"),
    ("a list item of a wrong type", "/v1/translate", {"text": ["a", 3]}, {}, 422, "text[1]"),
    ("an empty sentence", "/v1/translate", {"text": ["a", "  "]}, {}, 422, "text[1]"),
    ("no sentences", "/v1/translate", {"text": []}, {}, 422, "text"),
    ("too many sentences", "/v1/translate", {"text": ["a"] * 65}, {}, 422, "text"),
    ("a huge beam", "/v1/translate", {"text": ["a"], "beam": 10**6}, {}, 422, "beam"),
    ("an unknown model", "/v1/translate", {"model": "nope", "text": ["a"]}, {}, 404, "model"),
    ("a captioner asked to translate", "/v1/translate", {"model": "tiny-shapes", "text": ["a"]}, {}, 422, "model"),
    ("a missing field", "/v1/attention", {"model": "tiny"}, {}, 422, "text"),
    ("an unknown kind", "/v1/attention", {"model": "tiny", "text": "a", "kind": "self"}, {}, 422, "kind"),
    ("a layer out of range", "/v1/attention", {"model": "tiny", "text": "a", "layer": 4}, {}, 422, "layer"),
    ("a kind the model lacks", "/v1/attention", {"model": "tiny", "text": "a", "kind": "decoder-self"}, {},
     422, "kind"),
    ("a PNG bomb", "/v1/caption", *multipart({"model": "tiny-shapes"}, {"image": ("b.png", png(10**5, 10**5))}),
     413, "image"),
    ("a large picture", "/v1/caption", *multipart({"model": "tiny-shapes"}, {"image": ("b.png", png(8000, 8000))}),
     413, "image"),
    ("a text file", "/v1/caption", *multipart({"model": "tiny-shapes"}, {"image": ("a.txt", b"hello")}), 415,
     "image"),
    ("no image", "/v1/caption", *multipart({"model": "tiny-shapes"}, {}), 422, "image"),
    ("an image for a translator", "/v1/caption", *multipart({"model": "tiny"}, {"image": ("a.png", png(8, 8))}),
     422, "model"),
]


@pytest.mark.parametrize("what, path, body, headers, status, field", ABUSE, ids=[a[0] for a in ABUSE])
def test_bad_requests_get_a_quick_4xx_naming_the_field(server, what, path, body, headers, status, field):
    if isinstance(body, dict):
        body = {"model": "tiny", **body}  # several models are served
    started = time.monotonic()
    got, answer = call(server, "POST", path, body, headers)
    took = time.monotonic() - started
    assert (got, answer["field"]) == (status, field), answer
    assert answer["error"].startswith(f"{field}: ") and "Traceback" not in answer["error"]
    assert took < 0.5, f"{what} took {took:.2f} s"
    got, answer = call(server, "POST", "/v1/translate", {"model": "tiny", "text": ["7/4/98"]})
    assert got == 200, answer  # the server still answers


def test_the_api_key_is_checked_on_every_request(models):
    tiny = {"tiny": models["tiny"]}
    with live_server(create_app(tiny, api_key="s3cret")) as where:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "s3cret"}):
            status, answer = call(where, "POST", "/v1/translate", {"text": ["7/4/98"]}, headers)
            assert (status, answer["field"]) == (401, "api_key"), headers
            assert call(where, "GET", "/health", headers=headers)[0] == 401
        for headers in ({"X-API-Key": "s3cret"}, {"Authorization": "Bearer s3cret"}):
            assert call(where, "POST", "/v1/translate", {"text": ["7/4/98"]}, headers)[0] == 200
        import http.client

        connection = http.client.HTTPConnection(*where, timeout=10)
        connection.request("GET", "/")  # the page itself holds no data; it asks for the key
        assert connection.getresponse().status == 200


def test_serving_beyond_loopback_needs_a_key(trained_run, monkeypatch):
    monkeypatch.delenv("S2S_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", str(trained_run), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --host 0.0.0.0 opens the service to other machines: give --api-key KEY (or set "
        "S2S_API_KEY)"]
    monkeypatch.setenv("S2S_API_KEY", "k")  # with a key it goes on (and stops at the missing run)
    result = CliRunner().invoke(cli, ["serve", str(trained_run / "missing"), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_the_serve_command_with_worker_processes(trained_run, tmp_path):
    port = free_port()
    env = {**os.environ, "S2S_API_KEY": "k2"}
    process = subprocess.Popen([sys.executable, "-m", "s2s", "serve", str(trained_run), "--port",
                                str(port), "--workers", "2", "--device", "cpu"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                status, _ = call(("127.0.0.1", port), "GET", "/health", headers={"X-API-Key": "k2"})
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.3)
        status, answer = call(("127.0.0.1", port), "POST", "/v1/translate", {"text": ["7/4/98"]},
                              {"X-API-Key": "k2"})
        assert status == 200 and answer["model"] == "tiny"
        assert call(("127.0.0.1", port), "GET", "/v1/models")[0] == 401
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"serving tiny at http://127.0.0.1:{port}/ with 2 worker processes" in output
