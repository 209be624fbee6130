"""`inceptionnet serve` as a real subprocess on a free loopback port, through a real HTTP client: the API,
its answers against the library's, bad uploads (each answered with a named error, the next good request
still right), dynamic batching under concurrent clients, and an int8 ONNX model without batching."""

import asyncio

import httpx
import pytest

from deploy_models import CLASSES, make_checkpoint, png_bytes, png_header_claiming
from image_folders import make_image_folder
from inceptionnet.deploy.quantize import quantize
from inceptionnet.predict import predict
from serving import running_server

pytestmark = pytest.mark.slow

MAX_FILES = 3
LIMIT_MB = 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "m.pt")


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """(URL, the server's TMPDIR) of a checkpoint server with batching (50 ms window) and small limits."""
    root = tmp_path_factory.mktemp("server")
    (root / "tmp").mkdir()
    with running_server(checkpoint, "--max-files", str(MAX_FILES), "--max-upload-mb", str(LIMIT_MB),
                        "--max-batch", "8", "--max-wait-ms", "50", log=root / "log.txt",
                        env={"TMPDIR": str(root / "tmp")}) as (url, _):
        yield url, root / "tmp"


@pytest.fixture(scope="module")
def expected(checkpoint, tmp_path_factory):
    """The library's top-3 for the PNG of `png_bytes()` (the reference the server must match)."""
    path = tmp_path_factory.mktemp("img") / "red.png"
    path.write_bytes(png_bytes())
    return predict(checkpoint, path, topk=3, optimize=False)[0]["predictions"]


def assert_matches(predictions, expected):
    assert [p["class"] for p in predictions] == [p["class"] for p in expected]
    for got, want in zip(predictions, expected, strict=True):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-4)


def test_health_info_and_openapi(server):
    url, _ = server
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    info = httpx.get(f"{url}/info").json()
    assert info["classes"] == CLASSES and info["model"] == "inception_cifar" and info["precision"] == "fp32"
    assert info["preprocessing"]["input_size"] == 32 and info["cam_available"] is True
    assert info["server"]["max_files"] == MAX_FILES
    body = httpx.get(f"{url}/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data"} <= set(body)
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'id="top5"' in page.text and "app.js" in page.text


def test_raw_and_multipart_uploads_match_the_library(server, expected):
    url, _ = server
    raw = httpx.post(f"{url}/predict?topk=3", content=png_bytes(), headers={"content-type": "image/png"}).json()
    assert raw["model"] == "inception_cifar" and raw["precision"] == "fp32" and raw["latency_ms"] > 0
    assert_matches(raw["results"][0]["predictions"], expected)
    files = [("files", ("red.png", png_bytes(), "image/png")), ("files", ("blue.png", png_bytes(colour=(0, 0, 255)),
                                                                           "image/png"))]
    both = httpx.post(f"{url}/predict?topk=3", files=files).json()
    assert [r["file"] for r in both["results"]] == ["red.png", "blue.png"]
    assert_matches(both["results"][0]["predictions"], expected)


def test_cam_overlay_is_a_png(server):
    url, _ = server
    answer = httpx.post(f"{url}/predict?cam=true", content=png_bytes(), headers={"content-type": "image/png"}).json()
    assert answer["results"][0]["cam"].startswith("data:image/png;base64,")


BAD_UPLOADS = {
    "not an image": ({"content": b"hello, I am text", "headers": {"content-type": "image/png"}}, 400, "not an image"),
    "truncated": ({"content": png_bytes((64, 64))[:60], "headers": {"content-type": "image/png"}}, 400, "truncated"),
    "zero bytes": ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "empty"),
    "decompression bomb": ({"content": png_header_claiming(20000, 20000), "headers": {"content-type": "image/png"}},
                           400, "decompression bomb"),
    "over the size limit": ({"content": b"\0" * (LIMIT_MB * 2**20 + 1), "headers": {"content-type": "image/png"}},
                            413, "upload limit"),
    "wrong content type": ({"content": png_bytes(), "headers": {"content-type": "text/plain"}}, 415, "content type"),
    "too many files": ({"files": [("files", (f"{i}.png", png_bytes(), "image/png")) for i in range(MAX_FILES + 1)]},
                       400, f"the limit is {MAX_FILES}"),
    "one bad file among good": ({"files": [("files", ("good.png", png_bytes(), "image/png")),
                                           ("files", ("bad.png", b"junk", "image/png"))]}, 400, "bad.png"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_named_and_the_next_request_still_answers(server, expected, case):
    url, _ = server
    request, status, words = BAD_UPLOADS[case]
    answer = httpx.post(f"{url}/predict?topk=3", **request)
    assert answer.status_code == status
    assert words in answer.json()["error"]
    good = httpx.post(f"{url}/predict?topk=3", content=png_bytes(), headers={"content-type": "image/png"})
    assert good.status_code == 200
    assert_matches(good.json()["results"][0]["predictions"], expected)


def test_large_multipart_upload_never_touches_the_disk(server, tmp_path):
    url, server_tmp = server
    noise = make_image_folder(tmp_path, classes=1, per_class=1, size=900) / "class0" / "0.png"
    assert noise.stat().st_size > 2**20  # python-multipart spools parts over 1 MiB to a temporary file by default
    answer = httpx.post(f"{url}/predict", files=[("files", ("noise.png", noise.read_bytes(), "image/png"))])
    assert answer.status_code == 200 and len(answer.json()["results"]) == 1
    assert list(server_tmp.iterdir()) == []


async def _concurrent(url: str, clients: int) -> list[dict]:
    async with httpx.AsyncClient(timeout=60) as client:
        replies = await asyncio.gather(*[client.post(f"{url}/predict?topk=3", content=png_bytes(),
                                                     headers={"content-type": "image/png"}) for _ in range(clients)])
    assert [r.status_code for r in replies] == [200] * clients
    return [r.json() for r in replies]


def test_concurrent_requests_share_batches(server, expected):
    url, _ = server
    answers = asyncio.run(_concurrent(url, 8))
    for answer in answers:
        assert_matches(answer["results"][0]["predictions"], expected)
    assert max(a["batch_size"] for a in answers) > 1
    assert all(a["batch_size"] <= 8 for a in answers)


def test_int8_onnx_server_without_batching_on_all_interfaces(checkpoint, tmp_path):
    folder = make_image_folder(tmp_path / "calib", classes=3, per_class=4, size=40)
    int8 = quantize(checkpoint, folder, tmp_path / "m.int8.onnx", num_images=12)["path"]
    with running_server(int8, "--no-batching", host="0.0.0.0", log=tmp_path / "log.txt") as (url, _):
        info = httpx.get(f"{url}/info").json()
        assert info["precision"] == "int8" and info["runtime"] == "onnxruntime" and info["cam_available"] is False
        answers = asyncio.run(_concurrent(url, 6))
        assert {a["batch_size"] for a in answers} == {1} and {a["precision"] for a in answers} == {"int8"}
        cam = httpx.post(f"{url}/predict?cam=true", content=png_bytes(), headers={"content-type": "image/png"}).json()
        assert "ONNX" in cam["cam_unavailable"] and "cam" not in cam["results"][0]
    assert "reachable from other machines" in (tmp_path / "log.txt").read_text()


def test_serve_refuses_bad_options_and_missing_models(tmp_path, capsys):
    from inceptionnet.cli import main

    assert main(["serve", str(tmp_path / "m.pt"), "--max-batch", "0"]) == 2
    assert "--max-batch" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
