"""Reading images and labels: one decode per file, at reduced resolution when that is enough.

Images are decoded with OpenCV (as the official code does, EXIF orientation applied) straight
to RGB. JPEG photos that will be shrunk to half their size or less are decoded with libjpeg's
DCT scaling (1/2, 1/4, 1/8), which costs a fraction of a full decode, then resized to the exact
target size so that they stay aligned with labels resized from full resolution.

Labels are read with Pillow so that palette PNGs give their indices, not their colours.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DecodeError",
    "read_bytes",
    "image_size",
    "is_jpeg",
    "reduction",
    "decode_image",
    "decode_reduced",
    "decode_label",
    "target_size",
]

_REDUCED = {1: cv2.IMREAD_COLOR_RGB}
for _k, _flag in (
    (2, cv2.IMREAD_REDUCED_COLOR_2),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (8, cv2.IMREAD_REDUCED_COLOR_8),
):
    _REDUCED[_k] = (_flag & ~cv2.IMREAD_COLOR_BGR) | cv2.IMREAD_COLOR_RGB  # reduced, in RGB
_SWAP_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class DecodeError(ValueError):
    """An image or label file that cannot be read; the message names the file."""


def read_bytes(path: str | Path) -> np.ndarray:
    """The file's bytes as a uint8 array (np.fromfile handles non-ASCII paths, unlike cv2.imread)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise DecodeError(f"{path}: cannot read ({err.strerror or err})") from None
    if data.size == 0:
        raise DecodeError(f"{path}: empty file")
    return data


def image_size(data: np.ndarray, path: str | Path = "<bytes>") -> tuple[int, int]:
    """(width, height) of an encoded image as OpenCV will decode it, from the header only."""
    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1) if img.format == "JPEG" else 1
    except UnidentifiedImageError:
        raise DecodeError(f"{path}: not a readable image (not an image format this tool reads, "
                          "or damaged)") from None
    except (OSError, SyntaxError) as err:
        raise DecodeError(f"{path}: not a readable image ({err})") from None
    if orientation in _SWAP_ORIENTATIONS:
        width, height = height, width
    return width, height


def target_size(width: int, height: int, long_size: int) -> tuple[int, int]:
    """(width, height) with the long side `long_size`, rounded as the official multi_scale_aug."""
    if height > width:
        return int(width * long_size / height + 0.5), long_size
    return long_size, int(height * long_size / width + 0.5)


def _reduction(src_long: int, dst_long: int) -> int:
    """The largest libjpeg scale denominator that still decodes at least `dst_long` pixels."""
    for k in (8, 4, 2):
        if dst_long * k <= src_long:
            return k
    return 1


def is_jpeg(data: np.ndarray) -> bool:
    """Whether the encoded bytes are a JPEG (the only format with reduced-size decoding)."""
    return data[:2].tobytes() == b"\xff\xd8"


def reduction(width: int, height: int, size: tuple[int, int] | None, jpeg: bool) -> int:
    """The libjpeg scale denominator (1, 2, 4 or 8) `decode_image` uses for a `width` x `height`
    file decoded for `size` (None: full size)."""
    if size is None or not jpeg:
        return 1
    return _reduction(max(width, height), max(size))


def decode_image(
    path: str | Path,
    size: tuple[int, int] | None = None,
    data: np.ndarray | None = None,
    exact: bool = True,
) -> np.ndarray:
    """Decode an image to RGB uint8 (H, W, 3); resized (bilinear) to `size` (width, height) if given.

    With `size` much smaller than the file, a JPEG is decoded at 1/2, 1/4 or 1/8 resolution
    first; the result has exactly `size` either way, unless `exact` is False: then the
    (possibly reduced) decode is returned as it is, at least `size` large.
    """
    if data is None:
        data = read_bytes(path)
    k = 1
    if size is not None and is_jpeg(data):  # JPEG: DCT scaling available
        k = reduction(*image_size(data, path), size, jpeg=True)
    image = decode_reduced(path, data, k)
    if exact and size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_LINEAR)
    return image


def decode_reduced(path: str | Path, data: np.ndarray, k: int) -> np.ndarray:
    """Decode to RGB uint8 at 1/`k` of the size (k > 1: JPEG DCT scaling; rounded up by libjpeg)."""
    image = cv2.imdecode(data, _REDUCED[k])
    if image is None:
        raise DecodeError(f"{path}: not a readable image (OpenCV could not decode it)")
    return image


def decode_label(path: str | Path, data: np.ndarray | None = None) -> np.ndarray:
    """Decode a single-channel label PNG to a 2-D integer array (palette PNGs give indices)."""
    if data is None:
        data = read_bytes(path)
    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            if img.mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
                raise DecodeError(
                    f"{path}: label must be a single-channel (L, P or 16-bit) image, got mode {img.mode}"
                )
            if img.mode == "L" and img.format == "PNG":
                label = cv2.imdecode(
                    data, cv2.IMREAD_GRAYSCALE
                )  # faster than Pillow for 8-bit PNGs
                if label is None or label.shape != (img.size[1], img.size[0]):
                    raise DecodeError(
                        f"{path}: not a readable label image (OpenCV could not decode it)"
                    )
            else:
                label = np.asarray(img)  # palette PNGs: the indices, not the colours
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DecodeError(f"{path}: not a readable label image ({err})") from None
    if label.dtype == bool:
        label = label.astype(np.uint8)
    return label
