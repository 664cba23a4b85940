"""Default configuration: every key of the official experiment schema plus this project's own.

Each key carries a one-line comment. Keys marked "(ours)" do not exist in the official code;
they default to the official behaviour, so an official yaml file means the same thing here.
Keys marked "kept for official yaml files; not read" are accepted and ignored. The old names
of the WIRE keys (TEST.WIRE_CLASSES, TEST.WIRE_TOLERANCE, TEST.WIRE_THRESHOLD,
DATASET.LABEL_DILATE) are not keys here: lib.config reads them into WIRE (RENAMED_KEYS).
"""

from yacs.config import CfgNode as CN

_C = CN()

_C.OUTPUT_DIR = "output"  # checkpoints go to OUTPUT_DIR/<dataset>/<cfg name>/
_C.LOG_DIR = "log"  # tensorboard and text logs go to LOG_DIR/<dataset>/<cfg name>_<time>/
_C.GPUS = (0,)  # kept for official yaml files; not read (the process count comes from torchrun)
_C.WORKERS = 4  # data-loader worker processes per rank
_C.PRINT_FREQ = 20  # iterations between log lines
_C.AUTO_RESUME = False  # resume from OUTPUT_DIR/.../checkpoint.pth.tar when it exists
_C.PIN_MEMORY = True  # pinned host memory for the loaders (used only with CUDA)
_C.RANK = 0  # kept for official yaml files; not read (the rank comes from the environment)
_C.SEED = 304  # (ours) seed for python, numpy and torch on every rank (rank added)
_C.DETERMINISTIC = False  # (ours) deterministic algorithms (exact resume on CPU)

_C.CUDNN = CN()
_C.CUDNN.BENCHMARK = True  # cudnn autotuner
_C.CUDNN.DETERMINISTIC = False  # deterministic cudnn kernels
_C.CUDNN.ENABLED = True  # use cudnn at all

_C.MODEL = CN()
_C.MODEL.NAME = "seg_hrnet"  # seg_hrnet | seg_hrnet_ocr
_C.MODEL.PRETRAINED = ""  # weights loaded at build time (ImageNet, Cityscapes or our own)
_C.MODEL.PRETRAINED_SKIP_HEAD = False  # (ours) drop classifier weights whose shape differs
_C.MODEL.ALIGN_CORNERS = True  # align_corners of every bilinear resize
_C.MODEL.NUM_OUTPUTS = 1  # 1 for seg_hrnet, 2 ([aux, main]) for seg_hrnet_ocr
_C.MODEL.CHANNELS_LAST = False  # (ours) run the model in channels_last memory format
_C.MODEL.REFINE_CHANNELS = 0  # (ours) refine the main output to full input resolution with this many channels (0: off)
_C.MODEL.EXTRA = CN(new_allowed=True)  # backbone description: FINAL_CONV_KERNEL, STAGE1..4
_C.MODEL.OCR = CN()
_C.MODEL.OCR.MID_CHANNELS = 512  # width of the pixel representation fed to OCR
_C.MODEL.OCR.KEY_CHANNELS = 256  # width of the query/key space of object attention
_C.MODEL.OCR.DROPOUT = 0.05  # dropout before the OCR classifier
_C.MODEL.OCR.SCALE = 1  # down-sampling factor inside object attention (1: none)

_C.LOSS = CN()
_C.LOSS.USE_OHEM = False  # online hard example mining on the main output
_C.LOSS.OHEMTHRES = 0.9  # OHEM probability threshold
_C.LOSS.OHEMKEEP = 100000  # OHEM minimum number of kept pixels
_C.LOSS.CLASS_BALANCE = False  # kept for official yaml files; not read (the loss takes DATASET.CLASS_WEIGHTS, else the dataset's own)
_C.LOSS.BALANCE_WEIGHTS = [1.0]  # weight of each output, in the model's output order
_C.LOSS.OHEM_AUX_MEAN = "official"  # (ours) aux term under OHEM: official | weighted
_C.LOSS.SKELETON_RECALL = 0.0  # (ours) weight of a wire skeleton-recall term on the main output (0: off)
_C.LOSS.SKELETON_ITERS = 3  # (ours) soft-skeleton iterations of that term (half the widest wire, in px)
_C.LOSS.DICE = 0.0  # (ours) weight of a soft-Dice (soft wire F1) term on the main output (0: off)

