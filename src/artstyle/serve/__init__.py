"""``artstyle serve``: the classifier over HTTP (FastAPI on uvicorn) with a web page.

    from artstyle.serve import ServeSettings, create_app
    app = create_app(ServeSettings(model="model.onnx"))   # any ASGI server, or TestClient(app)
"""

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name):
    # FastAPI is imported on use, so that `artstyle --help` and the CLI's parser stay fast and
    # work without the serve extra.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
