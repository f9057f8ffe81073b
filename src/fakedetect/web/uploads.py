"""Request bodies: uploads kept in memory, and unwanted bodies drained so that every client reads its answer."""

from __future__ import annotations

import io
import time

from flask import Flask, Request

from fakedetect.web.guards import token_ok

# How much of an unwanted request body the app reads (and throws away) so that the client gets to read the
# answer; see DrainUnreadBody. Past either bound the connection is just closed.
DRAIN_MAX_BYTES = 2 * 1024**3
DRAIN_MAX_SECONDS = 60.0  # well inside gunicorn's --timeout 120, which kills a sync worker busy longer
_DRAIN_CHUNK = 1024 * 1024  # gunicorn's Body reads at most 1 MiB per step: larger reads gain nothing
TOO_LARGE = "fakedetect.body_too_large"


def too_large_message(limit_bytes: int) -> str:
    return f"upload too large: the limit is {limit_bytes / 1024 / 1024:g} MB"


def _drain(stream, left: int | None, max_bytes: int, max_seconds: float) -> bool:
    """Reads and discards ``left`` bytes of ``stream`` (None: to its end) in 1 MiB pieces, never keeping them.

    Stops at ``max_bytes`` or ``max_seconds``; returns True when it reached the end of the body.
    """
    deadline, drained = time.monotonic() + max_seconds, 0
    while left is None or left > 0:
        if drained >= max_bytes or time.monotonic() > deadline:
            return False
        try:
            data = stream.read(_DRAIN_CHUNK if left is None else min(_DRAIN_CHUNK, left))
        except Exception:  # noqa: BLE001 - client gone, or a malformed chunked body: nothing more to read
            return False
        if not data:
            return left is None
        drained += len(data)
        if left is not None:
            left -= len(data)
    return True


class _CountingInput:
    """wsgi.input as the app sees it: counts the bytes it reads and notes when it reached the end."""
    def __init__(self, stream):
        self._stream, self.nread, self.at_end = stream, 0, False

    def _seen(self, data: bytes, size) -> bytes:
        self.nread += len(data)
        if not data and size != 0:
            self.at_end = True
        return data

    def read(self, size=-1):
        return self._seen(self._stream.read(size), size)

    def readline(self, size=-1):
        return self._seen(self._stream.readline(size), size)

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


class DrainUnreadBody:
    """WSGI middleware: the client gets to read every answer, even one given before its upload was read.

    The problem: an HTTP/1.1 client such as urllib, requests (urllib3) or curl sends the whole request body
    before it reads the response. A server that answers 413 (or 401, or anything) without reading the body and
    then closes the socket leaves unread bytes in its receive buffer; the kernel then resets the connection,
    and the client gets "Broken pipe" or "Connection reset" instead of the answer. gunicorn's own lingering
    close drains only 64 KiB for 2 s. "Expect: 100-continue" does not help either: gunicorn answers
    "100 Continue" itself before the app sees the request, and urllib and requests never send it anyway.

    The mechanism chosen: read and discard the unwanted body, then answer. It is the only one that works for
    every client, because every client is still sending. Concretely:

    - With an API token set, a request without it: an over-limit Content-Length is not read at all (401 on
      /api/, 413 elsewhere, with ``Connection: close``; a client still sending may see a reset instead), and an
      unread rest of any other body is drained up to MAX_CONTENT_LENGTH only.
    - Content-Length over MAX_CONTENT_LENGTH otherwise: the body is read in 1 MiB pieces and thrown away (the worker's
      memory does not grow with it), the app sees an empty body, and a ``before_request`` hook answers 413
      with the JSON reason on every route. A declared length over ``UPLOAD_DRAIN_MAX_BYTES`` (2 GiB) is not
      read at all: the 413 goes out at once and the connection is closed.
    - A chunked body, or a body the app did not read to its end (a 401, a 400, a chunked upload that Werkzeug
      stopped at the limit with a 413): after the app has answered, what is left is read and discarded the
      same way before the answer goes out.
    - Both stop after ``UPLOAD_DRAIN_MAX_BYTES`` or ``UPLOAD_DRAIN_MAX_SECONDS`` (60 s, inside gunicorn's
      120 s worker timeout); the connection is then closed and a client still sending sees a reset. A slow
      client could hold a sync worker as long before this change, so this adds no new way to tie one up.

    413 answers carry ``Connection: close`` (gunicorn's sync worker closes every connection anyway).
    """
    def __init__(self, wsgi_app, flask_app: Flask):
        self.wsgi_app, self.flask_app = wsgi_app, flask_app

    def __call__(self, environ, start_response):
        cfg = self.flask_app.config
        limit = cfg.get("MAX_CONTENT_LENGTH")
        max_bytes = int(cfg.get("UPLOAD_DRAIN_MAX_BYTES", DRAIN_MAX_BYTES))
        max_seconds = float(cfg.get("UPLOAD_DRAIN_MAX_SECONDS", DRAIN_MAX_SECONDS))
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            length = None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()

        def respond(status, headers, exc_info=None):
            if status.startswith("413") and not any(k.lower() == "connection" for k, _ in headers):
                headers = [*headers, ("Connection", "close")]
            return start_response(status, headers, exc_info)

        def respond_close(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            return start_response(status, [*headers, ("Connection", "close")], exc_info)

        # With an API token set, a request without it is never drained past the upload limit, whatever its path
        # or transfer encoding: without the token nobody makes the server read 2 GiB.
        authorised = token_ok(cfg.get("API_TOKEN"), environ.get("HTTP_AUTHORIZATION", ""))
        if not authorised and limit is not None:
            max_bytes = min(max_bytes, limit)
        if limit is not None and length is not None and length > limit:
            if not authorised:
                # Nothing of the body is read. A 401 (on /api/) or a 413 goes out and the connection is closed;
                # a client still sending may see a connection reset instead of the answer.
                environ["wsgi.input"] = io.BytesIO()
                environ.pop("CONTENT_LENGTH", None)
                if not environ.get("PATH_INFO", "").lstrip("/").startswith("api/"):
                    environ[TOO_LARGE] = True
                return self.wsgi_app(environ, respond_close)
            if length <= max_bytes:
                _drain(environ["wsgi.input"], length, max_bytes, max_seconds)
            environ["wsgi.input"] = io.BytesIO()
            environ[TOO_LARGE] = True
            return self.wsgi_app(environ, respond)
        if not chunked and not length:
            return self.wsgi_app(environ, respond)
        body = environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])
        try:
            return self.wsgi_app(environ, respond)
        finally:
            # Flask has built the whole answer by now, and the server sends nothing before it gets it back.
            if not body.at_end and (length is None or body.nread < length):
                _drain(body, None if length is None else length - body.nread, max_bytes, max_seconds)


class InMemoryRequest(Request):
    """Uploads stay in memory: Werkzeug would spool a file part over 500 KB to a temporary file on disk.
    MAX_CONTENT_LENGTH bounds the memory they take."""
    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()
