"""The stack's floor: bare Starlette answering a constant TwiML string, no parsing, no checks.

Not a competitor: it shows how fast the load generator and uvicorn themselves can go, so a
reader can see that neither is what limits the bot or the reference.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks!</Message></Response>'


async def sms(request: Request) -> Response:
    return Response(TWIML, media_type="text/xml")


app = Starlette(routes=[Route("/sms", sms, methods=["POST"])])
