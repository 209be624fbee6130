"""The model server: FastAPI on uvicorn, one model, dynamic batching, and the web page at `/`.

API: `POST /predict` (raw image bytes, or multipart/form-data with one or more files; `?topk=`, `?cam=`)
-> JSON with the top-k classes per file, the model, its precision, the latency and the size of the batch
the images ran in; `GET /health`;
`GET /info` (model, classes, preprocessing, limits); the OpenAPI schema at `/openapi.json`, docs at
`/docs`. A bad upload is answered with a JSON `{"error": ...}` and the status that names the problem
(400 bad image / too many files, 413 too large, 415 wrong content type); the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import torch
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from ..data.images import BadImageError, decode_image, open_image_bytes
from .batching import DynamicBatcher
from .predictor import Predictor
from .uploads import MULTIPART, Upload, UploadError, read_body, split_uploads

log = logging.getLogger("inceptionnet.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServerConfig:
    """Serving limits and batching: at most `max_batch` images per forward pass, gathered for up to
    `max_wait_ms`; `batching` False runs each request alone. Uploads over `max_upload_bytes` -> 413,
    more than `max_files` files in one request -> 400."""

    max_batch: int = 8
    max_wait_ms: float = 5.0
    batching: bool = True
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 16


_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    MULTIPART: {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def decode_uploads(predictor: Predictor, uploads: list[Upload]) -> torch.Tensor:
    """Decode every upload in memory and preprocess it: (n, C, S, S); a bad one is a 400 naming the file."""
    tensors = []
    for upload in uploads:
        try:
            tensors.append(predictor.preprocess(decode_image(open_image_bytes(upload.data, upload.name))))
        except BadImageError as e:
            raise UploadError(400, f"{upload.name}: {e.reason}") from None
    return torch.stack(tensors)


def create_app(source: str | os.PathLike, config: ServerConfig | None = None) -> FastAPI:
    """The ASGI app serving the checkpoint or ONNX file `source` (loaded now) with `config`."""
    config = config or ServerConfig()
    predictor = Predictor(source)
    batcher = DynamicBatcher(predictor.probabilities, config.max_batch, config.max_wait_ms / 1000, config.batching)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(title="inceptionnet model server", version="1", lifespan=lifespan,
                  description=f"{predictor.name} ({predictor.member.precision.name}) from {predictor.source}")

    @app.exception_handler(UploadError)
    async def refuse(request: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.exception("request to %s failed", request.url.path)
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    @app.get("/health", summary="liveness")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info", summary="the model, its classes and preprocessing, and the server's limits")
    async def info() -> dict:
        return {**predictor.info(), "server": asdict(config)}

    @app.post("/predict", summary="top-k classes of one or more images", openapi_extra=_PREDICT_BODY)
    async def predict(request: Request, topk: int = Query(5, ge=1, le=1000),
                      cam: bool = Query(False, description="add a Grad-CAM overlay (PyTorch checkpoints only)")):
        start = time.perf_counter()
        with batcher.expecting():
            body = await read_body(request.stream(), request.headers.get("content-length"), config.max_upload_bytes)
            uploads = split_uploads(request.headers.get("content-type"), body, config.max_files)
            images = await run_in_threadpool(decode_uploads, predictor, uploads)
        probs, batch_size = await batcher.submit(images)
        results = [{"file": u.name, "predictions": predictor.top(p, topk)} for u, p in zip(uploads, probs, strict=True)]
        response = {"model": predictor.name, "precision": predictor.member.precision.name, "results": results,
                    "batch_size": batch_size}
        if cam and predictor.cam_available:
            for result, image in zip(results, images, strict=True):
                result["cam"] = await batcher.call(predictor.cam_overlay, image)
        elif cam:
            response["cam_unavailable"] = "Grad-CAM needs a PyTorch checkpoint; this model is an ONNX file"
        response["latency_ms"] = 1000 * (time.perf_counter() - start)
        return response

    app.mount("/", StaticFiles(packages=[("inceptionnet.deploy", "static")], html=True), name="page")
    return app


def serve(source: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, config: ServerConfig | None = None,
          log_level: str = "info") -> None:
    """Serve `source` on host:port until interrupted; a host other than loopback is logged as a warning."""
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(message)s")
    if host not in LOOPBACK:
        log.warning("listening on %s: the server is reachable from other machines, and it has no authentication",
                    host)
    app = create_app(source, config)
    log.info("serving %s; page at http://%s:%d/", app.description, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
