"""List-file segmentation dataset with the official augmentation (the generic "list" dataset).

A list file holds one sample per line, ``image_path<whitespace>label_path`` (test lists: the
image only), with paths relative to ``<DATASET.ROOT>/<DATASET.DATASET>``; a line with a tab is
split on tabs only, so names may hold spaces (`lib.datasets.lists`). Subclasses only say
how raw label values map to class ids (`label_map`) and which class weights they publish.

Training samples follow the official ``gen_sample``: random scale ``0.5 + randint(0, SF) / 10``
of ``BASE_SIZE`` on the long side (image bilinear, label nearest), zero padding of the image
(before normalisation, as the official code pads) and ignore padding of the label up to the
crop, a random crop of ``TRAIN.IMAGE_SIZE`` (width, height), an optional brightness shift,
ImageNet normalisation of RGB, a random horizontal flip and label down-sampling.
Evaluation samples are the whole image and label at full resolution.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from lib.datasets.cache import DecodeCache, Decoded, label_window
from lib.datasets.decode import (
    DecodeError,
    decode_image,
    decode_label,
    decode_reduced,
    image_size,
    is_jpeg,
    read_bytes,
    reduction,
)
from lib.datasets.decode import target_size as scaled_size
from lib.datasets.lists import parse_line
from lib.datasets.transforms import Brightness, DownsampleLabel, HorizontalFlip
from lib.utils.options import grouped

if TYPE_CHECKING:  # only for the annotation: wire_aug imports the generator, which imports us
    from lib.datasets.wire_aug import WireAugment

__all__ = ["DatasetError", "LabelOptions", "ListDataset", "MEAN", "STD", "TrainTransform",
           "label_tables", "normalise", "zoom_view"]

logger = logging.getLogger(__name__)

MEAN = (0.485, 0.456, 0.406)  # ImageNet, RGB
STD = (0.229, 0.224, 0.225)


def normalise(
    rgb: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    """The one image normalisation (training, evaluation, tiled prediction): RGB uint8
    (H, W, 3) -> float32 (3, H, W), (x / 255 - mean) / std, ImageNet's by default."""
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t).contiguous()


LABEL_RESAMPLING = {"centre": 0.5, "official": 0.0}  # offset of the nearest label sample


