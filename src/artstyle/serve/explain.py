"""Grad-CAM heatmaps for ``/v1/predict?explain=true``, drawn by ``artstyle.engine.gradcam`` (the same
heatmaps as ``artstyle predict --explain``).

The ONNX model cannot give gradients, so explanations need the PyTorch weights exported beside
it (``artstyle export --with-weights``) and the training extra (torch, timm). Without either the
server still predicts and says, per response, why there is no heatmap. torch is imported on the
first explanation, not at startup, so a server that never explains never pays for it.

A Grad-CAM (a backward pass) costs many predictions, so explanations run on a thread of their
own, never on the model thread that predictions queue for, and with half the cores' torch
threads; at most ``max_pending`` explain requests are admitted at once, the others get 503.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ArtstyleError
from ..infer.predictor import fp32_path
from ..preprocess import normalize


class ExplainQueueFullError(Exception):
    pass


class Explainer:
    def __init__(self, onnx_path: Path, threads: int, max_pending: int = 4):
        # An int8 model is explained with its fp32 model's weights (the int8 graph has no PyTorch twin).
        self.onnx_path = fp32_path(Path(onnx_path))
        self.threads = max(1, threads // 2)  # the other half stays with the predictions
        self.unavailable_reason = self.check_available()
        self.model = self.spec = None
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artstyle-explain")
        self.max_pending = max(1, max_pending)
        self.pending = 0  # admitted explain requests; only the event loop touches it

    @contextlib.contextmanager
    def admitted(self):
        """A place among the explain requests, or ``ExplainQueueFullError``."""
        if self.pending >= self.max_pending:
            raise ExplainQueueFullError
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def run(self, fn, *args):
        """``fn`` on the explain thread."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    def check_available(self) -> str | None:
        """Why explanations cannot work here, or None; cheap (no torch import)."""
        missing = [m for m in ("torch", "timm", "safetensors") if importlib.util.find_spec(m) is None]
        if missing:
            return (f"Grad-CAM explanations need the training extra ({', '.join(missing)} not installed): "
                    f"pip install 'artstyle[train]'")
        weights = self.onnx_path.with_suffix(".safetensors")
        if not weights.is_file():
            return (f"this model was exported without its PyTorch weights ({weights.name} is missing); "
                    f"re-export it with: artstyle export RUN -o {self.onnx_path.name} --with-weights")
        return None

    def load(self):
        """The PyTorch model, built once; damaged weights make explanations unavailable with the
        reason rather than failing every request."""
        with self.lock:
            if self.model is None and self.available:
                try:
                    import torch

                    from ..engine.gradcam import load_explainer

                    torch.set_num_threads(self.threads)
                    self.model, self.spec = load_explainer(self.onnx_path)
                except ArtstyleError as exc:
                    self.unavailable_reason = f"Grad-CAM unavailable: {exc}"
            return self.model

    def heatmap_png(self, image: Image.Image, array: np.ndarray, caption: str) -> str | None:
        """Base64 PNG: the model's view of ``image`` with the Grad-CAM map of the predicted
        class over it and ``caption``; None when explanations are unavailable."""
        if self.load() is None:
            return None
        import torch

        from ..engine.gradcam import grad_cam, overlay

        if array.dtype == np.uint8:  # the pixels a pixel-input export takes; PyTorch wants them normalised
            array = normalize(array, self.spec.mean, self.spec.std)
        _, heats = grad_cam(self.model, torch.from_numpy(array[None]))
        return encode_png(overlay(image, heats[0], caption, self.spec.crop_pct))


def encode_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
