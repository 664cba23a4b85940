"""Compute class weights from the label statistics of a dataset config's training list.

    python tools_jss/class_weights.py --cfg experiments/daodixian_seg/X.yaml --method sqrt
Prints pixel counts, frequencies and the weights to put in DATASET.CLASS_WEIGHTS.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import sys

from tqdm import tqdm

from lib.config import ConfigError, get_config
from lib.datasets import DatasetError, build_dataset
from lib.datasets.stats import METHODS, class_weights, pixel_counts
from tools import cli


def main(argv: list[str] | None = None) -> int:
    parser = cli.tool_parser(__doc__)
    parser.add_argument("--split", default="train", choices=["train", "val", "extra"])
    parser.add_argument("--method", default="sqrt", choices=METHODS)
    args = cli.parse(parser, argv)
    try:
        cfg = get_config(args.cfg, args.opts)
        dataset = build_dataset(cfg, "val" if args.split == "val" else args.split)
        paths = [item["label"] for item in dataset.items]
        counts = pixel_counts(
            tqdm(paths, desc="labels", disable=None), dataset.raw_to_class, dataset.num_classes
        )
        weights = class_weights(counts, args.method)
    except (ConfigError, DatasetError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    freq = counts / max(counts.sum(), 1)
    for c, (n, f, w) in enumerate(zip(counts, freq, weights)):
        print(f"class {c}: {n} pixels ({100 * f:.3f}%), weight {w:.4f}")
    print("DATASET.CLASS_WEIGHTS: [" + ", ".join(f"{w:.4f}" for w in weights) + "]")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130
