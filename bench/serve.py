"""The model server under load: N concurrent clients (1, 8, 32) posting one image each, back to back, for a
fixed time against loopback, with dynamic batching on and off. Reports requests/s, p50/p95/p99 latency,
errors (must be 0) and the server's resident memory (RSS) after warm-up and at the end (must not grow).

    python bench/serve.py runs/demo/best.pt --seconds 10 --append bench/RESULTS.md

The server is `inceptionnet serve` in its own process; the clients run in this one (asyncio + httpx) on
the same machine, so they share its cores with the server. Run by hand (never from unit tests).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

from common import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serving import running_server  # noqa: E402


def test_image(size: int = 160) -> bytes:
    """A JPEG of a red circle on a light background (decoded and resized by the server, as a photo would be)."""
    picture = Image.new("RGB", (size, size), (235, 225, 200))
    ImageDraw.Draw(picture).ellipse((size // 5, size // 6, 4 * size // 5, 5 * size // 6), fill=(200, 40, 40))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def load(url: str, clients: int, seconds: float, image: bytes) -> dict:
    """`clients` loops posting `image` until `seconds` pass: requests/s, latency percentiles (ms), errors."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client(session: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                reply = await session.post(f"{url}/predict", content=image, headers={"content-type": "image/jpeg"})
                problem = None if reply.status_code == 200 else f"HTTP {reply.status_code}: {reply.text[:200]}"
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
            if problem is None:
                latencies.append(1000 * (time.perf_counter() - start))
            else:
                errors.append(problem)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, limits=limits) as session:
        await asyncio.gather(*[client(session) for _ in range(clients)])
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": cuts[49], "p95": cuts[94],
            "p99": cuts[98], "errors": len(errors), "first_errors": errors[:3]}


def run_mode(model: Path, batching: bool, clients: list[int], seconds: float, image: bytes, log: Path) -> list[str]:
    """Table rows for one server (batching on or off), started fresh for this mode."""
    flags = ["--log-level", "warning"] + ([] if batching else ["--no-batching"])
    rows = []
    with running_server(model, *flags, log=log) as (url, proc):
        # Warm-up at the highest concurrency: thread pools, and the allocator's pools for the largest batches.
        asyncio.run(load(url, max(clients), 3.0, image))
        start_rss = rss_mib(proc.pid)
        for n in clients:
            r = asyncio.run(load(url, n, seconds, image))
            rows.append(f"| {'on' if batching else 'off'} | {n} | {r['requests']} | {r['rps']:.1f} | "
                        f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | "
                        f"{start_rss:.0f} -> {rss_mib(proc.pid):.0f} |")
            print(rows[-1], *r["first_errors"], sep="\n", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="checkpoint or .onnx to serve")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="load time per client count")
    parser.add_argument("--append", type=Path, default=None, help="append the section to this markdown file")
    args = parser.parse_args()
    image = test_image()
    header = ("| batching | clients | requests | requests/s | p50 ms | p95 ms | p99 ms | errors | server RSS MiB "
              "(after warm-up -> after this load) |\n|---|---|---|---|---|---|---|---|---|")
    print(header)
    rows = []
    for batching in (True, False):
        log = Path(f"/tmp/bench-serve-batching-{batching}.log")
        rows += run_mode(args.model, batching, args.clients, args.seconds, image, log)
    section = (f"\n## Model server under load (`python bench/serve.py {args.model} --seconds {args.seconds:g}`, "
               f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)\n\n"
               f"CPU: {cpu_model()}; server and clients on the same machine. One {len(image)}-byte JPEG per request; "
               f"batching = the defaults, `--max-batch 8 --max-wait-ms 5`.\n\n{header}\n" + "\n".join(rows) + "\n")
    if args.append:
        with open(args.append, "a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
