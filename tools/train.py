"""Train a segmentation network (HRNet / HRNet + OCR) from an experiment yaml file.

    python tools/train.py --cfg experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_demo.yaml
    torchrun --nproc_per_node=4 tools/train.py --cfg X.yaml TRAIN.LR 0.02
    python -m torch.distributed.launch --nproc_per_node=4 tools/train.py --cfg X.yaml

Checkpoints go to OUTPUT_DIR/<dataset>/<cfg name>/ (checkpoint.pth.tar after every epoch,
best.pth, final_state.pth), logs and tensorboard events to LOG_DIR. A killed or interrupted run
continues with TRAIN.RESUME True. Exit status: 0 done, 1 stopped by an error after saving a
checkpoint (resumable), 2 nothing done (bad input, one line on stderr), 130 interrupted.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import sys

from lib.config import config_name, get_config
from lib.core.training import Progress, train
from tools import cli


def parse_args(argv=None, default_cfg: str | None = None):
    return cli.parse(cli.tool_parser(__doc__, cfg=default_cfg or True, distributed=True), argv)


def main(argv=None, default_cfg: str | None = None) -> int:
    args = parse_args(argv, default_cfg)
    progress = Progress()

    def work() -> None:
        train(get_config(args.cfg, args.opts), config_name(args.cfg), args.local_rank, progress)

    return cli.run(
        work,
        partly_done=lambda: progress.resumable,
        interrupted=progress.interrupted_message,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
