"""Evaluate a trained network on DATASET.TEST_SET (metrics table + json, prediction PNGs).

python tools/test.py --cfg X.yaml [TEST.MODEL_FILE path.pth] [TEST.SCALE_LIST "[0.5,1,1.5]"]
torchrun --nproc_per_node=4 tools/test.py --cfg X.yaml
"""

import sys

from lib.core.evaluator import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
