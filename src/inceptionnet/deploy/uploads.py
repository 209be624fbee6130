"""Image uploads as the server receives them: a size-capped body read into memory, split into named files
(raw image bytes, or multipart/form-data through python-multipart), each refused with an HTTP status and a
one-line reason when it cannot be used. Nothing is written to disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

RAW_TYPES = ("image/", "application/octet-stream")
MULTIPART = "multipart/form-data"


class UploadError(Exception):
    """A request the server refuses: `status` (400, 413, 415) and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    """One uploaded file: the name the client gave (or "upload") and its bytes."""

    name: str
    data: bytes


async def read_body(chunks: AsyncIterator[bytes], content_length: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes: from the
    Content-Length header before reading, else while streaming (a chunked body that keeps going)."""
    too_large = UploadError(413, f"request body exceeds the upload limit of {limit} bytes")
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def split_uploads(content_type: str | None, body: bytes, max_files: int) -> list[Upload]:
    """The files of a request body: the body itself for an image/* or application/octet-stream request,
    the file parts of a multipart/form-data one. 415 for another content type; 400 for a malformed
    multipart body, no file, or more than `max_files` files."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type.startswith(RAW_TYPES):
        uploads = [Upload("upload", body)]
    elif media_type == MULTIPART:
        uploads = _multipart_files(content_type or "", body)
    else:
        raise UploadError(415, f"unsupported content type {media_type or '(none)'!r}: send image bytes (image/* or "
                               f"application/octet-stream) or {MULTIPART} with one or more files")
    if not uploads:
        raise UploadError(400, "no file in the request: attach an image")
    if len(uploads) > max_files:
        raise UploadError(400, f"{len(uploads)} files in one request; the limit is {max_files}")
    return uploads


def _multipart_files(content_type: str, body: bytes) -> list[Upload]:
    """The file parts of a multipart/form-data body, kept in memory (the body is already size-capped)."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import FormParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data request without a boundary")
    files = []
    # MAX_MEMORY_FILE_SIZE above the body size: python-multipart never spools a part to a temporary file.
    parser = FormParser(MULTIPART, on_field=None, on_file=files.append, boundary=boundary,
                        config={"MAX_MEMORY_FILE_SIZE": len(body) + 1})
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise UploadError(400, f"malformed multipart body ({e})") from None
    uploads = []
    for i, part in enumerate(files):
        part.file_object.seek(0)
        name = (part.file_name or b"").decode("utf-8", "replace") or f"file{i + 1}"
        uploads.append(Upload(name, part.file_object.read()))
    return uploads
