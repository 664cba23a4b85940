"""Train on power-line photos (daodixian_seg): tools/train.py with the power-line config as default.

    python tools/train_daodixian_seg.py [--cfg X.yaml] [KEY VALUE ...]
    torchrun --nproc_per_node=N tools/train_daodixian_seg.py --cfg experiments/daodixian_seg/X.yaml
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import sys
from pathlib import Path

from tools.train import main

DEFAULT_CFG = Path(__file__).resolve().parents[1] / (
    "experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml"
)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], default_cfg=str(DEFAULT_CFG)))
