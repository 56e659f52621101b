"""What stands between the network and the models: the API key, body size limits, image decoding.

The two middlewares are plain ASGI, so a refused request costs no parsing: a wrong or missing
key, or a body over its limit (by Content-Length, or counted while it streams in), is answered
with one JSON error before the request reaches a route. Uploaded images are opened with Pillow
from a short list of formats, and their size is checked from the header before any pixel is
decoded, so a small file that claims a huge picture (a decompression bomb) is refused at once.
"""

from __future__ import annotations

import hmac
import io
import json

from starlette.exceptions import HTTPException

from s2s.api import InputError

MAX_JSON_BYTES = 1 << 20  # request bodies of the JSON routes
MAX_UPLOAD_BYTES = 10 << 20  # the whole multipart body of an image upload
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
PUBLIC = ("/", "/static/")  # the explorer's files: no data, and a browser cannot send a key with them
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DRAIN = 4  # a body up to DRAIN times its limit is read and dropped before the 413; longer: closed


class Refused(InputError):
    """An InputError with its own HTTP status (413 too large, 415 not an image)."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(field, message)
        self.status = status


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"body: larger than {limit} bytes")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


async def send_error(send, status: int, message: str, field: str | None,
                     headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer with the service's JSON error body: {"error": message, "field": field}."""
    body = json.dumps({"error": message, "field": field}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


def _public(path: str) -> bool:
    return path == "/" or any(path.startswith(p) for p in PUBLIC[1:])


class ApiKey:
    """Every request outside the explorer's static files needs the key, sent as
    `Authorization: Bearer KEY` or `X-API-Key: KEY` (compared in constant time)."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not _public(scope["path"]):
            headers = dict(scope["headers"])
            given = headers.get(b"x-api-key", b"")
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() == b"bearer":
                given = given or token.strip()
            if not hmac.compare_digest(given, self.key):
                return await send_error(
                    send, 401, "api_key: missing or wrong: send 'Authorization: Bearer KEY' or "
                    "'X-API-Key: KEY'", "api_key", [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over `MAX_JSON_BYTES` (`MAX_UPLOAD_BYTES` on upload routes) with 413."""

    def __init__(self, app, uploads: tuple[str, ...]):
        self.app, self.uploads = app, uploads

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = MAX_UPLOAD_BYTES if scope["path"] in self.uploads else MAX_JSON_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await send_error(send, 400, "body: Content-Length is not a number", "body")
            if int(declared) > limit:
                if int(declared) <= DRAIN * limit:  # read it, so that the client reads the answer
                    await _drain(receive)
                return await send_error(send, 413, f"body: larger than {limit} bytes", "body")
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        started = False

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as e:  # raised where no route could turn it into a response
            if not started:
                await send_error(send, 413, e.detail, "body")


async def _drain(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def decode_image(data: bytes, field: str = "image"):
    """Upload bytes -> an RGB PIL image, or `Refused` naming `field`."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise Refused(422, field, "is empty")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Refused(413, field, f"is {width}x{height} pixels, more than the "
                              f"{MAX_IMAGE_PIXELS} allowed")
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise Refused(415, field, f"is not an image ({', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError:
        raise Refused(413, field, f"claims more than {MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise Refused(422, field, f"cannot be decoded: {str(e).splitlines()[0] if str(e) else 'broken'}") from None