_C.DATASET = CN()
_C.DATASET.ROOT = "data/"  # root that list-file paths are relative to (with the dataset name)
_C.DATASET.DATASET = "cityscapes"  # cityscapes | daodixian_seg | list
_C.DATASET.NUM_CLASSES = 19  # number of classes the model predicts
_C.DATASET.TRAIN_SET = "list/cityscapes/train.lst"  # training list, relative to ROOT
_C.DATASET.EXTRA_TRAIN_SET = ""  # list used for the TRAIN.EXTRA_EPOCH phase
_C.DATASET.MIX_SET = ""  # (ours) a second training list (e.g. generated photos) mixed into every epoch at MIX_RATIO
_C.DATASET.MIX_ROOT = ""  # (ours) root that MIX_SET and its paths are relative to (empty: ROOT)
_C.DATASET.MIX_RATIO = 0.0  # (ours) MIX_SET samples per TRAIN_SET sample in each epoch (0: off)
_C.DATASET.TEST_SET = "list/cityscapes/val.lst"  # validation / test list, relative to ROOT
_C.DATASET.SKIP_BAD_SAMPLES = False  # (ours) skip and count unreadable samples, else fail
_C.DATASET.CLASS_WEIGHTS = []  # (ours) explicit class weights; empty: the dataset's own
_C.DATASET.LABEL_RESAMPLING = "centre"  # (ours) label scaling: centre (pixel centres, aligned with the image) | official (cv2 INTER_NEAREST: up to 1/2 px down-right)
_C.DATASET.REDUCED_DECODE = True  # (ours) fast training path: 1/2-1/8 JPEG decode, resample only the crop
_C.DATASET.CACHE_DIR = ""  # (ours) folder that keeps each training photo's decodes (same samples, decoded once); empty: off

_C.TRAIN = CN()
_C.TRAIN.FREEZE_LAYERS = ""  # comma-separated name prefixes frozen for FREEZE_EPOCHS
_C.TRAIN.FREEZE_EPOCHS = -1  # epochs to keep FREEZE_LAYERS frozen (-1: never)
_C.TRAIN.NONBACKBONE_KEYWORDS = []  # parameter-name parts that get NONBACKBONE_MULT * LR
_C.TRAIN.NONBACKBONE_MULT = 10  # learning-rate multiplier for those parameters
_C.TRAIN.IMAGE_SIZE = [1024, 512]  # training crop, width x height
_C.TRAIN.BASE_SIZE = 2048  # long side before random scaling
_C.TRAIN.DOWNSAMPLERATE = 1  # label down-sampling factor
_C.TRAIN.FLIP = True  # random horizontal flip
_C.TRAIN.MULTI_SCALE = True  # random scale 0.5 + randint(0, SCALE_FACTOR) / 10
_C.TRAIN.SCALE_FACTOR = 16  # see MULTI_SCALE
_C.TRAIN.RANDOM_BRIGHTNESS = False  # random brightness shift
_C.TRAIN.RANDOM_BRIGHTNESS_SHIFT_VALUE = 10  # largest brightness shift, in 0..255 units
_C.TRAIN.LR_FACTOR = 0.1  # kept for official yaml files; not read (no step schedule)
_C.TRAIN.LR_STEP = [90, 110]  # kept for official yaml files; not read (no step schedule)
_C.TRAIN.LR = 0.01  # base learning rate of the poly schedule
_C.TRAIN.EXTRA_LR = 0.001  # base learning rate of the EXTRA_EPOCH phase
_C.TRAIN.OPTIMIZER = "sgd"  # sgd (the official choice) | adamw
_C.TRAIN.MOMENTUM = 0.9  # SGD momentum
_C.TRAIN.WD = 0.0001  # weight decay
_C.TRAIN.NESTEROV = False  # Nesterov momentum
_C.TRAIN.IGNORE_LABEL = -1  # label value excluded from loss and metrics
_C.TRAIN.BEGIN_EPOCH = 0  # first epoch
_C.TRAIN.END_EPOCH = 484  # epochs of the main phase
_C.TRAIN.EXTRA_EPOCH = 0  # epochs of the extra phase on EXTRA_TRAIN_SET
_C.TRAIN.RESUME = False  # resume from OUTPUT_DIR/.../checkpoint.pth.tar
_C.TRAIN.OVERWRITE = False  # (ours) a new run may replace an earlier run's files in its output folder
_C.TRAIN.BATCH_SIZE_PER_GPU = 32  # batch size per process
_C.TRAIN.SHUFFLE = True  # shuffle the training set
_C.TRAIN.NUM_SAMPLES = 0  # use only the first N training samples (0: all)
_C.TRAIN.AMP = ""  # (ours) autocast dtype: "" (fp32) | bf16 | fp16 (with a grad scaler)
_C.TRAIN.PERSISTENT_WORKERS = True  # (ours) keep loader workers alive between epochs
_C.TRAIN.EVAL_INTERVAL = 1  # (ours) validate every N epochs and after the last one
_C.TRAIN.AUG_ROTATE = 0.0  # (ours) random rotation of the crop up to +- this many degrees (180: any)
_C.TRAIN.AUG_COLOR_JITTER = 0.0  # (ours) colour jitter strength (brightness, contrast, saturation)
_C.TRAIN.AUG_BLUR = 0.0  # (ours) probability of a Gaussian blur of the crop
_C.TRAIN.AUG_NOISE = 0.0  # (ours) probability of Gaussian noise on the crop
_C.TRAIN.AUG_JPEG = 0.0  # (ours) probability of JPEG re-encoding the crop (quality 30-90)
_C.TRAIN.AUG_PASTE_WIRES = 0.0  # (ours) probability of pasting generated wires (label updated)
_C.TRAIN.LABEL_FILL = 0  # (ours) training labels: fill gaps up to N px between wire label pixels (a wide wire drawn as two edges becomes a band), before WIRE.LABEL_DILATE
_C.TRAIN.AUG_ZOOM = 0.0  # (ours) probability of zooming a crop in by up to AUG_ZOOM_MAX on top of the random scale (wider wires)
_C.TRAIN.AUG_ZOOM_MAX = 4.0  # (ours) largest zoom of TRAIN.AUG_ZOOM, drawn log-uniformly from [1, this]
_C.TRAIN.TIME_BUDGET = 0.0  # (ours) minutes: train as many main-phase epochs as fit, at most END_EPOCH (0: off)
_C.TRAIN.STOP_AFTER_EPOCH = 0  # (ours) stop once epoch N is saved, schedule unchanged (0: never)