def zoom_view(
    image: np.ndarray | None, raw: np.ndarray | None, zoom: float, keep: Sequence[int] = ()
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The photo (and its raw label) as if the camera were `zoom` times closer.

    zoom > 1: the centre 1/zoom of the photo (each side), upscaled back to the photo's size,
    bilinear for the photo and nearest (at pixel centres) for the label, so a wire comes out
    `zoom` times wider and the label's band with it. zoom < 1: the whole photo downscaled to
    `zoom` times its size (area averaging for the photo, nearest for the label, except that a
    pixel takes the raw value in `keep` (the wires) where any pixel of that value falls inside
    it: nearest sampling alone would drop parts of a one-pixel curve). Either may be None.
    """
    h, w = (image if image is not None else raw).shape[:2]
    if zoom == 1:
        return image, raw
    if zoom > 1:
        cw, ch = w / zoom, h / zoom
        x0, y0 = (w - cw) / 2, (h - ch) / 2
        # output pixel centre (u + 0.5) samples source x0 + (u + 0.5) / zoom
        matrix = np.array([[1 / zoom, 0.0, x0 + 0.5 / zoom - 0.5], [0.0, 1 / zoom, y0 + 0.5 / zoom - 0.5]])
        out = None if image is None else cv2.warpAffine(
            image, matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE)
        if raw is None:
            return out, None
        xs = np.minimum(np.floor(x0 + (np.arange(w) + 0.5) / zoom).astype(np.intp), w - 1)
        ys = np.minimum(np.floor(y0 + (np.arange(h) + 0.5) / zoom).astype(np.intp), h - 1)
        return out, np.ascontiguousarray(raw[ys[:, None], xs[None, :]])
    size = (max(1, int(round(w * zoom))), max(1, int(round(h * zoom))))
    out = None if image is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if raw is None:
        return out, None
    xs = np.minimum(np.floor((np.arange(size[0]) + 0.5) * w / size[0]).astype(np.intp), w - 1)
    ys = np.minimum(np.floor((np.arange(size[1]) + 0.5) * h / size[1]).astype(np.intp), h - 1)
    small = np.ascontiguousarray(raw[ys[:, None], xs[None, :]])
    for value in keep:
        covered = cv2.resize((raw == value).astype(np.float32), size, interpolation=cv2.INTER_AREA)
        small[covered > 0] = value
    return out, small


def label_tables(
    label_map: dict[int, int] | None, num_classes: int, ignore_label: int
) -> tuple[np.ndarray, np.ndarray]:
    """(allowed raw values as a bool table, raw value -> class id table); 256 entries for uint8.
    `label_map` None: raw values are class ids; the ignore label is allowed and stays ignored."""
    mapping = label_map or {v: v for v in range(num_classes)}
    if ignore_label >= 0:
        mapping = {ignore_label: ignore_label, **mapping}  # raw ignore stays ignored
    size = max(256, max(mapping) + 1)
    allowed = np.zeros(size, dtype=bool)
    lut = np.full(size, ignore_label, dtype=np.int64)
    for raw, cls in mapping.items():
        if raw >= 0:
            allowed[raw], lut[raw] = True, cls
    return allowed, lut


class DatasetError(ValueError):
    """A bad list file or sample; the message names the list file, line and path."""


@dataclass(frozen=True)
class TrainTransform:
    """How a training sample is made from a photo: the official gen_sample (a random scale
    0.5 + randint(0, scale_factor) / 10 of `base_size` on the long side when `multi_scale`,
    pad and random crop of `crop_size` (width, height), a brightness shift of up to
    `brightness_shift` (0: none), a random horizontal flip, label down-sampling by
    `downsample_rate`) and ours: `aug_zoom`, the probability that a crop is also zoomed in by a
    factor drawn log-uniformly from [1, `aug_zoom_max`] (TRAIN.AUG_ZOOM, so wires up to that
    many times wider are seen in training), and `wire_augment`, the opt-in TRAIN.AUG_* steps
    after the crop. `reduced_decode` (DATASET.REDUCED_DECODE) computes only the crop window
    from a reduced decode (the same samples); `label_resampling` (DATASET.LABEL_RESAMPLING)
    is where the nearest label sample is taken."""

    crop_size: tuple[int, int] = (1024, 512)
    base_size: int = 2048
    multi_scale: bool = True
    scale_factor: int = 16
    flip: bool = True
    brightness_shift: int = 0
    downsample_rate: int = 1
    reduced_decode: bool = True
    label_resampling: str = "centre"
    wire_augment: WireAugment | None = None
    aug_zoom: float = 0.0
    aug_zoom_max: float = 4.0

    def after_crop(self) -> tuple:
        """The steps after the crop, in the official order, those that are off left out
        (lib.datasets.transforms): brightness, the TRAIN.AUG_* steps, flip, label down-sampling."""
        steps: list = []
        if self.brightness_shift:
            steps.append(Brightness(int(self.brightness_shift)))
        if self.wire_augment is not None and self.wire_augment.active:
            steps.append(self.wire_augment)
        if self.flip:
            steps.append(HorizontalFlip())
        if self.downsample_rate != 1:
            steps.append(DownsampleLabel(int(self.downsample_rate)))
        return tuple(steps)


@dataclass(frozen=True)
class LabelOptions:
    """How labels are read: `label_dilate` widens the labels of `dilate_classes` by this many
    pixels (WIRE.LABEL_DILATE, for one-pixel-wide wire labels), in every split; `label_fill`
    (training only, TRAIN.LABEL_FILL) first closes gaps of up to this many pixels between
    their label pixels (a morphological closing), so a wide wire drawn as its two edges is
    learnt as one filled band."""

    label_dilate: int = 0
    dilate_classes: tuple[int, ...] = (1,)
    label_fill: int = 0


class ListDataset(torch.utils.data.Dataset):
    """Any N-class data: label values are class ids in [0, num_classes) or the ignore label.

    Items are ``(image (3, H, W) float32, label (H, W) int64, size np.array([H, W]), name)``.
    """

    label_map: dict[int, int] | None = None  # raw label value -> class id; None: identity
    id_values: tuple[int, ...] | None = None  # value written for each class in id PNGs; None: the id
    default_class_weights: tuple[float, ...] | None = None
    expected_num_classes: int | None = None

    def __init__(
        self,
        root: str | Path,
        list_path: str | Path,
        num_classes: int,
        ignore_label: int = -1,
        *,
        augment: bool = False,
        transform: TrainTransform | None = None,
        labels: LabelOptions | None = None,
        zoom: float = 1.0,
        class_weights: list[float] | tuple[float, ...] | None = None,
        skip_bad_samples: bool = False,
        cache_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        """`root`: folder the list paths are relative to; `augment`: training samples made by
        `transform` (a `TrainTransform`), else whole images; `labels`: how labels are read
        (`LabelOptions`). Either may instead be given field by field in `options`
        (`crop_size=(w, h)`, `label_dilate=1`, ...); what is not given keeps its default.

        `cache_dir` (training only): keep each photo's decodes there (DATASET.CACHE_DIR,
        `lib.datasets.cache`), the samples stay the same.
        `zoom` (evaluation only, TEST.ZOOM): each photo as if the camera were closer (> 1: the
        centre 1/zoom crop upscaled zoom times) or further (< 1: the photo downscaled); the
        label follows with nearest sampling before `label_dilate` widens it.
        """
        transform = grouped(TrainTransform, transform, options, rest=True)
        labels = grouped(LabelOptions, labels, options, rest=True)
        if options:
            raise TypeError(f"{type(self).__name__}: unknown options {', '.join(sorted(options))}")
        crop_size, label_resampling = transform.crop_size, transform.label_resampling
        aug_zoom, aug_zoom_max = transform.aug_zoom, transform.aug_zoom_max
        label_fill = labels.label_fill
        if self.expected_num_classes is not None and num_classes != self.expected_num_classes:
            raise DatasetError(
                f"{type(self).__name__} has {self.expected_num_classes} classes, "
                f"but DATASET.NUM_CLASSES is {num_classes}"
            )
        self.root = Path(root)
        self.list_path = Path(list_path)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.augment = augment
        self.crop_w, self.crop_h = int(crop_size[0]), int(crop_size[1])
        self.base_size = transform.base_size
        self.multi_scale = transform.multi_scale
        self.scale_factor = transform.scale_factor
        self.flip = transform.flip
        self.brightness_shift = transform.brightness_shift
        self.downsample_rate = transform.downsample_rate
        self.reduced_decode = transform.reduced_decode
        if label_resampling not in LABEL_RESAMPLING:
            raise ValueError(
                f"DATASET.LABEL_RESAMPLING is {label_resampling!r}; known: {', '.join(LABEL_RESAMPLING)}"
            )
        # "official" is cv2.INTER_NEAREST (source floor(x * src / dst)): against the bilinear image
        # (pixel centres) it moves labels up to half a pixel down and right, which costs thin
        # wires several IoU points; "centre" samples the label at the pixel centres too.
        self.label_offset = LABEL_RESAMPLING[label_resampling]
        self.skip_bad_samples = skip_bad_samples
        wire_augment = transform.wire_augment
        self.wire_augment = wire_augment if wire_augment is not None and wire_augment.active else None
        self.after_crop = transform.after_crop()  # the steps after the crop, a list (transforms.py)
        self.label_dilate = int(labels.label_dilate)
        self.dilate_classes = tuple(int(c) for c in labels.dilate_classes)
        self.bad_samples = 0  # samples skipped in this process (with a warning each)
        self.class_weights = self._class_weights(class_weights)
        self._allowed, self._lut = self._build_lut()
        self.items, self.has_labels = self._read_list()
        if augment and not self.has_labels:
            raise DatasetError(f"{self.list_path}: a training list needs labels on every line")
        if not zoom > 0:
            raise ValueError(f"TEST.ZOOM is {zoom}; it must be greater than 0")
        if not 0 <= aug_zoom <= 1 or not aug_zoom_max >= 1:
            raise ValueError(
                f"TRAIN.AUG_ZOOM is {aug_zoom} and TRAIN.AUG_ZOOM_MAX {aug_zoom_max}; "
                "expected a probability in [0, 1] and a largest zoom >= 1"
            )
        if label_fill < 0:
            raise ValueError(f"TRAIN.LABEL_FILL is {label_fill}; use 0 or more pixels")
        self.label_fill = int(label_fill) if augment else 0
        self.zoom = float(zoom) if not augment else 1.0
        self.aug_zoom = float(aug_zoom) if augment else 0.0
        self.aug_zoom_max = float(aug_zoom_max)
        self.cache = DecodeCache(cache_dir, self._cache_settings()) if cache_dir and augment else None

    # ---- construction -------------------------------------------------------------------

    def label_mapping(self) -> dict[int, int] | None:
        """Raw label value -> class id (or the ignore label); None: values are class ids."""
        return self.label_map

    def _class_weights(self, given: Any) -> torch.Tensor | None:
        weights = list(given) if given else self.default_class_weights
        if weights is None:
            return None
        if len(weights) != self.num_classes:
            raise DatasetError(
                f"class weights have {len(weights)} values for {self.num_classes} classes: {list(weights)}"
            )
        return torch.tensor(weights, dtype=torch.float32)

    def _build_lut(self) -> tuple[np.ndarray, np.ndarray]:
        return label_tables(self.label_mapping(), self.num_classes, self.ignore_label)

    def _read_list(self) -> tuple[list[dict], bool]:
        try:
            text = self.list_path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(
                f"{self.list_path}: cannot read list file ({getattr(err, 'strerror', None) or err})"
            ) from None
        base = self.root
        items, first = [], None  # first: (line number, field count) of the first sample line
        # split on "\n" only: str.splitlines also breaks at characters a file name may hold
        for number, line in enumerate(text.split("\n"), start=1):
            parts = parse_line(line)
            if not parts or line.lstrip().startswith("#"):
                continue
            where = f"{self.list_path}:{number}"
            if len(parts) > 2:
                hint = "" if "\t" in line else " (names with spaces need a tab between the paths)"
                raise DatasetError(
                    f"{where}: expected 'image_path label_path' or 'image_path', got "
                    f"{len(parts)} fields{hint}: {line.strip()!r}"
                )
            if first is None:
                first = (number, len(parts))
            elif len(parts) != first[1]:
                this, other = (
                    ("a label path", "none") if len(parts) == 2 else ("no label path", "one")
                )
                raise DatasetError(
                    f"{where}: {this}, but line {first[0]} has {other} "
                    "(either every line has a label path or none has)"
                )
            item = {
                "image": base / parts[0],
                "label": base / parts[1] if len(parts) == 2 else None,
                "name": Path(parts[0]).stem,
                "where": where,
            }
            missing = [
                p for p in (item["image"], item["label"]) if p is not None and not p.is_file()
            ]
            if missing:
                message = f"{where}: file not found: {missing[0]}"
                if "\t" not in line and (base / line.strip()).is_file():
                    message += f" ({line.strip()!r} is a file: put a tab after a name with spaces)"
                if not self.skip_bad_samples:
                    raise DatasetError(message)
                self.bad_samples += 1
                logger.warning("skipping sample: %s", message)
                continue
            items.append(item)
        if not items:
            raise DatasetError(
                f"{self.list_path}: no samples (empty list file or every line skipped)"
            )
        return items, first[1] == 2

    # ---- samples --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, str]:
        for attempt in range(len(self.items)):
            item = self.items[(index + attempt) % len(self.items)]
            try:
                return self.load(item)
            except (DatasetError, DecodeError) as err:
                if not self.skip_bad_samples:
                    raise DatasetError(f"{item['where']}: {err}") from None
                self.bad_samples += 1
                logger.warning(
                    "skipping bad sample %s: %s (%d skipped so far)",
                    item["where"],
                    err,
                    self.bad_samples,
                )
        raise DatasetError(f"{self.list_path}: every sample is unreadable")

    def load(self, item: dict) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, str]:
        """Read, check and transform one list item."""
        if self.cache is not None:  # training with DATASET.CACHE_DIR: the same decodes, kept
            decoded = self.cache.fetch(item["image"], item["label"], lambda: self._decode_all(item))
            width, height, raw = decoded.width, decoded.height, decoded.label
            source = self._source(width, height, decoded.jpeg, decoded.images.__getitem__)
        else:
            data, width, height, raw = self._open(item, dilate=self.zoom == 1)
            if not self.augment:
                image = decode_image(item["image"], data=data)
                if self.zoom != 1:
                    image, _ = zoom_view(image, None, self.zoom)
                    raw = self._zoom_label(raw, self.zoom) if raw is not None else None
                    height, width = image.shape[:2]
                label = (
                    self._map(raw)
                    if raw is not None
                    else np.full((height, width), self.ignore_label, np.int64)
                )
                return normalise(image), torch.from_numpy(label), np.array([height, width]), item["name"]
            source = self._source(width, height, is_jpeg(data),
                                  lambda k: decode_reduced(item["image"], data, k))
        image, label = self._augment(width, height, raw, source)
        return (
            normalise(image),
            torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
            np.array([height, width]),
            item["name"],
        )

    def _open(
        self, item: dict, dilate: bool = True
    ) -> tuple[np.ndarray, int, int, np.ndarray | None]:
        """(the photo's bytes, its width and height, its label checked and dilated unless
        `dilate` is False, or None)."""
        data = read_bytes(item["image"])
        width, height = image_size(data, item["image"])
        return data, width, height, self._read_label(item, width, height, dilate)

    @staticmethod
    def _source(width: int, height: int, jpeg: bool, at):
        """`source(size)` for `_augment`: `at(k)`, the decode at the libjpeg reduction k that
        `decode_image` would use for `size` (None: the full size)."""
        return lambda size: at(reduction(width, height, size, jpeg))

    def _read_label(
        self, item: dict, width: int, height: int, dilate: bool = True
    ) -> np.ndarray | None:
        """The item's label checked against the image size and the classes, dilated if asked."""
        if item["label"] is None:
            return None
        raw = decode_label(item["label"])
        if raw.shape != (height, width):
            raise DatasetError(
                f"label {item['label']} is {raw.shape[1]}x{raw.shape[0]} but image "
                f"{item['image']} is {width}x{height}"
            )
        self._check_values(raw, item["label"])
        if self.label_fill:
            raw = self._grow(raw, self.label_fill, cv2.MORPH_CLOSE)
        return self._dilate(raw) if self.label_dilate and dilate else raw

    # ---- decode-once cache (DATASET.CACHE_DIR) ----------------------------------------------

    def _cache_settings(self) -> dict:
        """Everything besides the files that decides what `_decode_all` returns."""
        return {
            "scales": self._scales(),
            "reduced_decode": bool(self.reduced_decode),
            "label_dilate": self.label_dilate,
            **({"label_fill": self.label_fill} if self.label_fill else {}),
            "dilate_classes": list(self.dilate_classes),
            "classes": hashlib.sha1(self._lut.tobytes() + self._allowed.tobytes()).hexdigest(),
        }

    def _scales(self) -> list[int] | None:
        """The long sides the random scale (and TRAIN.AUG_ZOOM) can ask for (None: no scaling);
        zoomed sizes on a grid of 2 ** (1/4) steps, fine enough to hold every decode level."""
        if not self.multi_scale and not self.aug_zoom:
            return None
        scales = [0.5 + i / 10.0 for i in range(self.scale_factor + 1)] if self.multi_scale else [1.0]
        if self.aug_zoom:
            steps = int(np.ceil(4 * np.log2(self.aug_zoom_max)))
            zooms = [min(2 ** (k / 4), self.aug_zoom_max) for k in range(steps + 1)]
            scales = [s * z for s in scales for z in zooms]
        return sorted({int(self.base_size * s + 0.5) for s in scales})

    def _decode_all(self, item: dict) -> Decoded:
        """Every decode the augmentation can ask of this item: one per libjpeg reduction."""
        data, width, height, raw = self._open(item)
        jpeg = is_jpeg(data)
        sizes = [scaled_size(width, height, s) for s in self._scales() or [max(width, height)]]
        levels = {reduction(width, height, s, jpeg) for s in sizes} if self.reduced_decode else {1}
        images = {k: decode_reduced(item["image"], data, k) for k in sorted(levels)}
        return Decoded(width, height, images, raw, jpeg)

    def _check_values(self, raw: np.ndarray, path: Path) -> None:
        if raw.dtype == np.uint8:
            present = np.flatnonzero(cv2.calcHist([raw], [0], None, [256], [0, 256]).ravel())
        else:
            present = np.unique(raw)
        bad = [int(v) for v in present if v < 0 or v >= len(self._allowed) or not self._allowed[v]]
        if bad:
            raise DatasetError(
                f"label {path} has values {bad[:8]} outside [0, {self.num_classes}) "
                f"and not the ignore label {self.ignore_label}"
            )

    @property
    def raw_to_class(self) -> np.ndarray:
        """Table from raw label value to class id (the ignore label for unused values)."""
        return self._lut

    def _map(self, raw: np.ndarray) -> np.ndarray:
        return self._lut[raw]

    def labels_at_zooms(self, index: int, zooms: Sequence[float]) -> dict[float, np.ndarray]:
        """Item `index`'s label as class ids at each of `zooms` (as the evaluation samples at
        TEST.ZOOM have it), the label file read once."""
        item = self.items[index]
        raw = self._read_label(item, *image_size(read_bytes(item["image"]), item["image"]), False)
        if raw is None:
            raise DatasetError(f"{item['where']}: no label to zoom")
        return {zoom: self._map(self._zoom_label(raw, zoom)) for zoom in zooms}

    def label_at_zoom(self, index: int, zoom: float) -> np.ndarray:
        """Item `index`'s label as class ids at `zoom`."""
        return self.labels_at_zooms(index, [zoom])[zoom]

    def _zoom_label(self, raw: np.ndarray, zoom: float) -> np.ndarray:
        """A raw label (not dilated) at `zoom` (zoom_view), then dilated (WIRE.LABEL_DILATE)."""
        _, raw = zoom_view(None, raw, zoom, self._wire_values())
        return self._dilate(raw) if self.label_dilate else raw

    def _wire_values(self) -> list[int]:
        """The raw label values of `dilate_classes` (the wires)."""
        return [int(v) for c in self.dilate_classes
                for v in np.flatnonzero(self._allowed & (self._lut == c))]

    def _dilate(self, raw: np.ndarray) -> np.ndarray:
        """Raw label with the pixels of `dilate_classes` widened by `label_dilate` pixels
        (a disc), over pixels that are not ignored."""
        return self._grow(raw, 2 * self.label_dilate + 1, cv2.MORPH_DILATE)

    def _grow(self, raw: np.ndarray, size: int, operation: int) -> np.ndarray:
        """Raw label with the masks of `dilate_classes` dilated or closed (`operation`) by a
        disc `size` pixels across, over pixels that are not ignored."""
        classes = self._lut[raw]
        out = raw.copy()
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        for c in self.dilate_classes:
            values = np.flatnonzero(self._allowed & (self._lut == c))  # raw values of class c
            if values.size == 0:
                continue
            mask = (classes == c).astype(np.uint8)
            grown = cv2.morphologyEx(mask, operation, kernel).astype(bool)
            out[grown & (classes != self.ignore_label)] = values[0]
        return out

    def _augment(self, width: int, height: int, raw, source):
        """The official gen_sample on a decoded-once image: scale, pad+crop, brightness, flip.

        `source(size)`: the image decoded for `size` (None: full size), at least that large.
        """
        if self.multi_scale:
            rand_scale = 0.5 + random.randint(0, self.scale_factor) / 10.0
            size = scaled_size(width, height, int(self.base_size * rand_scale + 0.5))
        else:
            rand_scale, size = None, (width, height)
        if self.aug_zoom and random.random() < self.aug_zoom:  # (ours) TRAIN.AUG_ZOOM
            zoom = float(np.exp(random.uniform(0.0, np.log(self.aug_zoom_max))))
            long_side = self.base_size * rand_scale if rand_scale is not None else max(width, height)
            size = scaled_size(width, height, int(long_side * zoom + 0.5))
        if self.reduced_decode:
            image, label = self._scaled_crop(source(size), width, height, raw, size)
        else:  # the official order: resize the whole image and label, then pad and crop
            image, raw = np.array(source(None)), np.asarray(raw)  # (a cached one is read-only)
            if size != (width, height):
                image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
                nearest = cv2.INTER_NEAREST_EXACT if self.label_offset else cv2.INTER_NEAREST
                raw = cv2.resize(raw, size, interpolation=nearest)
            image, label = self._random_crop(image, raw)
        for step in self.after_crop:  # brightness, TRAIN.AUG_*, flip, label down-sampling
            image, label = step(image, label, random)
        return image, label

    def _scaled_crop(
        self,
        image: np.ndarray,
        width: int,
        height: int,
        raw,
        size: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scale to `size`, pad and crop, computing only the crop window (same random draws).

        `image` is the photo decoded at reduced resolution when `size` allows; only the window is
        resampled, with cv2.resize's bilinear pixel-centre mapping; the label window uses the
        nearest mapping of the full-image path (DATASET.LABEL_RESAMPLING), so labels are equal.
        """
        tw, th = size
        x = random.randint(0, max(tw, self.crop_w) - self.crop_w)
        y = random.randint(0, max(th, self.crop_h) - self.crop_h)
        vw, vh = min(self.crop_w, tw - x), min(self.crop_h, th - y)  # the part that is not padding
        sx, sy = image.shape[1] / tw, image.shape[0] / th
        matrix = np.array([[sx, 0.0, (x + 0.5) * sx - 0.5], [0.0, sy, (y + 0.5) * sy - 0.5]])
        window = cv2.warpAffine(
            image,
            matrix,
            (vw, vh),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        c = self.label_offset  # 0.5: sample at pixel centres (INTER_NEAREST_EXACT); 0: official
        xs = np.minimum(
            np.floor((np.arange(x, x + vw) + c) * (1.0 / (tw / width))).astype(np.intp), width - 1
        )
        ys = np.minimum(
            np.floor((np.arange(y, y + vh) + c) * (1.0 / (th / height))).astype(np.intp), height - 1
        )
        label = self._map(label_window(raw, ys, xs))
        if (vh, vw) == (self.crop_h, self.crop_w):
            return window, label
        out_image = np.zeros((self.crop_h, self.crop_w, 3), np.uint8)
        out_label = np.full((self.crop_h, self.crop_w), self.ignore_label, np.int64)
        out_image[:vh, :vw], out_label[:vh, :vw] = window, label
        return out_image, out_label

    def _random_crop(self, image: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pad (image 0, label ignore) to the crop size and crop at random, as rand_crop does."""
        h, w = raw.shape
        x = random.randint(0, max(w, self.crop_w) - self.crop_w)
        y = random.randint(0, max(h, self.crop_h) - self.crop_h)
        sub_image = image[y : y + self.crop_h, x : x + self.crop_w]
        sub_label = self._map(raw[y : y + self.crop_h, x : x + self.crop_w])
        if sub_label.shape == (self.crop_h, self.crop_w):
            return sub_image, sub_label
        out_image = np.zeros((self.crop_h, self.crop_w, 3), np.uint8)
        out_label = np.full((self.crop_h, self.crop_w), self.ignore_label, np.int64)
        sh, sw = sub_label.shape
        out_image[:sh, :sw], out_label[:sh, :sw] = sub_image, sub_label
        return out_image, out_label

