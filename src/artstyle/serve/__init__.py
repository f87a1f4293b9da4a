"""``artstyle serve``: the classifier over HTTP (FastAPI on uvicorn) with a web page.

    from artstyle.serve import ServeSettings, create_app
    app = create_app(ServeSettings(model="model.onnx"))   # any ASGI server, or TestClient(app)
"""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
