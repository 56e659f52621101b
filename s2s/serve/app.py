"""The routes of `s2s serve`, a thin layer over the Python API (`s2s.api.Model`).

    POST /v1/translate   sentences -> n-best translations, scores, optional Pharaoh alignments
    POST /v1/attention   a sentence (and optionally a forced target) -> the inspect JSON record
    POST /v1/caption     an uploaded image -> captions, each word's attention over regions
    GET  /v1/models      what is served;  GET /health;  GET /openapi.json;  GET / the explorer

Every error is a JSON body {"error": "...", "field": "..."} with a 4xx status that says whose
fault it is (400 malformed, 401 key, 404 unknown model, 413 too large, 415 not an image, 422
invalid); a bug gives a 500 without a traceback (that goes to the server's log).
"""

import json
import logging
import os
import socket
import sys
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Optional

import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from s2s import __version__
from s2s.api import InputError, Model, load
from s2s.checkpoint import resolve_checkpoint
from s2s.errors import UserError
from s2s.run import load_run_recipe
from s2s.serve.batching import Batcher
from s2s.serve.guards import ApiKey, BodyLimit, Refused, decode_image, is_loopback
from s2s.serve.schemas import (MAX_BEAM, AttentionRecord, AttentionRequest, CaptionResponse,
                               Error, ModelList, TranslateRequest, TranslateResponse)

STATIC = Path(__file__).parent / "static"
CAPTION_ROUTE = "/v1/caption"
API_KEY_ENV, CONFIG_ENV = "S2S_API_KEY", "S2S_SERVE_CONFIG"
ERRORS = {status: {"model": Error} for status in (400, 401, 404, 413, 415, 422)}
log = logging.getLogger("s2s.serve")


def model_names(run_dirs: list) -> list[str]:
    """Each run directory's name; a repeated name gets "-2", "-3", ... in argument order."""
    names: list[str] = []
    for run_dir in run_dirs:
        base = Path(run_dir).resolve().name
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def load_models(run_dirs: list, checkpoint: str = "best", device: str = "auto",
                quantize: str = "none") -> dict[str, Model]:
    return {name: load(run_dir, checkpoint, device, name, quantize)
            for name, run_dir in zip(model_names(run_dirs), run_dirs)}


def run_batch(model: Model, key: tuple, items: list) -> list:
    """One batch of one kind of work, on the model's inference thread."""
    work, *options = key
    if work == "translate":
        return model.translate(items, *options)
    if work == "attention":
        return model.attentions([text for text, _ in items], [t for _, t in items], *options)
    assert work == "caption", work
    return model.caption(items, *options, attention=True)


class StreamedTranslation:
    """Plain translation requests (no alignments) decode with continuous batching, through the
    model's translation session (`Model.translation_session`)."""

    def __init__(self, session):
        self.session = session

    def accepts(self, key: tuple) -> bool:
        work, *options = key
        return work == "translate" and not options[-1]  # alignments: a pass over whole batches

    def add(self, key: tuple, items: list, tags: list) -> list:
        _, beam, n_best, length_penalty, _ = key
        return self.session.add(items, tags, beam, n_best, length_penalty)

    def step(self) -> list:
        return self.session.step()

    def reset(self) -> None:
        self.session.reset()

    def __len__(self) -> int:
        return len(self.session)


def streamed_translation(model: Model) -> StreamedTranslation | None:
    session = model.translation_session() if model.task == "translation" else None
    return StreamedTranslation(session) if session is not None else None


class Service:
    """The models being served, each with its inference worker."""

    def __init__(self, models: dict[str, Model], max_batch: int | None = None,
                 window: float = 0.005):
        self.models = models
        self.batchers = {name: Batcher(name, partial(run_batch, model),
                                       max_batch or model.run.recipe.decode.batch_size, window,
                                       stream=streamed_translation(model))
                         for name, model in models.items()}

    def model(self, name: str | None) -> Model:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise InputError("model", f"several models are served; give one of {', '.join(self.models)}")
        if name not in self.models:
            raise Refused(404, "model", f"unknown model {name!r}; serving {', '.join(self.models)}")
        return self.models[name]

    async def submit(self, model: Model, key: tuple, items: list) -> list:
        return await self.batchers[model.name].submit(key, items)


