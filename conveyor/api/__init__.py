"""The HTTP service: the REST API of SPEC section 4, live events, the HTTP worker protocol, health and metrics.

>>> from conveyor.api import create_app
>>> api = create_app(conveyor)                  # an ASGI app: uvicorn, or `conveyor serve`

or mount only the routes in your own FastAPI app:

>>> app.include_router(create_router(conveyor), prefix="/api/v1")
"""

from conveyor.api.app import API_PREFIX, create_app
from conveyor.api.events import EventHub
from conveyor.api.routes import create_router

__all__ = ["API_PREFIX", "EventHub", "create_app", "create_router"]
