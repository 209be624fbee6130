"""`inceptionnet serve`: an HTTP model server with a web page, for a checkpoint or an ONNX file."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="serve a checkpoint or .onnx model over HTTP, with a web page at /",
                       description="POST /predict (image bytes or multipart files) -> top-k JSON; GET /health, "
                                   "/info, /docs; the page at / classifies a chosen or dropped image.")
    p.add_argument("model", metavar="CKPT_OR_ONNX", help="checkpoint, run folder, .safetensors from export / convert, "
                   "or .onnx from export / quantize")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback; 0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--max-batch", type=int, default=8, help="most images per forward pass (dynamic batching)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its batch")
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="run every request alone (for comparison)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body; larger ones get 413")
    p.add_argument("--max-files", type=int, default=16, help="most files in one request; more get 400")
    p.add_argument("--log-level", default="info", help="debug (with access log), info, warning, error")
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy.server import ServerConfig, serve
    from ..errors import ConfigError

    if args.max_batch < 1 or args.max_files < 1 or args.max_upload_mb <= 0 or args.max_wait_ms < 0:
        raise ConfigError("--max-batch and --max-files must be at least 1, --max-upload-mb positive, "
                          "--max-wait-ms not negative")
    config = ServerConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, batching=args.batching,
                          max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_files=args.max_files)
    serve(args.model, host=args.host, port=args.port, config=config, log_level=args.log_level)
    return 0
