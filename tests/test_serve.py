"""`artstyle serve`: the API against the real app (in-process TestClient) and the real server
(a subprocess on 127.0.0.1), with the shipped model, real images, the bad-input corpus, hostile
clients and a short load test. The 2,000-request load test is bench/bench_serve.py.
Needs the serve extra; only the Grad-CAM tests need torch (the train extra)."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'artstyle[serve]'")
httpx = pytest.importorskip("httpx", reason="needs the test extra: pip install 'artstyle[test]'")

import artstyle  # noqa: E402
from artstyle.cli import main  # noqa: E402
from artstyle.serve import ServeSettings, create_app  # noqa: E402
from corpus import EXPECTED_REASON, expected_invalid, png_claiming_size  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from predict_support import ASSETS, CLASSES, copy_model, video_frames, write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOADGEN = REPO / "bench" / "loadgen.py"
MB = 1024 * 1024
# Grad-CAM runs on the PyTorch weights: explanations are available where torch is installed.
HAS_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "timm", "safetensors"))


def needs_torch():
    pytest.importorskip("torch", reason="Grad-CAM needs the train extra: pip install 'artstyle[train]'")
    pytest.importorskip("timm", reason="Grad-CAM needs the train extra: pip install 'artstyle[train]'")


@pytest.fixture(scope="module")
def classifier(shipped):
    return artstyle.load(shipped.onnx)


@pytest.fixture(scope="module")
def client(shipped, classifier):
    with TestClient(create_app(ServeSettings(model=str(shipped.onnx)), classifier)) as c:
        yield c


@pytest.fixture(scope="module")
def small_client(shipped, classifier):
    """Tight limits, so that the limits themselves can be tested cheaply."""
    settings = ServeSettings(model=str(shipped.onnx), max_upload_mb=1, max_images=4, max_megapixels=1)
    with TestClient(create_app(settings, classifier)) as c:
        yield c


def multipart(*paths: Path) -> list:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def assert_error(response: httpx.Response, status: int, code: str | None = None, words: str = "") -> dict:
    """An error status with the JSON error shape, its code, and the reason in words."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"error", "detail"} and body["detail"]
    if code:
        assert body["error"] == code
    assert words.lower() in body["detail"].lower(), body["detail"]
    return body


# ----------------------------------------------------------------------------- the API


