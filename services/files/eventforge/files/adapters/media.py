"""Decoding verified uploads: images with Pillow (dimensions, thumbnail), PDFs with pypdf.

Everything here reads untrusted bytes, so every failure of a decoder — whatever exception it
raises — means the file is unreadable, never that the worker crashes.
"""

from __future__ import annotations

import io
import logging

from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf import PdfReader

from eventforge.files.domain.content import IMAGE_TYPES, PDF
from eventforge.files.domain.model import ImageInfo
from eventforge.files.service_layer.ports import (
    Inspection,
    MediaProcessor,
    RenderedOutput,
    UnreadableContent,
)

MAX_IMAGE_PIXELS = 40_000_000
"""Larger images are refused before decoding (a decompression bomb fits in a few kilobytes)."""
THUMBNAIL_EDGE = 256
MAX_PDF_PAGES = 10_000

_PILLOW_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})


class PillowPdfProcessor(MediaProcessor):
    def __init__(self) -> None:
        # Pillow raises DecompressionBombError above twice this, warns above it; the explicit
        # check below refuses anything above it before a pixel is decoded.
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        # pypdf logs a warning for each repair it attempts on a broken file: noise, not news.
        logging.getLogger("pypdf").setLevel(logging.ERROR)

    def process(self, *, content_type: str, data: bytes) -> Inspection:
        if content_type in IMAGE_TYPES:
            return self._image(content_type, data)
        if content_type == PDF:
            return Inspection(page_count=self._page_count(data))
        return Inspection()

    def _image(self, content_type: str, data: bytes) -> Inspection:
        try:
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format != _PILLOW_FORMATS[content_type]:
                    raise UnreadableContent(f"decodes as {probe.format}")
                width, height = probe.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UnreadableContent(
                        f"{width}x{height} is over the {MAX_IMAGE_PIXELS}-pixel limit"
                    )
                probe.verify()  # checksums and structure, without decoding pixels
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                thumbnail = _thumbnail(image)
        except UnreadableContent:
            raise
        except Image.DecompressionBombError as error:
            raise UnreadableContent(f"decompression bomb: {error}") from error
        except UnidentifiedImageError as error:
            raise UnreadableContent("no decoder recognises it") from error
        except Exception as error:  # any decoder failure means unreadable
            raise UnreadableContent(f"{type(error).__name__}: {error}") from error
        output = RenderedOutput("thumbnail", "thumbnail.png", "image/png", thumbnail)
        return Inspection(image=ImageInfo(width, height), outputs=(output,))

    @staticmethod
    def _page_count(data: bytes) -> int:
        # Readers look for the end marker in the last kilobyte; without it the file was cut short
        # (the lenient parser below would otherwise repair what it can of a truncated file).
        if b"%%EOF" not in data[-1024:]:
            raise UnreadableContent("truncated: no %%EOF marker at the end")
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise UnreadableContent("encrypted PDFs are not accepted")
            pages = len(reader.pages)
        except UnreadableContent:
            raise
        except Exception as error:  # any parser failure means unreadable
            raise UnreadableContent(f"{type(error).__name__}: {error}") from error
        if not 1 <= pages <= MAX_PDF_PAGES:
            raise UnreadableContent(f"has {pages} pages; 1-{MAX_PDF_PAGES} are accepted")
        return pages


def _thumbnail(image: Image.Image) -> bytes:
    """A PNG at most THUMBNAIL_EDGE pixels on its longer side, upright per its EXIF data."""
    upright = ImageOps.exif_transpose(image)
    if upright.mode not in _PNG_MODES:
        upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
    upright.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
    buffer = io.BytesIO()
    upright.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
