#!/usr/bin/env bash
# Photos per hour of tools/predict.py on one 5472x3078 photo at native resolution (tiled,
# TEST.TILE_SIZE 1024x1024, overlap 256, one scale, no flip), CPU, for W18-Small and W48
# (calibrated random weights: speed does not depend on them), four backends; then how the time
# grows with the photo size (W18-Small, fp32). Usage: bash docs/benchmarks/photos_per_hour.sh DIR
set -euo pipefail
W=${1:-/tmp/pph}; mkdir -p "$W"
declare -A CFG=([w18s]=experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml
                [w48]=experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml)
python - "$W" <<'PY'
import sys, torch
from pathlib import Path
from lib.config import get_config
from lib.core import benchmark as bm
from lib.models import get_seg_model
w = Path(sys.argv[1])
for name, cfg in (("w18s", "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml"),
                  ("w48", "experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml")):
    model = bm.calibrate(get_seg_model(get_config(cfg, []), load_pretrained=False))
    torch.save(model.state_dict(), w / f"{name}.pth")
for h, wd in ((360, 540), (770, 1368), (1539, 2736), (3078, 5472)):
    (w / f"photo_{wd}").mkdir(exist_ok=True)
    bm.write_test_photo(w / f"photo_{wd}" / "p.jpg", h, wd)
PY
for m in w18s w48; do
  python tools/export_onnx.py --cfg ${CFG[$m]} --output $W/$m.onnx --dynamic --height 1024 \
    --width 1024 --int8 $W/photo_5472 --no-check TEST.MODEL_FILE $W/$m.pth > $W/export_$m.log 2>&1
done
run() {  # model backend photo-folder [KEY VALUE ...]
  local m=$1 b=$2 p=$3; shift 3
  local file=$W/$m.pth
  case $b in onnxruntime) file=$W/$m.onnx;; int8) file=$W/${m}_int8.onnx;; esac
  local s=$(date +%s.%N)
  python tools/predict.py --cfg ${CFG[$m]} --input $W/$p --output $W/out_${m}_${b}_$p --overwrite \
    --device cpu TEST.MODEL_FILE $file TEST.TILE_SCALE 1.0 TEST.SCALE_LIST "[1.0]" TEST.FLIP_TEST False "$@" > $W/log_${m}_${b}_$p.txt 2>&1
  local e=$(date +%s.%N)
  printf '%s %s %s %.1f s\n' $m $b $p $(echo "$e - $s" | bc)
}
for m in w18s w48; do
  run $m fp32 photo_5472 TEST.AMP '' MODEL.CHANNELS_LAST False
  run $m best photo_5472 TEST.AMP bf16 TEST.FOLD_BN True MODEL.CHANNELS_LAST True
  run $m onnxruntime photo_5472
  run $m int8 photo_5472
done
for p in photo_540 photo_1368 photo_2736; do run w18s fp32 $p TEST.AMP '' MODEL.CHANNELS_LAST False; done
