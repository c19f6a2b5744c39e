"""The naive reference: the webhook every Twilio tutorial writes, nothing more.

Starlette ``await request.form()``, ``RequestValidator(token).validate(url, form, signature)``
against the URL the request came to, and ``MessagingResponse`` echoing the Body. The benchmark
serves it with uvicorn exactly like the bot (httptools, uvloop, no access log):

    TWILIO_AUTH_TOKEN=... python -m uvicorn bench.naive_app:app --http httptools --loop uvloop --no-access-log
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

AUTH_TOKEN = os.environ["TWILIO_AUTH_TOKEN"]


async def sms(request: Request) -> Response:
    form = await request.form()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(AUTH_TOKEN).validate(str(request.url), form, signature):
        return Response("invalid signature", status_code=403)
    reply = MessagingResponse()
    reply.message(f"You said: {form.get('Body', '')}")
    return Response(str(reply), media_type="text/xml")


app = Starlette(routes=[Route("/sms", sms, methods=["POST"])])