_C.TEST = CN()
_C.TEST.IMAGE_SIZE = [2048, 1024]  # sliding-window size, width x height
_C.TEST.BASE_SIZE = 2048  # long side at scale 1.0
_C.TEST.BATCH_SIZE_PER_GPU = 32  # batch size per process
_C.TEST.NUM_SAMPLES = 0  # use only the first N test samples (0: all)
_C.TEST.MODEL_FILE = ""  # weights for tools/test.py (default: final_state.pth)
_C.TEST.FLIP_TEST = False  # average with the horizontally flipped prediction
_C.TEST.MULTI_SCALE = False  # kept for official yaml files; not read (SCALE_LIST decides)
_C.TEST.SCALE_LIST = [1.0]  # inference scales relative to BASE_SIZE
_C.TEST.SCALE_FUSE = "sum"  # (ours) how SCALE_LIST combines: sum (official: exp-logits summed) | wire_max (a wire class's probability is its largest over the scales: thin structures)
_C.TEST.OUTPUT_INDEX = -1  # which model output is the prediction
_C.TEST.AMP = ""  # (ours) autocast dtype for inference: "" | bf16 | fp16
_C.TEST.FOLD_BN = False  # (ours) fold BatchNorm into convolutions for inference
_C.TEST.WINDOW_BATCH = 4  # (ours) sliding windows evaluated per forward pass
_C.TEST.TILE_SIZE = [1024, 1024]  # (ours) tools/predict.py tile at native resolution, width x height
_C.TEST.TILE_OVERLAP = 256  # (ours) pixels neighbouring tiles share, cross-faded
_C.TEST.TILE_BATCH = 4  # (ours) tiles per forward pass in tools/predict.py
_C.TEST.TILE_SCALE = 1.0  # (ours) tools/predict.py runs at this fraction of native size (times SCALE_LIST)
_C.TEST.ZOOM = 1.0  # (ours) score photos as if the camera were closer: > 1 the centre 1/ZOOM upscaled ZOOM times, < 1 downscaled (labels before WIRE.LABEL_DILATE)
_C.TEST.VAL_WINDOW = [0, 0]  # (ours) validation during training in windows of [w, h] (official grid, overlaps averaged) instead of whole images: big photos on small GPUs; [0, 0] off (official)
_C.TEST.SAVE_PROB = False  # (ours) test.py / predict.py also write 8-bit wire probability PNGs (probs/)

_C.WIRE = CN()  # (ours) everything about the wire classes; docs/configs.md, "The WIRE section"
_C.WIRE.CLASSES = []  # (ours) class ids that are wires (metrics, threshold, wire losses, dilation); empty: the dataset's, [1] for daodixian_seg, none for cityscapes and list
_C.WIRE.TOLERANCE_PX = 0.0  # (ours) wire metric tolerance in pixels, 1 or more (0: TOLERANCE_FRACTION); giving it sets TOLERANCE_FRACTION to 0
_C.WIRE.TOLERANCE_FRACTION = 0.0075  # (ours) wire metric tolerance as a fraction of the image diagonal (PLD-UAV's); giving it sets TOLERANCE_PX to 0
_C.WIRE.THRESHOLD = "auto"  # (ours) wire where P(wire) >= this: auto (tools/pick_threshold.py's <weights>.wire_threshold.json, else argmax) | argmax | a number in (0, 1)
_C.WIRE.LABEL_DILATE = 0  # (ours) widen the wire labels by N px when read (one-pixel-wide label drawings)

_C.DEBUG = CN()
_C.DEBUG.DEBUG = False  # kept for official yaml files; not read
_C.DEBUG.SAVE_BATCH_IMAGES_GT = False  # kept for official yaml files; not read
_C.DEBUG.SAVE_BATCH_IMAGES_PRED = False  # kept for official yaml files; not read
_C.DEBUG.SAVE_HEATMAPS_GT = False  # kept for official yaml files; not read
_C.DEBUG.SAVE_HEATMAPS_PRED = False  # kept for official yaml files; not read


def defaults() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
