"""Train a segmentation network.

python tools/train.py --cfg experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_demo.yaml
torchrun --nproc_per_node=4 tools/train.py --cfg X.yaml TRAIN.LR 0.02
python -m torch.distributed.launch --nproc_per_node=4 tools/train.py --cfg X.yaml
"""

import sys

from lib.core.trainer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
