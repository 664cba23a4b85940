"""Training-sample throughput on a 5472x3078 JPEG photo: ours vs the seed's decode-twice way.

    python tools_jss/bench_decode.py --repeats 17
Per sample, one thread (what one loader worker does): read + decode + random scale at
BASE_SIZE 2048 + pad/crop 1024x512 + normalise. The seed decoded with Pillow to check the
photo, decoded again with OpenCV, then resized the whole photo. Prints median ms and samples/s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from lib.datasets.base import ListDataset
from lib.datasets.synthetic import make_image


def _image_only(path: Path, base_size: int, repeats: int) -> None:
    """The image part alone at scale 1.0 (long side = BASE_SIZE), as issue 6 defines the target."""
    from lib.datasets.decode import decode_image, image_size, read_bytes, target_size

    size = target_size(5472, 3078, base_size)

    def seed_way() -> None:
        Image.open(path).convert("RGB")
        cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_LINEAR)

    def ours() -> None:
        data = read_bytes(path)
        image_size(data, path)
        decode_image(path, size, data=data)

    medians = []
    for name, fn in (
        ("seed: image decoded twice + resize", seed_way),
        ("ours: image decoded once, reduced", ours),
    ):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
        print(f"{name:52s} median {1000 * medians[-1]:7.1f} ms  {1 / medians[-1]:6.2f} samples/s")
    print(f"speed-up, image at scale 1.0: {medians[0] / medians[1]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=17,
        help="samples per variant (17 = every scale draw once on average)",
    )
    parser.add_argument("--base-size", type=int, default=2048)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        image, polygons = make_image(np.random.default_rng(0), 5472, 3078)
        cv2.imwrite(
            str(root / "photo.jpg"),
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
        label = np.zeros((3078, 5472), np.uint8)
        cv2.fillPoly(label, [p.astype(np.int32) for p in polygons], 1)
        Image.fromarray(label).save(root / "photo.png")
        (root / "l.lst").write_text("photo.jpg photo.png\n")
        common = dict(
            num_classes=2,
            ignore_label=255,
            augment=True,
            crop_size=(1024, 512),
            base_size=args.base_size,
        )
        variants = {
            "seed: Pillow check + OpenCV decode + full resize": ListDataset(
                root, root / "l.lst", reduced_decode=False, **common
            ),
            "ours: one decode (reduced) + crop-window resample": ListDataset(
                root, root / "l.lst", reduced_decode=True, **common
            ),
        }
        results = {}
        for name, dataset in variants.items():
            seed_way = name.startswith("seed")
            times = []
            random.seed(0)
            for i in range(args.repeats + 1):
                start = time.perf_counter()
                if seed_way:
                    Image.open(root / "photo.jpg").convert("RGB")  # the seed's extra decode
                dataset[0]
                if i:  # the first run is a warm-up
                    times.append(time.perf_counter() - start)
            results[name] = statistics.median(times)
            print(
                f"{name:52s} median {1000 * results[name]:7.1f} ms  {1 / results[name]:6.2f} samples/s"
            )
        seed, ours = results.values()
        print(f"speed-up, whole sample (image + label): {seed / ours:.2f}x")
        _image_only(root / "photo.jpg", args.base_size, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
