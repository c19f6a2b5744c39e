"""A tiny order service the shipped STATUS flow looks orders up in, out of the box.

It exists so that ``fetch`` has something real to call before you point ``ORDERS_API`` at your
own service; it answers like one would (JSON, 404 for unknown orders).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_STATUSES = [
    ("being packed", "It should ship within 1 business day."),
    ("shipped", "It's on its way and should arrive in 2-3 days."),
    ("out for delivery", "It should arrive today."),
    ("delivered", "It was left at your front door."),
]


async def order(request: Request) -> JSONResponse:
    number = request.path_params["number"]
    if not (len(number) == 6 and number.isdigit()) or number == "000000":
        return JSONResponse({"error": f"no order {number}"}, status_code=404)
    status, detail = _STATUSES[sum(map(int, number)) % len(_STATUSES)]
    return JSONResponse({"order": number, "status": status, "detail": detail})


routes = [Route("/demo/orders/{number}", order, methods=["GET"])]
app = Starlette(routes=routes)  # served alone by tests and the simulator, in-process