def test_healthz_reports_model_limits_and_explain(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["model"] == "model.onnx" and health["classes"] == CLASSES
    assert health["limits"] == {"max_upload_bytes": 10 * MB, "max_images": 32, "max_pixels": 50_000_000,
                                "request_timeout_s": 30.0}
    assert health["explain"]["available"] is HAS_TORCH  # the weights are beside the model
    assert health["batching"]["max_batch"] == ServeSettings().max_batch


def test_predict_several_images_matches_the_predictor(client, classifier, shipped):
    paths = shipped.images[:6]
    response = client.post("/v1/predict", files=multipart(*paths))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "model.onnx" and body["classes"] == CLASSES and body["explain"] is None
    assert [r["name"] for r in body["results"]] == [p.name for p in paths]
    for path, result in zip(paths, body["results"]):
        expected = classifier.predict(path)
        assert result["error"] is None and result["heatmap_png"] is None
        assert result["label"] == expected.label and list(result["probabilities"]) == CLASSES
        assert result["probabilities"] == pytest.approx(expected.probs, abs=1e-5)
        assert result["confidence"] == max(result["probabilities"].values())
        assert (result["width"], result["height"]) == Image.open(path).size


def test_raw_body_is_one_image(client, shipped):
    path = shipped.images[1]
    by_form = client.post("/v1/predict", files=multipart(path)).json()["results"][0]
    for content_type in ("image/png", "application/octet-stream", None):
        headers = {"Content-Type": content_type} if content_type else {}
        raw = client.post("/v1/predict", content=path.read_bytes(), headers=headers)
        assert raw.status_code == 200
        result = raw.json()["results"][0]
        assert result["name"] == "image" and result["probabilities"] == pytest.approx(by_form["probabilities"])


def test_real_dataset_images(client, classifier, shared_data):
    paths = [sorted((shared_data / c).glob("*.jpg"))[5] for c in CLASSES]
    results = client.post("/v1/predict", files=multipart(*paths)).json()["results"]
    assert [r["label"] for r in results] == [classifier.predict(p).label for p in paths]


def test_every_bad_file_alone_is_a_422_naming_the_reason(client, bad_corpus):
    for name in sorted(expected_invalid(bad_corpus) - {"symlink_loop", "broken_symlink", "unreadable"}):
        data = bad_corpus[name].read_bytes()
        as_form = client.post("/v1/predict", files=[("files", (bad_corpus[name].name, data, "image/jpeg"))])
        body = assert_error(as_form, 422, "unprocessable_image", EXPECTED_REASON[name])
        assert body["results"][0]["name"] == bad_corpus[name].name
        if data:  # an empty raw body is 'no image at all', tested below
            assert_error(client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"}),
                         422, "unprocessable_image", EXPECTED_REASON[name])


def test_awkward_but_valid_files_are_classified(client, bad_corpus):
    names = ["cmyk_jpeg", "png_16bit", "palette_transparent_png", "animated_gif", "webp_transparent",
             "exif_rotated_jpeg", "one_pixel", "grayscale_png", "unicode_space_name"]
    response = client.post("/v1/predict", files=multipart(*(bad_corpus[n] for n in names)))
    assert response.status_code == 200
    results = dict(zip(names, response.json()["results"]))
    assert all(r["label"] in CLASSES and r["error"] is None for r in results.values())
    assert results["unicode_space_name"]["name"] == bad_corpus["unicode_space_name"].name
    assert (results["exif_rotated_jpeg"]["width"], results["exif_rotated_jpeg"]["height"]) == (40, 80)  # upright


def test_bad_images_among_good_ones_get_per_image_errors(client, shipped, bad_corpus):
    paths = [shipped.images[0], bad_corpus["truncated_jpeg"], shipped.images[1], bad_corpus["png_bomb_header"],
             bad_corpus["zero_byte"], bad_corpus["text_as_jpg"]]
    response = client.post("/v1/predict", files=multipart(*paths))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["label"] is not None for r in results] == [True, False, True, False, False, False]
    assert "truncated" in results[1]["error"] and "too large" in results[3]["error"]
    assert "empty" in results[4]["error"] and "not an image" in results[5]["error"]
    assert results[1]["probabilities"] == {} and results[1]["confidence"] is None


def test_empty_and_non_image_bodies(client):
    assert_error(client.post("/v1/predict"), 422, "unprocessable_image", "empty request body")
    assert_error(client.post("/v1/predict", content=b"", headers={"Content-Type": "image/png"}), 422, words="empty")
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        assert_error(client.post("/v1/predict", content=b"hello", headers={"Content-Type": content_type}),
                     415, "unsupported_media_type", content_type)
    text_as_png = client.post("/v1/predict", content=b"just text", headers={"Content-Type": "image/png"})
    assert_error(text_as_png, 422, "unprocessable_image", "not an image")
    assert_error(client.post("/v1/predict", files=[("file", ("a.png", b"x", "image/png"))]), 422, words="field 'files'")


def test_decompression_bomb_refused_from_its_header(small_client, client):
    bomb = png_claiming_size(30000, 30000)
    assert_error(client.post("/v1/predict", content=bomb, headers={"Content-Type": "image/png"}),
                 422, "unprocessable_image", "too large")
    assert "900 megapixels" in client.post("/v1/predict", content=bomb, headers={"Content-Type": "image/png"}).text
    # The pixel limit is configurable: 1 MP refuses a 2 MP header too.
    assert_error(small_client.post("/v1/predict", content=png_claiming_size(2000, 1000)), 422, words="too large")


