"""The FastAPI app: ``/v1/predict``, ``/v1/model``, ``/healthz``, the web page at ``/`` and the
OpenAPI docs at ``/docs`` (served from the app itself where swagger-ui-bundle is installed).

Bad input is always the client's 4xx with a JSON body ``{"error": code, "detail": sentence}``;
one bad image among good ones is a per-image ``error`` inside a 200. A failure of the server
itself (ONNX Runtime failing on a batch, a bug) is a 500 of the same shape, its traceback in the
server's log and not in the answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import ImageLoadError
from ..infer import Classifier, load
from ..infer.video import is_video
from ..system import cpu_count
from .explain import Explainer, ExplainQueueFullError
from .inference import Decoded, InferenceService
from .limits import DeclaredSizeLimit, RequestTimeout, error_body, too_large_detail
from .schemas import ErrorResponse, ExplainStatus, Health, ImageResult, PredictResponse
from .settings import ServeSettings

log = logging.getLogger("artstyle.serve")
STATIC = Path(__file__).parent / "static"
# The page loads nothing from elsewhere (users may be offline); the browser enforces it.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
RAW_BODY_TYPES = ("image/", "video/", "application/octet-stream")
# Frames a video upload may ask for (each comes back with a thumbnail).
MAX_VIDEO_FRAMES = 64
# Form fields other than files are only ever a few words; anything longer is not ours.
MAX_FIELD_BYTES = 64 * 1024

ERROR_RESPONSES = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "malformed multipart body, or more files than the limit",
    408: "the request body did not arrive within the request timeout",
    413: "the request body is over the upload limit",
    415: "a Content-Type that is neither multipart/form-data nor an image",
    422: "no image in the request could be classified (per-image reasons in `results`)",
    500: "the server failed on this request (the details are in the server's log)",
}.items()}

PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                 "description": "one or more images (repeat the field)"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "video/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}


@dataclass
class Upload:
    name: str
    data: bytes


# ---------------------------------------------------------------------------- the app


def create_app(settings: ServeSettings | None = None, classifier: Classifier | None = None) -> FastAPI:
    """The app for ``settings`` (default limits, the shipped model). Loads the model now, so a
    missing or damaged model fails here with an ``ArtstyleError`` rather than at the first request."""
    settings = settings or ServeSettings()
    threads = settings.threads or cpu_count()
    classifier = classifier or load(settings.model, precision=settings.precision, threads=threads, workers=threads,
                                     streams=settings.streams)
    service = InferenceService(classifier, threads=threads, max_batch=settings.max_batch,
                               max_pixels=settings.max_pixels)
    explainer = Explainer(classifier.path, threads, settings.max_explain_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()
        explainer.stop()

    swagger_assets = local_swagger_ui()
    app = FastAPI(
        title="artstyle", version=__version__, lifespan=lifespan, redoc_url=None,
        description="Tell anime, cartoon and human (photo) images apart. The web page is at `/`.",
        docs_url=None if swagger_assets else "/docs",  # FastAPI's own page loads its assets from a CDN
    )
    app.state.settings = settings
    app.state.service = service
    app.state.explainer = explainer
    # The last added is the outermost: the deadline covers everything, the size check included.
    app.add_middleware(DeclaredSizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout)
    add_error_handlers(app)
    # On the routes, not the app: FastAPI's app-wide limit would turn DeclaredSizeLimit's JSON
    # answer into plain text.
    app.include_router(router, max_body_size=settings.max_upload_bytes)
    app.include_router(api, max_body_size=settings.max_upload_bytes)
    mount_page(app)
    if swagger_assets:
        mount_offline_docs(app, swagger_assets)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes (``--workers N``): settings from the environment."""
    return create_app(ServeSettings.from_env())


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        detail = str(exc.detail)
        if exc.status_code == 413:  # FastAPI's body limit says only "Content Too Large"
            detail = too_large_detail(request.app.state.settings.max_upload_bytes)
        return JSONResponse(error_body(exc.status_code, detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body(422, reasons, code="invalid_request"), 422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        # Starlette raises the exception again once this answer is sent, so uvicorn logs its
        # traceback; the client gets the documented shape, and no internals.
        return JSONResponse(error_body(500, "the server failed on this request; the details are in its log"), 500)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect):
        # Nobody is left to read this; answering keeps the log free of tracebacks for it.
        return JSONResponse(error_body(400, "client disconnected before the body arrived"), 400)


def mount_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


def local_swagger_ui() -> Path | None:
    """Swagger UI 5 from the swagger-ui-bundle-v2 package, when installed (4, from the older
    swagger-ui-bundle, cannot render FastAPI's OpenAPI 3.1)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(swagger_ui_path)
    return None if path.name.startswith(("swagger-ui-2", "swagger-ui-3", "swagger-ui-4")) else path


def mount_offline_docs(app: FastAPI, assets: Path) -> None:
    """/docs with Swagger UI served by the app itself, as the page is: users may be offline."""
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="artstyle API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


# ---------------------------------------------------------------------------- routes

def require_api_key(request: Request) -> None:
    """With an API key set, /v1/* needs ``Authorization: Bearer KEY`` (/healthz and the page stay open)."""
    key = request.app.state.settings.api_key
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                            headers={"WWW-Authenticate": "Bearer"})


router = APIRouter()
api = APIRouter(dependencies=[Depends(require_api_key)], responses={401: {"model": ErrorResponse,
                                                                          "description": "missing or wrong API key"}})
# What /v1/model shows of the card: what a client needs, none of the machine's local paths
# (source_checkpoint, the training data folder, the parity images' names).
PUBLIC_CARD_FIELDS = ("format", "artstyle_version", "backbone", "arch", "classes", "image_size", "mean", "std",
                      "crop_pct", "init", "input", "output", "preprocess", "metrics", "test_metrics", "onnx_sha256",
                      "onnx_bytes", "opset", "created")
PUBLIC_NESTED_FIELDS = {"training": ("epoch", "data_summary"),
                        "parity": ("max_abs_diff", "tolerance", "passed", "argmax_agree")}


def public_card(card: dict) -> dict:
    public = {k: card[k] for k in PUBLIC_CARD_FIELDS if k in card}
    for name, keys in PUBLIC_NESTED_FIELDS.items():
        if isinstance(card.get(name), dict):
            public[name] = {k: card[name][k] for k in keys if k in card[name]}
    return public


def get_service(request: Request) -> InferenceService:
    return request.app.state.service


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def get_explainer(request: Request) -> Explainer:
    return request.app.state.explainer


Service = Annotated[InferenceService, Depends(get_service)]
Settings = Annotated[ServeSettings, Depends(get_settings)]
ExplainerDep = Annotated[Explainer, Depends(get_explainer)]


@api.post("/v1/predict", response_model=PredictResponse, responses=ERROR_RESPONSES, openapi_extra=PREDICT_BODY,
             summary="Classify one or more images")
async def predict(
    request: Request, service: Service, settings: Settings, explainer: ExplainerDep,
    explain: Annotated[bool, Query(description="add a Grad-CAM heatmap per image (needs the training extra)")] = False,
    frames: Annotated[int, Query(ge=1, le=MAX_VIDEO_FRAMES, description="frames sampled from each video")] = 16,
    every: Annotated[float | None, Query(gt=0, allow_inf_nan=False, description="instead of `frames`: one frame every this many seconds "
                                                           f"from the start (at most {MAX_VIDEO_FRAMES} frames)")] = None,
):
    """Images or videos (MP4, MOV, MKV, WebM, AVI, animated GIF/WebP) as multipart form files
    (field `files`, repeatable), or one as the raw body (`Content-Type: image/*`, `video/*` or
    `application/octet-stream`). One result per file, in order; a bad file among good ones gets
    its `error` and the others their predictions. A video's result is the mean of `frames`
    sampled frames (or of one every `every` seconds), with `shares` and a `frame_strip` of
    thumbnails."""
    sampling = {"frames": frames, "every": every, "max_frames": MAX_VIDEO_FRAMES}
    if not explain:
        return await predict_uploads(request, service, settings, sampling=sampling)
    try:
        with explainer.admitted():
            return await predict_uploads(request, service, settings, explainer, sampling=sampling)
    except ExplainQueueFullError:
        raise HTTPException(503, f"the explain queue is full ({explainer.max_pending} requests): retry shortly, "
                                 "or ask without ?explain=true", headers={"Retry-After": "2"}) from None


async def predict_uploads(request: Request, service: InferenceService, settings: ServeSettings,
                          explainer: Explainer | None = None, sampling: dict | None = None):
    uploads = await read_uploads(request, settings)
    results, decoded = await classify(service, uploads, keep_images=explainer is not None, sampling=sampling)
    if all(r.error for r in results):
        detail = results[0].error if len(results) == 1 else f"none of the {len(results)} images could be classified"
        body = ErrorResponse(error="unprocessable_image", detail=detail, results=results)
        return JSONResponse(body.model_dump(), status_code=422)
    status = await add_heatmaps(explainer, results, decoded) if explainer else None
    classifier = service.classifier
    return PredictResponse(model=classifier.path.name, classes=classifier.classes, results=results, explain=status)


@api.get("/v1/model", summary="The model card's public part: classes, input size, preprocessing, metrics")
async def model_card(service: Service) -> dict:
    return public_card(service.classifier.card)


@router.get("/healthz", response_model=Health, summary="Liveness, whether the model is loaded, and the limits")
async def healthz(service: Service, settings: Settings, explainer: ExplainerDep):
    return Health(status="ok", model_loaded=service.running(),
                  model=service.classifier.path.name, classes=service.classifier.classes,
                  explain=ExplainStatus(available=explainer.available, detail=explainer.unavailable_reason),
                  limits=settings.limits(), batching=service.batching())


# ---------------------------------------------------------------------------- predict's parts


async def read_uploads(request: Request, settings: ServeSettings) -> list[Upload]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await read_multipart(request, settings.max_images)
    if media_type and not media_type.startswith(RAW_BODY_TYPES):
        raise HTTPException(415, f"Content-Type {media_type} is not accepted: send images as multipart/form-data "
                                 f"(field 'files') or one image as the body with an image/* Content-Type")
    body = await request.body()
    if not body:
        raise HTTPException(422, "empty request body: no image to classify")
    return [Upload("image", body)]


async def read_multipart(request: Request, max_images: int) -> list[Upload]:
    # Starlette stops parsing at max_files (a 400 naming the limit) before spooling any more.
    async with request.form(max_files=max_images, max_fields=max_images, max_part_size=MAX_FIELD_BYTES) as form:
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not files:
            others = sorted({key for key, value in form.multi_items() if isinstance(value, UploadFile)})
            hint = f" (files came in field {', '.join(others)})" if others else ""
            raise HTTPException(422, f"no files in the multipart field 'files'{hint}")
        return [Upload(f.filename or f"file {i + 1}", await f.read()) for i, f in enumerate(files)]


async def classify(service: InferenceService, uploads: list[Upload], keep_images: bool = False,
                   sampling: dict | None = None) -> tuple[list[ImageResult], list[Decoded | ImageResult | str]]:
    """Every upload decoded at once on the pool, then their model pass, which joins whatever
    batch runs next; a video is classified whole on the pool (``sampling``: its
    ``predict_video`` options). Unusable files get their reason instead."""
    decoded = await asyncio.gather(*(decode_or_reason(service, u, keep_images, sampling) for u in uploads))
    probs = iter(await service.probabilities([d.array for d in decoded if isinstance(d, Decoded)]))
    classifier = service.classifier
    results = [result_for(u, d, next(probs), classifier) if isinstance(d, Decoded)
               else d if isinstance(d, ImageResult) else ImageResult(name=u.name, error=d)
               for u, d in zip(uploads, decoded)]
    return results, decoded


async def decode_or_reason(service: InferenceService, upload: Upload, keep_image: bool = False,
                           sampling: dict | None = None) -> Decoded | ImageResult | str:
    """The decoded image (a video's whole result), or the one-line reason it is unusable."""
    try:
        if is_video(upload.data):
            return ImageResult.from_prediction(await service.classify_video(upload.data, upload.name, sampling or {}))
        return await service.decode(upload.data, upload.name, keep_image)
    except ImageLoadError as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - a crafted file can trip a decoder in ways no list foresees
        log.exception("unexpected failure decoding %s", upload.name)
        return f"cannot decode this image ({type(exc).__name__})"


def result_for(upload: Upload, decoded: Decoded, probs, classifier: Classifier) -> ImageResult:
    return ImageResult.from_prediction(classifier.to_prediction(upload.name, probs), decoded.width, decoded.height)


async def add_heatmaps(explainer: Explainer, results: list[ImageResult], decoded: list) -> ExplainStatus:
    """Grad-CAM of each classified image's predicted class, on the explain thread (predictions
    meanwhile go on on the model thread)."""
    for result, item in zip(results, decoded):
        if explainer.available and isinstance(item, Decoded):
            caption = f"{result.label} {result.confidence:.0%}"
            result.heatmap_png = await explainer.run(explainer.heatmap_png, item.image, item.array, caption)
    return ExplainStatus(available=explainer.available, detail=explainer.unavailable_reason)
