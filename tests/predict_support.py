"""The models the tests run, once per session each:

- ``exported_model``: one small model exported with the real exporter and parity check (real
  EfficientNet-Lite0 ImageNet weights, a random 3-class head, 64 px input, fast on 2 CPUs),
  for the tests of the export and the training side (needs torch);
- ``shipped_model``: the shipped fp32 model (assets/default.onnx, its card and PyTorch weights)
  under the name model.onnx, for the predictor and server tests, which then run on an install
  without torch (``artstyle[serve]``).

The ``exported`` and ``shipped`` fixtures in conftest.py wrap them; the module-level cache
makes each happen once whichever module asks first.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["anime", "cartoon", "human"]
IMAGE_SIZE = 64
EXAMPLES = Path(__file__).parents[1] / "examples"
# Same place as conftest's shared_data; used when present, without skipping when absent.
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data" / "artstyle-v1"
_cache: dict[str, "ExportedModel"] = {}


ASSETS = Path(__file__).parents[1] / "src" / "artstyle" / "assets"


@dataclass
class ExportedModel:
    run: Path | None  # run directory with weights/best.safetensors + .json (None: the shipped model)
    onnx: Path  # model.onnx + model.json (card) + model.safetensors
    card: dict
    images: list[Path]  # real-looking images the model was parity-checked on


def make_images(directory: Path, count: int = 6) -> list[Path]:
    """Drawn scenes (gradients, shapes, outlines), as JPEG and PNG of varied sizes and aspects."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        w, h = [(320, 240), (200, 300), (96, 96), (512, 384), (150, 150), (640, 200)][i % 6]
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.linspace(1, 0.3, h, dtype=np.float32)[:, None, None]
        base = (ramp * rng.integers(60, 255, 3)).astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(base, (h, w, 3))))
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            colour = tuple(int(v) for v in rng.integers(0, 255, 3))
            draw.ellipse([x, y, x + w // 5, y + h // 5], fill=colour, outline=(0, 0, 0), width=2)
        path = directory / f"scene_{i}.{'jpg' if i % 2 == 0 else 'png'}"
        img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)
        paths.append(path)
    return paths


def real_images(per_class: int = 2) -> list[Path]:
    """A few examples/ and artstyle-v1 images of each class, those that are present."""
    found = []
    for c in CLASSES:
        found += sorted(EXAMPLES.glob(f"{c}_*"))[:per_class] + sorted((SHARED_DATA / c).glob("*.jpg"))[:per_class]
    return found


def exported_model(tmp_path_factory) -> ExportedModel:
    if "model" not in _cache:
        from artstyle.engine.checkpoint import save_model
        from artstyle.engine.export import export_onnx
        from artstyle.models import create_model

        root = tmp_path_factory.mktemp("exported")
        model, spec = create_model("efficientnet_lite0", CLASSES, image_size=IMAGE_SIZE)
        save_model(root / "run" / "weights" / "best", model, spec, metrics={"val_acc": 0.5}, epoch=1,
                   config={"data": "/nowhere"}, data_summary={"train": {"anime": 2}},
                   test_metrics={"accuracy": 0.4})
        images = make_images(root / "images") + real_images()
        card = export_onnx(root / "run", root / "model" / "model.onnx", parity_images=images, with_weights=True)
        _cache["model"] = ExportedModel(root / "run", root / "model" / "model.onnx", card, images)
    return _cache["model"]


def shipped_model(tmp_path_factory) -> ExportedModel:
    if "shipped" not in _cache:
        root = tmp_path_factory.mktemp("shipped")
        (root / "model").mkdir()
        for suffix in (".onnx", ".json", ".safetensors"):  # the weights: Grad-CAM, where torch is installed
            shutil.copyfile(ASSETS / f"default{suffix}", root / "model" / f"model{suffix}")
        onnx = root / "model" / "model.onnx"
        card = json.loads(onnx.with_suffix(".json").read_text(encoding="utf-8"))
        _cache["shipped"] = ExportedModel(None, onnx, card, make_images(root / "images") + real_images())
    return _cache["shipped"]


def copy_model(model: ExportedModel, directory: Path) -> Path:
    """A private copy of the .onnx + card that a test may damage."""
    directory.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        shutil.copyfile(model.onnx.with_suffix(suffix), directory / f"model{suffix}")
    return directory / "model.onnx"


class LocalServer:
    """A tiny HTTP server on 127.0.0.1 (never any other address) in a thread, for URL inputs:
    ``routes`` maps a path to (content type, body)."""

    def __init__(self, routes: dict[str, tuple[str, bytes]]):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path not in routes:
                    self.send_error(404)
                    return
                content_type, body = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client refused the body (size cap): that is the point

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on: bind a port, then release it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/image.jpg"


def video_frames(images: list[Path], size: int = 256) -> list[np.ndarray]:
    """Real images as size x size BGR frames, what OpenCV's VideoWriter takes."""
    import cv2

    return [cv2.resize(cv2.imread(str(p)), (size, size), interpolation=cv2.INTER_AREA) for p in images]


def write_video(path: Path, frames: list[np.ndarray], fourcc: str, fps: float) -> bool:
    """``frames`` as a video with OpenCV's VideoWriter; False when this OpenCV build cannot write
    ``fourcc`` in ``path``'s container."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        return False
    for frame in frames:
        writer.write(frame)
    writer.release()
    return True