def error(status: int, message: str, field: str | None = None, headers=None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def field_name(loc: tuple) -> str:
    """("body", "text", 2) -> "text[2]"; union member tags ("int", "literal[...]") are dropped."""
    parts = [p for p in loc if p != "body"]
    if not parts:
        return "body"
    return str(parts[0]) + "".join(f"[{p}]" for p in parts[1:] if isinstance(p, int))


async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    first = problems[0]
    if first["loc"] == ("body",) and "json" not in request.headers.get("content-type", ""):
        return error(415, "body: send JSON, with the header Content-Type: application/json", "body")
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", first["msg"])
        return error(400, f"body: malformed JSON ({reason})", "body")
    field = field_name(first["loc"])
    said = [p["msg"] for p in problems if field_name(p["loc"]) == field]
    return error(422, f"{field}: {', or '.join(dict.fromkeys(said))}", field)


async def on_input_error(request: Request, exc: InputError) -> JSONResponse:
    return error(getattr(exc, "status", 422), str(exc), exc.field)


async def on_user_error(request: Request, exc: UserError) -> JSONResponse:
    return error(422, str(exc))


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    field = "body" if exc.status_code == 413 else None
    return error(exc.status_code, str(exc.detail), field, getattr(exc, "headers", None))


async def on_bug(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def create_app(models: dict[str, Model], api_key: str | None = None, max_batch: int | None = None,
               window: float = 0.005) -> FastAPI:
    """The service for already loaded models (tests and `s2s serve` both start here)."""
    service = Service(models, max_batch, window)

    @asynccontextmanager
    async def lifespan(app):
        for batcher in service.batchers.values():
            batcher.start()
        yield
        for batcher in service.batchers.values():
            await batcher.stop()

    app = FastAPI(title="s2s", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Translation, attention and captions of s2s runs.")
    app.state.service = service
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(InputError, on_input_error)
    app.add_exception_handler(UserError, on_user_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_bug)
    app.add_middleware(BodyLimit, uploads=(CAPTION_ROUTE,))
    if api_key:
        app.add_middleware(ApiKey, key=api_key)  # added last: runs first
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def explorer():
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": {name: {"batches": b.batches, "jobs": b.jobs}
                                           for name, b in service.batchers.items()}}

    @app.get("/v1/models", response_model=ModelList)
    async def models_served():
        return {"models": [model.info() for model in service.models.values()]}

    @app.post("/v1/translate", response_model=TranslateResponse, response_model_exclude_none=True,
              responses=ERRORS)
    async def translate(req: TranslateRequest):
        """Translate sentences: n-best hypotheses with scores, and word alignments if asked."""
        model = service.model(req.model)
        model.check_texts(req.text)
        key = ("translate", req.beam, req.n_best, req.length_penalty, req.align)
        return {"model": model.name, "translations": await service.submit(model, key, req.text)}

    @app.post("/v1/attention", response_model=AttentionRecord, responses=ERRORS)
    async def attention(req: AttentionRequest):
        """The attention record of a sentence and its translation (or `target`), as
        `s2s inspect RUN TEXT -o x.json` writes it."""
        model = service.model(req.model)
        try:
            model.check_attention([req.text], [req.target], req.kind, req.layer, req.head, req.words)
        except InputError as e:
            raise InputError(e.field.replace("text[0]", "text"), e.message) from None
        key = ("attention", req.kind, req.layer, req.head, req.words, req.beam, req.length_penalty)
        record = (await service.submit(model, key, [(req.text, req.target)]))[0]
        return JSONResponse(record)

    @app.post(CAPTION_ROUTE, response_model=CaptionResponse, responses=ERRORS)
    async def caption(image: UploadFile = File(description="A PNG, JPEG, GIF, BMP or WebP image."),
                      model: Optional[str] = Form(None),
                      beam: Optional[int] = Form(None, ge=1, le=MAX_BEAM),
                      n_best: int = Form(1, ge=1, le=MAX_BEAM),
                      length_penalty: Optional[float] = Form(None, ge=0.0, le=10.0)):
        """Caption an uploaded image; each hypothesis carries its attention over regions."""
        chosen = service.model(model)
        chosen.require("captioning")
        picture = await run_in_threadpool(decode_image, await image.read())
        result = (await service.submit(chosen, ("caption", beam, n_best, length_penalty),
                                       [picture]))[0]
        return JSONResponse({"model": chosen.name, **result})

    return app


def app_from_environment() -> FastAPI:
    """The app of one `--workers` process: settings from the environment `serve` prepared."""
    config = json.loads(os.environ[CONFIG_ENV])
    models = load_models(config["runs"], config["checkpoint"], config["device"], config["quantize"])
    return create_app(models, os.environ.get(API_KEY_ENV), config["max_batch"], config["window"])


def check_port(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(run_dirs: list, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          api_key: str | None = None, device: str = "auto", checkpoint: str = "best",
          max_batch: int | None = None, window_ms: float = 5.0, quantize: str = "none",
          say=print) -> None:
    """Serve `run_dirs` until interrupted (`s2s serve`)."""
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(host) and not api_key:
        raise UserError(f"--host {host} opens the service to other machines: give --api-key KEY "
                        f"(or set {API_KEY_ENV})")
    for run_dir in run_dirs:  # fail here, in one line, not in every worker
        load_run_recipe(run_dir)
        resolve_checkpoint(Path(run_dir), checkpoint)
    check_port(host, port)
    names = model_names(run_dirs)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    settings = dict(host=host, port=port, log_level="warning", access_log=False)
    if workers == 1:
        app = create_app(load_models(run_dirs, checkpoint, device, quantize), api_key, max_batch,
                         window_ms / 1000)
        say(f"serving {', '.join(names)} at {where} (the attention explorer; API under /v1, "
            "schema at /openapi.json); Ctrl-C stops")
        uvicorn.run(app, **settings)
        return
    os.environ[CONFIG_ENV] = json.dumps({"runs": [str(r) for r in run_dirs], "device": device,
                                         "checkpoint": checkpoint, "quantize": quantize,
                                         "max_batch": max_batch,
                                         "window": window_ms / 1000})
    if api_key:
        os.environ[API_KEY_ENV] = api_key
    say(f"serving {', '.join(names)} at {where} with {workers} worker processes; Ctrl-C stops")
    sys.stdout.flush()
    uvicorn.run("s2s.serve.app:app_from_environment", factory=True, workers=workers, **settings)
