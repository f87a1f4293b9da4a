"""The JSON shapes of the API, as /docs shows them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..infer import Prediction, VideoPrediction


class FrameResult(BaseModel):
    time_s: float = Field(description="the frame's time in the video, in seconds")
    label: str
    confidence: float
    thumbnail: str = Field(description="the model's view of the frame, a small JPEG data URL")


class ImageResult(BaseModel):
    name: str = Field(description="the upload's file name (or 'image' for a raw body)")
    label: str | None = Field(None, description="the most probable class; null when the image failed")
    confidence: float | None = Field(None, description="the probability of `label`")
    probabilities: dict[str, float] = Field(default_factory=dict, description="every class, in model order")
    width: int | None = Field(None, description="upright width in pixels (EXIF orientation applied)")
    height: int | None = Field(None, description="upright height in pixels")
    error: str | None = Field(None, description="why this image could not be classified")
    heatmap_png: str | None = Field(
        None, description="with ?explain=true: base64 PNG of the model's view of the image under its Grad-CAM map")
    frames: int | None = Field(None, description="a video: the frames sampled (probabilities are their mean)")
    duration_s: float | None = Field(None, description="a video: its length in seconds")
    shares: dict[str, float] | None = Field(None, description="a video: the fraction of frames each class wins")
    frame_strip: list[FrameResult] | None = Field(None, description="a video: each sampled frame's answer")

    @classmethod
    def from_prediction(cls, pred: Prediction, width: int | None = None, height: int | None = None) -> "ImageResult":
        """The API's names for a ``Prediction``'s fields (source -> name, probs -> probabilities)."""
        result = cls(name=pred.source, label=pred.label, confidence=pred.confidence, probabilities=pred.probs,
                     width=width, height=height, error=pred.error)
        if isinstance(pred, VideoPrediction):
            result.frames, result.duration_s, result.shares = pred.frames, pred.duration_s, pred.shares
            result.frame_strip = [FrameResult(time_s=f.time_s, label=f.label, confidence=f.confidence,
                                              thumbnail=f.thumbnail) for f in pred.per_frame]
        return result


class ExplainStatus(BaseModel):
    available: bool
    detail: str | None = Field(None, description="why there are no heatmaps, when unavailable")


class PredictResponse(BaseModel):
    model: str = Field(description="the model file's name")
    classes: list[str]
    results: list[ImageResult] = Field(description="one per image, in upload order")
    explain: ExplainStatus | None = Field(None, description="present when ?explain=true was asked")


class ErrorResponse(BaseModel):
    error: str = Field(description="a machine-readable code, e.g. payload_too_large")
    detail: str = Field(description="what was wrong, in a sentence")
    results: list[ImageResult] | None = Field(None, description="per-image reasons, when no image could be used")


class Health(BaseModel):
    status: str
    model_loaded: bool
    model: str
    classes: list[str]
    explain: ExplainStatus
    limits: dict[str, int | float]
    batching: dict[str, int | float] = Field(description="max_batch and the mean size of recent model calls")