def test_upload_size_limit_declared_and_streamed(small_client):
    too_big = b"\0" * (MB + 1)
    assert_error(small_client.post("/v1/predict", content=too_big, headers={"Content-Type": "image/png"}),
                 413, "payload_too_large", "limit is 1,048,576 bytes")
    assert_error(small_client.post("/v1/predict", files=[("files", ("big.png", too_big, "image/png"))]), 413)

    def chunks():  # no Content-Length: the bytes are counted as they come
        for _ in range(20):
            yield b"\0" * (128 * 1024)

    assert_error(small_client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/png"}), 413)


def test_too_many_files_in_one_request(small_client, client, shipped):
    tiny = io.BytesIO()
    Image.new("RGB", (2, 2), (9, 9, 9)).save(tiny, "PNG")
    thousand = [("files", (f"{i}.png", tiny.getvalue(), "image/png")) for i in range(1000)]
    assert_error(client.post("/v1/predict", files=thousand), 400, "bad_request", "maximum number of files is 32")
    assert_error(small_client.post("/v1/predict", files=thousand[:5]), 400, words="maximum number of files is 4")
    assert small_client.post("/v1/predict", files=thousand[:4]).status_code == 200
    assert client.post("/v1/predict", files=multipart(shipped.images[0])).status_code == 200


MALFORMED_MULTIPART = {
    "no boundary": ("multipart/form-data", b"--x\r\n\r\n"),
    "garbage": ("multipart/form-data; boundary=xyz", b"\x00\xff garbage \r\n\r\n--"),
    "wrong boundary": ("multipart/form-data; boundary=abc",
                       b"--zzz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\nx\r\n--zzz--\r\n"),
    "cut off": ("multipart/form-data; boundary=abc",
                b"--abc\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n\x89PNG"),
    "no name": ("multipart/form-data; boundary=abc",
                b"--abc\r\nContent-Disposition: form-data; filename=\"a.png\"\r\n\r\nx\r\n--abc--\r\n"),
    "bad header": ("multipart/form-data; boundary=abc", b"--abc\r\nnot a header line\r\n\r\nx\r\n--abc--\r\n"),
    "huge field": ("multipart/form-data; boundary=abc",
                   b"--abc\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + b"a" * 100_000 + b"\r\n--abc--\r\n"),
}


# What each malformed body gets: the parser's 400 naming the fault, or (a body cut off before its
# first part ended) the 422 of a request without files.
MALFORMED_ANSWERS = {
    "no boundary": (400, "bad_request", "missing boundary"),
    "garbage": (400, "bad_request", "invalid multipart data"),
    "wrong boundary": (400, "bad_request", "invalid multipart data"),
    "cut off": (422, "unprocessable_image", "no files in the multipart field 'files'"),
    "no name": (400, "bad_request", 'field "name" must be provided'),
    "bad header": (400, "bad_request", "invalid multipart data"),
    "huge field": (400, "bad_request", "exceeded maximum size of 64KB"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MULTIPART))
def test_malformed_multipart_is_a_4xx_json_error(client, case):
    content_type, body = MALFORMED_MULTIPART[case]
    response = client.post("/v1/predict", content=body, headers={"Content-Type": content_type})
    assert_error(response, *MALFORMED_ANSWERS[case])


def test_unknown_routes_methods_and_parameters_are_json(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/v1/predict"), 405, "method_not_allowed")
    assert_error(client.post("/v1/predict?explain=maybe", content=b"x"), 422, "invalid_request", "explain")


def test_explain_adds_a_heatmap_png(client, shipped):
    needs_torch()
    response = client.post("/v1/predict?explain=true", files=multipart(shipped.images[0], shipped.images[3]))
    body = response.json()
    assert body["explain"] == {"available": True, "detail": None}
    for result in body["results"]:
        heatmap = Image.open(io.BytesIO(base64.b64decode(result["heatmap_png"])))
        assert heatmap.format == "PNG" and heatmap.size == (256, 256) and heatmap.mode == "RGB"


def test_the_default_model_is_explained_with_its_fp32_weights():
    """The server runs the default model auto chooses here (int8 only where its card meets the
    shipping rule); Grad-CAM runs on the PyTorch weights of the fp32 model (default.safetensors),
    so explanations work out of the box either way."""
    import artstyle

    needs_torch()
    photo = Path(__file__).parents[1] / "examples" / "human_astronaut.jpg"
    expected = "default.int8.onnx" if artstyle.load().precision == "int8" else "default.onnx"
    with TestClient(create_app(ServeSettings(threads=1))) as c:
        health = c.get("/healthz").json()
        assert health["model"] == expected and health["explain"]["available"] is True
        body = c.post("/v1/predict?explain=true", files=multipart(photo)).json()
    assert body["explain"] == {"available": True, "detail": None}
    assert body["results"][0]["label"] == "human" and body["results"][0]["heatmap_png"]


def test_explain_unavailable_says_why(shipped, classifier, tmp_path, monkeypatch):
    needs_torch()  # without it, that is the reason given (checked below)
    onnx_only = copy_model(shipped, tmp_path / "onnx-only")  # no .safetensors beside it
    with TestClient(create_app(ServeSettings(model=str(onnx_only)))) as c:
        body = c.post("/v1/predict?explain=true", files=multipart(shipped.images[0])).json()
        assert body["results"][0]["label"] in CLASSES and body["results"][0]["heatmap_png"] is None
        assert body["explain"]["available"] is False and "--with-weights" in body["explain"]["detail"]
        assert c.get("/healthz").json()["explain"]["available"] is False

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    with TestClient(create_app(ServeSettings(model=str(shipped.onnx)), classifier)) as c:
        body = c.post("/v1/predict?explain=true", files=multipart(shipped.images[0])).json()
        assert body["results"][0]["label"] in CLASSES
        assert body["explain"]["available"] is False and "pip install 'artstyle[train]'" in body["explain"]["detail"]


def test_page_and_docs_are_served_by_the_app(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>artstyle" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    static = Path(artstyle.__file__).parent / "serve" / "static"
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in static.iterdir():  # nothing fetched from elsewhere: users may be offline
        assert not re.search(r"(src|href)=\"(https?:)?//", path.read_text()), path.name
        assert "https://" not in path.read_text() and "http://" not in path.read_text(), path.name
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    # Served by the app itself (swagger-ui-bundle-v2, part of the serve extra): offline too.
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200


def test_concurrent_requests_share_model_calls(shipped, classifier):
    """Micro-batching: images waiting together go through one model call, with the same answers."""
    from artstyle.serve.inference import InferenceService

    arrays = [classifier.to_array(p) for p in shipped.images[:8]]

    async def scenario():
        service = InferenceService(classifier, threads=2, max_batch=16, max_pixels=10**8)
        await service.start()
        try:
            results = await asyncio.gather(*(service.probabilities([a]) for a in arrays))
        finally:
            await service.stop()
        return service.batch_sizes, [r[0] for r in results]

    batch_sizes, probs = asyncio.run(scenario())
    assert sum(batch_sizes) == 8 and max(batch_sizes) > 1
    for array, p in zip(arrays, probs):
        assert p == pytest.approx(classifier.run(array[None])[0], abs=1e-5)


def test_two_streams_run_two_batches_at_once(shipped):
    """With two streams, a second batch goes into the model while the first is still in it, and
    every request still gets its own image's answer."""
    import threading
    import time

    from artstyle.serve.inference import InferenceService

    clf = artstyle.load(shipped.onnx, threads=2, streams=2)
    arrays = [clf.to_array(p) for p in shipped.images[:6]]
    expected = [clf.run(a[None])[0] for a in arrays]
    inside, most, lock, run = [0], [0], threading.Lock(), clf.run

    def slow_run(batch):  # long enough that the batcher can start a second call meanwhile
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        try:
            return run(batch)
        finally:
            with lock:
                inside[0] -= 1
    clf.run = slow_run

    async def scenario():
        service = InferenceService(clf, threads=2, max_batch=4, max_pixels=10**8)
        await service.start()
        try:
            first = asyncio.ensure_future(service.probabilities(arrays[:1]))
            await asyncio.sleep(0.05)  # the first image is in the model: a stream is busy
            rest = await asyncio.gather(*(service.probabilities([a]) for a in arrays[1:]))
            return [(await first)[0]] + [r[0] for r in rest], service.batching()
        finally:
            await service.stop()

    probs, batching = asyncio.run(scenario())
    assert batching["streams"] == 2 and most[0] == 2
    for got, want in zip(probs, expected):
        assert got == pytest.approx(want, abs=1e-5)


# ----------------------------------------------------------------------------- the real server


class ServerProcess:
    """``python -m artstyle serve`` on a free port of 127.0.0.1, stopped on exit whatever happens."""

    def __init__(self, model: Path, log_path: Path, *args: str):
        self.command = [sys.executable, "-m", "artstyle", "serve", "--model", str(model), "--host", "127.0.0.1",
                        "--port", "0", "--no-access-log", *args]
        self.log_path = log_path
        self.process = None
        self.url = None

    def __enter__(self):
        self.log = open(self.log_path, "w")  # a file, not a pipe: a full pipe would stall the server
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.url = self.wait_for_url()
            self.wait_until_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_for_url(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.log_path.read_text())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log_path.read_text()}")
            time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")

    def wait_until_healthy(self) -> None:
        for _ in range(100):
            try:
                if httpx.get(self.url + "/healthz").json()["model_loaded"]:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server never became healthy")

    def rss_mb(self) -> float:
        """Resident memory of the server process (Linux /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def server(shipped, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with ServerProcess(shipped.onnx, log, "--request-timeout", "3", "--idle-timeout", "1") as s:
        yield s
    assert "Traceback" not in log.read_text(), log.read_text()


def post_image(server, path: Path, timeout: float = 10, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.url + "/v1/predict", files=multipart(path), timeout=timeout, headers=headers)


def test_real_server_predicts_and_serves_the_page(server, shipped):
    response = post_image(server, shipped.images[0])
    assert response.status_code == 200 and response.json()["results"][0]["label"] in CLASSES
    assert httpx.get(server.url + "/").status_code == 200
    assert httpx.get(server.url + "/docs").status_code == 200


def test_50mb_upload_is_refused_without_being_buffered(server, shipped):
    before = server.rss_mb()
    start = time.monotonic()
    big = httpx.post(server.url + "/v1/predict", content=b"\0" * (50 * MB), headers={"Content-Type": "image/png"},
                     timeout=30)
    assert_error(big, 413, "payload_too_large", "(52,428,800 bytes): the limit is 10,485,760 bytes")
    assert time.monotonic() - start < 10
    # Chunked, so no Content-Length to refuse by: the server counts and answers at the cap,
    # while the client is still sending.
    sent, answer = stream_until_answered(server.port, total=50 * MB)
    assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer
    assert sent < 30 * MB
    assert server.rss_mb() - before < 30
    assert post_image(server, shipped.images[0]).status_code == 200


def stream_until_answered(port: int, total: int, chunk: int = 256 * 1024) -> tuple[int, bytes]:
    """Send a chunked body of up to ``total`` bytes, stopping as soon as the server answers."""
    payload = f"{chunk:x}\r\n".encode() + b"\0" * chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent = 0
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(payload)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading: its answer is waiting
            sent += chunk
        return sent, read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (head and Content-Length body) from a raw socket."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < body_length(data):
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def body_length(data: bytes) -> int:
    found = re.search(rb"content-length: (\d+)", data.partition(b"\r\n\r\n")[0], re.IGNORECASE)
    return int(found.group(1)) if found else 0


def test_slow_and_silent_clients_are_cut_off_while_others_are_served(server, shipped):
    silent = socket.create_connection(("127.0.0.1", server.port))
    half_head = socket.create_connection(("127.0.0.1", server.port))
    half_head.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    half_body = socket.create_connection(("127.0.0.1", server.port))
    half_body.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 1000\r\n\r\n\x89PNG")
    try:
        # Meanwhile other clients are served at once.
        start = time.monotonic()
        assert post_image(server, shipped.images[0]).status_code == 200
        assert time.monotonic() - start < 2
        for sock in (silent, half_head, half_body):
            sock.settimeout(10)
        assert silent.recv(1024) == b""  # closed after the 1 s idle timeout
        assert half_head.recv(1024) == b""
        answer = read_response(half_body)  # 408 after the 3 s request timeout
        assert answer.startswith(b"HTTP/1.1 408") and b'"error":"request_timeout"' in answer
        assert time.monotonic() - start < 8
    finally:
        for sock in (silent, half_head, half_body):
            sock.close()
    assert post_image(server, shipped.images[1]).status_code == 200


def test_bad_input_over_http_never_500_and_server_keeps_serving(server, bad_corpus, shipped):
    bad = [bad_corpus[n] for n in ("zero_byte", "truncated_jpeg", "text_as_jpg", "png_bomb_header")]
    for path in bad:
        response = httpx.post(server.url + "/v1/predict", files=[("files", (path.name, path.read_bytes(), "image/jpeg"))])
        assert response.status_code == 422
    for content_type, body in MALFORMED_MULTIPART.values():
        response = httpx.post(server.url + "/v1/predict", content=body, headers={"Content-Type": content_type})
        assert 400 <= response.status_code < 500
    tiny = [("files", (f"{i}.png", b"\x89PNG", "image/png")) for i in range(1000)]
    assert httpx.post(server.url + "/v1/predict", files=tiny).status_code == 400
    assert httpx.post(server.url + "/v1/predict").status_code == 422
    assert post_image(server, shipped.images[2]).status_code == 200


def test_real_server_samples_a_video_every_n_seconds_within_its_frame_limit(server, shared_data, tmp_path):
    """``?every=`` on the video endpoint: validated as the CLI's --every, and the frames it asks
    of a long video kept within the server's 64 (each comes back as a thumbnail)."""
    stills = video_frames(sorted((shared_data / "anime").glob("*.jpg"))[:9], 64)
    video = tmp_path / "anime.avi"
    assert write_video(video, [f for f in stills for _ in range(8)], "MJPG", 8.0)  # 72 frames, 9 s

    def post(query: str) -> httpx.Response:
        return httpx.post(server.url + "/v1/predict" + query, files=[("files", ("anime.avi", video.read_bytes(),
                                                                                 "video/x-msvideo"))], timeout=30)

    result = post("?every=2").json()["results"][0]
    assert result["label"] == "anime" and result["frames"] == 5
    assert [f["time_s"] for f in result["frame_strip"]] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert post("?every=2&frames=3").json()["results"][0]["frames"] == 5  # every wins, as on the CLI
    for bad in ("0", "-1", "nan", "inf", "soon"):
        assert_error(post(f"?every={bad}"), 422, words="every")
    over = post("?every=0.125")  # every frame: 72, over the limit
    assert over.status_code == 422
    assert over.json()["results"][0]["error"] == ("one frame every 0.125 s is 72 frames of this 9-second video, "
                                                  "over the limit of 64: ask for a longer interval")


def test_short_load_no_errors_and_bounded_memory(server, shipped, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for path in shipped.images[:6]:
        (images / path.name).write_bytes(path.read_bytes())

    def load(requests: int) -> dict:
        done = subprocess.run([sys.executable, str(LOADGEN), "--url", server.url, "--images", str(images),
                               "--requests", str(requests), "--concurrency", "16"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    load(50)  # warm-up: thread pools, allocator arenas, ORT buffers for each batch size
    before = server.rss_mb()
    result = load(200)
    grown = server.rss_mb() - before
    print(f"\nshort load: {result}, RSS {before:.0f} MB -> +{grown:.1f} MB")
    assert result["requests"] == 200 and result["errors"] == 0 and result["status"] == {"200": 200}
    assert result["requests_per_s"] > 0 and result["latency_ms"]["p99"] >= result["latency_ms"]["p50"] > 0
    assert grown < 50


def test_loadgen_refuses_other_hosts():
    done = subprocess.run([sys.executable, str(LOADGEN), "--url", "http://example.com", "--images", "x"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "127.0.0.1" in done.stderr


# ----------------------------------------------------------------------------- the command


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert main(["serve", "--model", str(tmp_path / "missing.onnx")]) == 1
    assert "model not found" in capsys.readouterr().err
    assert main(["serve", "--workers", "0"]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--threads", "2", "--streams", "3"]) == 1
    assert "--streams 3 cannot exceed the 2 thread(s) per process" in capsys.readouterr().err
    assert main(["serve", "--max-upload-mb", "-1"]) == 1
    assert "--max-upload-mb must be positive" in capsys.readouterr().err


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_two_worker_processes_get_the_api_key_but_not_through_their_environment(shipped, tmp_path):
    key = secrets.token_urlsafe(24)
    with ServerProcess(shipped.onnx, tmp_path / "workers.log", "--workers", "2", "--api-key", key) as server:
        auth = {"Authorization": f"Bearer {key}"}
        answers = [post_image(server, p, timeout=30, headers=auth) for p in shipped.images[:4]]
        assert all(a.status_code == 200 for a in answers)
        assert_error(post_image(server, shipped.images[0]), 401, "unauthorized")
        assert httpx.get(server.url + "/healthz").json()["limits"]["max_images"] == 32
        environments = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in child_pids(server.process.pid)}
        workers = {pid: env for pid, env in environments.items() if b"ARTSTYLE_SERVE_SETTINGS=" in env}
        assert len(workers) >= 2  # the settings reached the workers that way (and multiprocessing's helper)...
        for pid, env in environments.items():  # ...and the key reached none of them in it
            assert key.encode() not in env, f"the API key is in the environment of process {pid}"
            assert key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_settings_for_workers_keep_the_api_key_in_a_private_file(monkeypatch):
    from artstyle.serve.settings import ENV_VAR

    settings = ServeSettings(max_images=7, api_key="s3cret-key")
    with settings.in_env():
        raw = os.environ[ENV_VAR]
        assert "s3cret-key" not in raw and all("s3cret-key" not in v for v in os.environ.values())
        key_file = Path(json.loads(raw)["api_key_file"])
        assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
        assert ServeSettings.from_env() == settings  # what a worker builds: the key included
    assert ENV_VAR not in os.environ and not key_file.exists()
    with ServeSettings(max_images=7).in_env():  # no key: no file
        assert "api_key_file" not in json.loads(os.environ[ENV_VAR])
        assert ServeSettings.from_env() == ServeSettings(max_images=7)


def mismatched_model(directory: Path) -> Path:
    """The shipped model with a card that states the wrong input size: it loads, and ONNX Runtime
    then fails on every batch, for real, inside the model call."""
    directory.mkdir(parents=True)
    shutil.copyfile(ASSETS / "default.onnx", directory / "model.onnx")
    card = json.loads((ASSETS / "default.json").read_text(encoding="utf-8"))
    (directory / "model.json").write_text(json.dumps({**card, "image_size": 200}), encoding="utf-8")
    return directory / "model.onnx"


def test_a_failure_inside_the_model_is_a_json_500_with_its_traceback_in_the_log(shipped, tmp_path):
    log = tmp_path / "failing.log"
    with ServerProcess(mismatched_model(tmp_path / "mismatched"), log) as server:
        for _ in range(2):  # the stream that failed keeps serving
            response = post_image(server, shipped.images[0])
            assert_error(response, 500, "internal_error", "details are in its log")
            assert "dimensions" not in response.text  # nothing of the server's insides to the client
        assert httpx.get(server.url + "/healthz").json()["model_loaded"] is True
    text = log.read_text()
    assert "Traceback" in text and "Got invalid dimensions for input: pixels" in text


# ----------------------------------------------------------------------------- explain, model card, access


def test_model_card_is_the_public_part(client, shipped):
    card = client.get("/v1/model").json()
    assert "source_checkpoint" in shipped.card  # the full card knows where it came from...
    assert "source_checkpoint" not in card and "data" not in card.get("training", {})  # ...the API does not say
    assert "images" not in card.get("parity", {})
    assert card["classes"] == CLASSES and card["image_size"] == shipped.card["image_size"]
    assert card["onnx_sha256"] == shipped.card["onnx_sha256"] and card["test_metrics"] == shipped.card["test_metrics"]
    text = json.dumps(card)
    assert shipped.card["training"]["data"] not in text and shipped.card["source_checkpoint"] not in text


def test_api_key_guards_the_api_but_not_health_or_page(shipped, classifier):
    settings = ServeSettings(model=str(shipped.onnx), api_key="s3cret")
    with TestClient(create_app(settings, classifier)) as c:
        files = multipart(shipped.images[0])
        assert_error(c.post("/v1/predict", files=files), 401, "unauthorized", "Authorization: Bearer")
        assert_error(c.get("/v1/model"), 401, "unauthorized")
        wrong = c.post("/v1/predict", files=files, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        right = {"Authorization": "Bearer s3cret"}
        assert c.post("/v1/predict", files=files, headers=right).json()["results"][0]["label"] in CLASSES
        assert c.get("/v1/model", headers=right).json()["classes"] == CLASSES
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_serving_beyond_loopback_needs_a_key_or_insecure_public(capsys, tmp_path, monkeypatch):
    missing = str(tmp_path / "missing.onnx")  # the model check comes after the exposure check
    monkeypatch.delenv("ARTSTYLE_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--model", missing]) == 1
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 is reachable from other machines" in err and len(err.strip().splitlines()) == 1
    for extra in (["--insecure-public"], ["--api-key", "k"]):
        assert main(["serve", "--host", "0.0.0.0", "--model", missing, *extra]) == 1
        assert "model not found" in capsys.readouterr().err
    monkeypatch.setenv("ARTSTYLE_API_KEY", "k")
    assert main(["serve", "--host", "0.0.0.0", "--model", missing]) == 1
    assert "model not found" in capsys.readouterr().err
    monkeypatch.delenv("ARTSTYLE_API_KEY")
    for host in ("127.0.0.1", "localhost", "::1"):  # this machine only: no key needed
        assert main(["serve", "--host", host, "--model", missing]) == 1
        assert "model not found" in capsys.readouterr().err


def timed_post(client, url: str, files) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = client.post(url, files=files)
    return response, time.perf_counter() - start


def wait_for(condition, seconds: float = 60) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` rather than hang."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {seconds:g}s"
        time.sleep(0.005)


def test_predictions_keep_their_latency_while_explains_run(shipped, classifier):
    """Grad-CAM runs on its own thread: a prediction does not wait for the heatmaps in progress."""
    from concurrent.futures import ThreadPoolExecutor

    needs_torch()

    settings = ServeSettings(model=str(shipped.onnx), max_explain_queue=4)
    one, many = multipart(shipped.images[0]), multipart(*shipped.images[:6] * 2)
    with TestClient(create_app(settings, classifier)) as c:
        assert timed_post(c, "/v1/predict?explain=true", one)[0].json()["results"][0]["heatmap_png"]  # torch loaded
        alone = sorted(timed_post(c, "/v1/predict", one)[1] for _ in range(7))[3]
        explainer = c.app.state.explainer
        with ThreadPoolExecutor(2) as pool:
            explains = [pool.submit(timed_post, c, "/v1/predict?explain=true", many) for _ in range(2)]
            wait_for(lambda: explainer.pending >= 2)
            during = []
            while explainer.pending and len(during) < 20:
                response, seconds = timed_post(c, "/v1/predict", one)
                assert response.status_code == 200
                during.append(seconds)
            heatmaps_s = max(f.result()[1] for f in explains) / (2 * 12)  # 24 heatmaps, one at a time
    during.sort()
    median = during[len(during) // 2]
    print(f"prediction alone {alone * 1e3:.0f} ms, during explains {median * 1e3:.0f} ms (n={len(during)}), "
          f"one heatmap {heatmaps_s * 1e3:.0f} ms")
    assert len(during) >= 5
    # Queued behind the explain work (as before), a prediction waited for the heatmap in progress
    # and any queued before it: at least about half a heatmap, usually more.
    assert median < 0.5 * heatmaps_s


def test_explain_requests_beyond_the_queue_get_503(shipped, classifier):
    from concurrent.futures import ThreadPoolExecutor

    needs_torch()

    settings = ServeSettings(model=str(shipped.onnx), max_explain_queue=1)
    many = multipart(*shipped.images[:6] * 2)
    with TestClient(create_app(settings, classifier)) as c:
        explainer = c.app.state.explainer
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.post, "/v1/predict?explain=true", files=many)
            wait_for(lambda: explainer.pending >= 1)
            refused = c.post("/v1/predict?explain=true", files=multipart(shipped.images[0]))
            plain = c.post("/v1/predict", files=multipart(shipped.images[0]))
            assert first.result().status_code == 200
    assert_error(refused, 503, "unavailable", "explain queue is full")
    assert refused.headers["retry-after"] == "2"
    assert plain.status_code == 200  # predictions are not limited by the explain queue
