"""Datasets: official augmentation semantics, label mappings, and every bad-input error."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lib.config import get_config
from lib.datasets import DATASETS, DatasetError, build_dataset
from lib.datasets.base import MEAN, STD
from lib.datasets.cityscapes import CLASS_WEIGHTS

W, H = 40, 20


def _write(root, name, image, label=None, folder="list"):
    """Write a sample under <root>/<folder> (the dataset's folder); return its list line."""
    (root / folder / "img").mkdir(parents=True, exist_ok=True)
    (root / folder / "lab").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / folder / "img" / f"{name}.png")
    if label is not None:
        Image.fromarray(label).save(root / folder / "lab" / f"{name}.png")
    return f"img/{name}.png" + (f" lab/{name}.png" if label is not None else "")


def _sample(seed=0, w=W, h=H):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = (image[:, :, 0] > 127).astype(np.uint8)  # the label is a function of the red channel
    return image, label


def _cfg(tmp_path, lines, dataset="list", **extra):
    (tmp_path / "lists").mkdir(exist_ok=True)
    (tmp_path / "lists" / "l.lst").write_text("\n".join(lines) + "\n")
    opts = {
        "DATASET.ROOT": str(tmp_path),
        "DATASET.DATASET": dataset,
        "DATASET.NUM_CLASSES": 2,
        "DATASET.TRAIN_SET": "lists/l.lst",
        "DATASET.TEST_SET": "lists/l.lst",
        "TRAIN.IMAGE_SIZE": "[16, 8]",
        "TRAIN.BASE_SIZE": W,
        "TRAIN.IGNORE_LABEL": 255,
    }
    opts.update(extra)
    return get_config(None, [str(x) for kv in opts.items() for x in kv])


def _denormalise(image: torch.Tensor) -> np.ndarray:
    rgb = image.numpy().transpose(1, 2, 0) * np.array(STD) + np.array(MEAN)
    return np.rint(rgb * 255).astype(np.int64)


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(
        DatasetError,
        match="unknown DATASET.DATASET 'voc'; known datasets: cityscapes, daodixian_seg, list",
    ):
        build_dataset(_cfg(tmp_path, ["img/a.png lab/a.png"], dataset="voc"), "val")
    assert set(DATASETS) == {"cityscapes", "daodixian_seg", "list"}


def test_val_item_is_full_resolution_normalised_rgb(tmp_path):
    image, label = _sample()
    line = _write(tmp_path, "a", image, label)
    ds = build_dataset(_cfg(tmp_path, [line]), "val")
    x, y, size, name = ds[0]
    assert (
        x.dtype == torch.float32
        and x.shape == (3, H, W)
        and y.dtype == torch.int64
        and y.shape == (H, W)
    )
    assert name == "a" and size.tolist() == [H, W] and ds.has_labels and ds.num_classes == 2
    expected = (image / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), expected, atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), label)


def test_train_crop_flip_and_label_stay_aligned(tmp_path):
    line = _write(tmp_path, "a", *_sample())
    ds = build_dataset(_cfg(tmp_path, [line], **{"TRAIN.MULTI_SCALE": "False"}), "train")
    flips = set()
    for seed in range(12):
        random.seed(seed)
        x, y, _, _ = ds[0]
        assert x.shape == (3, 8, 16) and y.shape == (8, 16)
        np.testing.assert_array_equal(y.numpy(), (_denormalise(x)[:, :, 0] > 127).astype(np.int64))
        image, _ = _sample()
        flips.add(
            any(
                np.array_equal(_denormalise(x), image[r : r + 8, c : c + 16][:, ::-1])
                for r in range(13)
                for c in range(25)
            )
        )
    assert flips == {True, False}  # both flipped and unflipped crops occurred, all aligned


def test_random_scale_range_and_ignore_padding(tmp_path, monkeypatch):
    line = _write(tmp_path, "a", *_sample())
    cfg = _cfg(tmp_path, [line], **{"TRAIN.IMAGE_SIZE": "[64, 32]", "TRAIN.FLIP": "False"})
    ds = build_dataset(cfg, "train")
    picks = iter([0, 0, 0])  # scale 0.5 + 0/10, then crop x=0, y=0
    monkeypatch.setattr(random, "randint", lambda a, b: next(picks))
    x, y, _, _ = ds[0]
    assert x.shape == (3, 32, 64)
    assert (
        (y[:10, :20] != 255).all() and (y[10:] == 255).all() and (y[:, 20:] == 255).all()
    )  # 40x20 * 0.5
    pad = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(
        3, 1
    )  # pixel 0 before normalisation
    torch.testing.assert_close(x[:, 10:, :].reshape(3, -1), pad.expand(3, 22 * 64))
    picks = iter([16, 0, 0])  # largest scale: 0.5 + 16/10 = 2.1 -> long side 84
    x, y, _, _ = ds[0]
    assert (y != 255).all()  # 84x42 covers the 64x32 crop


def test_label_downsampling(tmp_path):
    line = _write(tmp_path, "a", *_sample())
    ds = build_dataset(_cfg(tmp_path, [line], **{"TRAIN.DOWNSAMPLERATE": 2}), "train")
    x, y, _, _ = ds[0]
    assert x.shape == (3, 8, 16) and y.shape == (4, 8)


def test_brightness_shift_changes_pixels_only_by_the_shift(tmp_path):
    line = _write(tmp_path, "a", *_sample())
    extra = {
        "TRAIN.MULTI_SCALE": "False",
        "TRAIN.FLIP": "False",
        "TRAIN.RANDOM_BRIGHTNESS": "True",
        "TRAIN.IMAGE_SIZE": f"[{W}, {H}]",
    }
    ds = build_dataset(_cfg(tmp_path, [line], **extra), "train")
    image, _ = _sample()
    shifts = set()
    for seed in range(10):
        random.seed(seed)
        diff = _denormalise(ds[0][0]) - image
        inside = (image > 20) & (image < 235)
        shifts.add(int(np.unique(diff[inside]).item()))
    assert len(shifts) > 1 and all(abs(s) <= 10 for s in shifts)


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    image = np.zeros((2, 4, 3), np.uint8)
    label = np.array([[7, 8, 26, 33], [0, 1, 9, 24]], np.uint8)
    line = _write(tmp_path, "c", image, label, folder="cityscapes")
    cfg = _cfg(tmp_path, [line], dataset="cityscapes", **{"DATASET.NUM_CLASSES": 19})
    ds = build_dataset(cfg, "val")
    assert ds[0][1].tolist() == [[0, 1, 13, 18], [255, 255, 255, 11]]
    torch.testing.assert_close(ds.class_weights, torch.tensor(CLASS_WEIGHTS))
    with pytest.raises(DatasetError, match="has 19 classes, but DATASET.NUM_CLASSES is 2"):
        build_dataset(_cfg(tmp_path, [line], dataset="cityscapes"), "val")


def test_powerline_labels_accept_seed_masks_of_255(tmp_path):
    image = np.zeros((2, 3, 3), np.uint8)
    lines = [
        _write(
            tmp_path,
            "a",
            image,
            np.array([[0, 255, 0], [255, 0, 0]], np.uint8),
            folder="daodixian_seg",
        ),
        _write(
            tmp_path, "b", image, np.array([[0, 1, 0], [1, 0, 0]], np.uint8), folder="daodixian_seg"
        ),
    ]
    ds = build_dataset(_cfg(tmp_path, lines, dataset="daodixian_seg"), "val")
    assert ds[0][1].tolist() == ds[1][1].tolist() == [[0, 1, 0], [1, 0, 0]]
    assert ds.class_weights is not None and ds.class_weights.shape == (2,)


def test_class_weights_from_config_override(tmp_path):
    line = _write(tmp_path, "a", *_sample())
    ds = build_dataset(_cfg(tmp_path, [line], **{"DATASET.CLASS_WEIGHTS": "[0.5, 2.0]"}), "val")
    assert ds.class_weights.tolist() == [0.5, 2.0]
    with pytest.raises(DatasetError, match="3 values for 2 classes"):
        build_dataset(_cfg(tmp_path, [line], **{"DATASET.CLASS_WEIGHTS": "[1, 1, 1]"}), "val")


def test_image_only_list_gives_ignore_labels(tmp_path):
    image, _ = _sample()
    line = _write(tmp_path, "t", image)
    ds = build_dataset(_cfg(tmp_path, [line]), "test")
    x, y, size, name = ds[0]
    assert not ds.has_labels and (y == 255).all() and y.shape == (H, W) and name == "t"
    with pytest.raises(DatasetError, match="a training list needs labels"):
        build_dataset(_cfg(tmp_path, [line]), "train")


def _error(tmp_path, lines, match, split="val"):
    with pytest.raises(DatasetError, match=match) as info:
        ds = build_dataset(_cfg(tmp_path, lines), split)
        ds[0]
    return str(info.value)


def test_bad_list_lines_are_named(tmp_path):
    good = _write(tmp_path, "a", *_sample())
    message = _error(
        tmp_path, [good, "img/a.png lab/a.png extra"], r"l.lst:2: expected 'image_path label_path'"
    )
    assert "3 fields" in message
    _error(
        tmp_path, [good, "img/missing.png lab/a.png"], r"l.lst:2: file not found: .*img/missing.png"
    )
    _error(
        tmp_path,
        [good, "# comment", "img/a.png"],
        r"l.lst:3: no label path, but line 1 has one",
    )
    _error(
        tmp_path,
        ["img/a.png", "", good],
        r"l.lst:3: a label path, but line 1 has none",
    )
    _error(tmp_path, ["", "# comment"], "no samples")
    with pytest.raises(DatasetError, match="cannot read list file"):
        build_dataset(_cfg(tmp_path, [good], **{"DATASET.TEST_SET": "lists/none.lst"}), "val")


def test_bad_samples_are_named(tmp_path):
    _write(tmp_path, "a", *_sample())
    (tmp_path / "list" / "img" / "broken.png").write_bytes(b"not an image")
    message = _error(
        tmp_path, ["img/broken.png lab/a.png"], r"l.lst:1: .*broken.png: not a readable image"
    )
    assert "l.lst:1" in message
    image, label = _sample()
    _write(tmp_path, "small", image, label[:10])
    _error(
        tmp_path,
        ["img/small.png lab/small.png"],
        r"l.lst:1: label .*small.png is 40x10 but image .*small.png is 40x20",
    )
    label = label.copy()
    label[0, 0] = 7
    _write(tmp_path, "seven", image, label)
    _error(
        tmp_path,
        ["img/seven.png lab/seven.png"],
        r"l.lst:1: label .*seven.png has values \[7\] outside \[0, 2\)",
    )
    _error(tmp_path, ["img/seven.png lab/seven.png"], "has values", split="train")


def test_skip_bad_samples_counts_and_moves_on(tmp_path):
    good = _write(tmp_path, "a", *_sample())
    (tmp_path / "list" / "img" / "broken.png").write_bytes(b"not an image")
    cfg = _cfg(
        tmp_path,
        ["img/broken.png lab/a.png", "img/missing.png lab/a.png", good],
        **{"DATASET.SKIP_BAD_SAMPLES": "True"},
    )
    ds = build_dataset(cfg, "val")
    assert len(ds) == 2 and ds.bad_samples == 1  # the missing file, at construction
    assert ds[0][3] == "a" and ds.bad_samples == 2  # the broken image, replaced by the next sample


def test_loader_batches_training_samples(tmp_path):
    lines = [_write(tmp_path, f"s{i}", *_sample(i)) for i in range(4)]
    ds = build_dataset(_cfg(tmp_path, lines), "train")
    x, y, size, names = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert (
        x.shape == (4, 3, 8, 16)
        and y.shape == (4, 8, 16)
        and size.shape == (4, 2)
        and len(names) == 4
    )


def test_cv2_nearest_matches_for_int_labels():
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert cv2.resize(label, (8, 6), interpolation=cv2.INTER_NEAREST)[5, 7] == 11


def test_tab_separated_lines_allow_spaces_in_names(tmp_path):
    image, label = _sample()
    _write(tmp_path, "DJI 0001", image, label)
    lines = ["img/DJI 0001.png\tlab/DJI 0001.png", "img/DJI 0001.png \t lab/DJI 0001.png"]
    ds = build_dataset(_cfg(tmp_path, lines), "val")
    assert len(ds) == 2 and ds.has_labels and ds[1][3] == "DJI 0001"
    np.testing.assert_array_equal(ds[0][1].numpy(), label)
    only = build_dataset(_cfg(tmp_path, ["img/DJI 0001.png\t"]), "test")
    assert not only.has_labels and only[0][3] == "DJI 0001"


def test_spaces_without_tabs_are_named_with_a_hint(tmp_path):
    image, label = _sample()
    _write(tmp_path, "DJI 0001", image, label)
    message = _error(
        tmp_path, ["img/DJI 0001.png lab/DJI 0001.png"], r"l.lst:1: expected 'image_path"
    )
    assert "4 fields" in message and "tab" in message
    message = _error(tmp_path, ["img/DJI 0001.png"], r"l.lst:1: file not found", split="test")
    assert "tab" in message and "\n" not in message


def _wire_photo(w=120, h=80):
    """A grey photo with one dark 1-px vertical wire at x = 61 (label 1 there)."""
    image = np.full((h, w, 3), 200, np.uint8)
    label = np.zeros((h, w), np.uint8)
    image[:, 61] = 40
    label[:, 61] = 1
    return image, label


def test_label_dilate_widens_the_classes_of_wire_classes_only(tmp_path):
    image, label = _wire_photo()
    label[:, 20] = 1
    label[:, 61] = 2  # three classes: the wire is class 2 here
    line = _write(tmp_path, "a", image, label)
    opts = {"DATASET.NUM_CLASSES": 3, "WIRE.LABEL_DILATE": 1, "WIRE.CLASSES": 2}
    wide = build_dataset(_cfg(tmp_path, [line], **opts), "val")[0][1]
    assert (wide == 2).sum().item() == 3 * 80 and (wide == 1).sum().item() == 80
    # the generic list dataset has no wire class of its own: dilation needs one named
    with pytest.raises(Exception, match="WIRE.LABEL_DILATE needs a wire class, but "
                                        "DATASET.DATASET list has none"):
        _cfg(tmp_path, [line], **{"WIRE.LABEL_DILATE": 1})


def test_power_line_id_pngs_write_wires_as_255_other_datasets_the_ids():
    assert DATASETS["daodixian_seg"].id_values == (0, 255)
    assert DATASETS["list"].id_values is None and DATASETS["cityscapes"].id_values is None


def test_zoom_view_upscales_the_centre_and_widens_the_label_before_dilation(tmp_path):
    line = _write(tmp_path, "a", *_wire_photo(), folder="daodixian_seg")
    extra = {"WIRE.LABEL_DILATE": 1}
    plain = build_dataset(_cfg(tmp_path, [line], dataset="daodixian_seg", **extra), "val")[0]
    zoomed = build_dataset(
        _cfg(tmp_path, [line], dataset="daodixian_seg", **extra, **{"TEST.ZOOM": 4}), "val"
    )[0]
    assert plain[1].shape == zoomed[1].shape == (80, 120)  # same size: a closer camera
    assert plain[1].sum().item() == 3 * 80  # 1 px + 1 px dilation on each side
    # 4x: the wire 4 px wide, the label band 4 px (nearest), then dilated by 1: 6 px
    # the centre 30x20 starts at x = 45: column 61 covers output columns 64-67, dilated 63-68
    columns = torch.nonzero(zoomed[1][40]).flatten().tolist()
    assert columns == list(range(63, 69))
    ds = build_dataset(_cfg(tmp_path, [line], dataset="daodixian_seg", **extra), "val")
    assert np.array_equal(ds.label_at_zoom(0, 4), zoomed[1].numpy())  # what TEST.ZOOM scores
    dark = np.flatnonzero(_denormalise(zoomed[0])[40, :, 0] < 120)
    assert 3 <= dark.size <= 6 and set(dark) <= set(columns)  # the photo's wire under the label
    far = build_dataset(
        _cfg(tmp_path, [line], dataset="daodixian_seg", **extra, **{"TEST.ZOOM": 0.5}), "val"
    )[0]
    assert far[1].shape == (40, 60) and far[0].shape == (3, 40, 60)
    # the 1-px wire survives the halving (any wire pixel inside a label pixel), then dilation
    assert (far[1].sum(dim=1) == 3).all()
    with pytest.raises(Exception, match="TEST.ZOOM is 0.0"):
        _cfg(tmp_path, [line], **{"TEST.ZOOM": 0})


def test_zoom_view_of_a_one_pixel_diagonal_keeps_it_whole_when_halved():
    from lib.datasets.base import zoom_view

    raw = np.zeros((40, 40), np.uint8)
    for i in range(39):
        raw[i, i + 1] = 1  # a diagonal that nearest sampling of odd pixels misses entirely
    _, small = zoom_view(np.zeros((40, 40, 3), np.uint8), raw, 0.5, keep=[1])
    assert (small.sum(axis=1) >= 1).all()
    _, dropped = zoom_view(np.zeros((40, 40, 3), np.uint8), raw, 0.5)
    assert dropped.sum() == 0  # without keep: what nearest sampling alone would give


def test_aug_zoom_draws_wider_wires_and_leaves_other_draws_alone(tmp_path):
    line = _write(tmp_path, "a", *_wire_photo(), folder="daodixian_seg")
    base = {"TRAIN.IMAGE_SIZE": "[64, 64]", "TRAIN.BASE_SIZE": 120, "TRAIN.FLIP": "False",
            "TRAIN.MULTI_SCALE": "False"}
    plain = build_dataset(_cfg(tmp_path, [line], dataset="daodixian_seg", **base), "train")
    zoomed = build_dataset(
        _cfg(tmp_path, [line], dataset="daodixian_seg", **base,
             **{"TRAIN.AUG_ZOOM": 1.0, "TRAIN.AUG_ZOOM_MAX": 6.0}), "train")

    def widths(ds, n=40):
        random.seed(0)
        out = []
        for _ in range(n):
            y = ds[0][1]
            row = y[32]
            if (row == 1).any():
                out.append(int((row == 1).sum()))
        return out

    assert set(widths(plain)) == {1}  # no scaling: the 1-px wire as drawn
    wide = widths(zoomed)
    assert wide and max(wide) >= 4 and min(wide) >= 1  # zoomed 1-6x: wider wires
    # off (the default) draws no extra random number: the same crops as before the key existed
    random.seed(3)
    a = [plain[0][1].clone() for _ in range(5)]
    state = random.getstate()
    random.seed(3)
    b = [build_dataset(_cfg(tmp_path, [line], dataset="daodixian_seg", **base,
                            **{"TRAIN.AUG_ZOOM": 0.0}), "train")[0][1] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and random.getstate() == state


def test_label_fill_makes_a_wire_drawn_as_two_edges_one_band_in_training_only(tmp_path):
    image = np.full((40, 60, 3), 200, np.uint8)
    label = np.zeros((40, 60), np.uint8)
    label[:, 20] = label[:, 27] = 1  # a wide wire's two edges, 6 px of background between
    label[:, 50] = 1  # another wire, 22 px away: not joined
    line = _write(tmp_path, "a", image, label, folder="daodixian_seg")
    base = {"TRAIN.IMAGE_SIZE": "[60, 40]", "TRAIN.BASE_SIZE": 60, "TRAIN.FLIP": "False",
            "TRAIN.MULTI_SCALE": "False"}
    plain = build_dataset(_cfg(tmp_path, [line], dataset="daodixian_seg", **base), "train")[0][1]
    assert plain[10].nonzero().flatten().tolist() == [20, 27, 50]
    cfg = _cfg(tmp_path, [line], dataset="daodixian_seg", **base, **{"TRAIN.LABEL_FILL": 9})
    filled = build_dataset(cfg, "train")[0][1]
    assert filled[10].nonzero().flatten().tolist() == [*range(20, 28), 50]
    assert build_dataset(cfg, "val")[0][1][10].nonzero().flatten().tolist() == [20, 27, 50]
    with pytest.raises(Exception, match="TRAIN.LABEL_FILL is -1"):
        _cfg(tmp_path, [line], **{"TRAIN.LABEL_FILL": -1})


def test_a_list_file_saved_with_a_byte_order_mark_reads_its_first_path_whole(tmp_path):
    line = _write(tmp_path, "a", *_sample())
    cfg = _cfg(tmp_path, [line])
    (tmp_path / "lists" / "l.lst").write_text(line + "\n", encoding="utf-8-sig")  # Notepad's UTF-8
    ds = build_dataset(cfg, "val")
    assert ds.items[0]["image"] == tmp_path / "list" / "img" / "a.png"
    assert ds[0][0].shape == (3, H, W)


def test_dataset_options_come_grouped_or_one_by_one_but_not_both():
    from lib.datasets import label_options, train_transform
    from lib.datasets.base import ListDataset, TrainTransform

    cfg = get_config(None, ["WIRE.CLASSES", "[1]", "TRAIN.IMAGE_SIZE", "[96, 64]",
                            "TRAIN.LABEL_FILL", "2", "TRAIN.AUG_ZOOM", "0.5"])
    transform = train_transform(cfg)
    assert (transform.crop_size, transform.aug_zoom) == ((96, 64), 0.5)
    assert train_transform(cfg, augment=False).aug_zoom == 0.0
    assert label_options(cfg).label_fill == 2 and label_options(cfg).dilate_classes == (1,)
    assert label_options(cfg, augment=False).label_fill == 0
    with pytest.raises(TypeError, match="crop_size given both alone and in a TrainTransform"):
        ListDataset("root", "list.lst", 2, transform=TrainTransform(), crop_size=(8, 8))
    with pytest.raises(TypeError, match="unknown options colour"):
        ListDataset("root", "list.lst", 2, colour=1)


def test_the_steps_after_the_crop_are_a_list_built_from_the_config(tmp_path):
    from lib.datasets import train_transform
    from lib.datasets.transforms import Brightness, DownsampleLabel, HorizontalFlip
    from lib.datasets.wire_aug import WireAugment

    cfg = get_config(None, ["WIRE.CLASSES", "[1]", "TRAIN.RANDOM_BRIGHTNESS", "True",
                            "TRAIN.RANDOM_BRIGHTNESS_SHIFT_VALUE", "7", "TRAIN.AUG_BLUR", "0.5",
                            "TRAIN.DOWNSAMPLERATE", "2"])
    steps = train_transform(cfg).after_crop()
    assert [type(s) for s in steps] == [Brightness, WireAugment, HorizontalFlip, DownsampleLabel]
    assert steps[0].shift == 7 and steps[3].rate == 2
    no_aug = [type(s) for s in train_transform(cfg, augment=False).after_crop()]
    assert no_aug == [Brightness, HorizontalFlip, DownsampleLabel]  # TRAIN.AUG_* train only
    assert train_transform(get_config(None, ["TRAIN.FLIP", "False"])).after_crop() == ()
    # the dataset runs exactly its list: a label halved by DownsampleLabel, a mirrored photo
    line = _write(tmp_path, "a", *_sample())
    plain = {"TRAIN.IMAGE_SIZE": f"[{W}, {H}]", "TRAIN.BASE_SIZE": W, "TRAIN.FLIP": "False",
             "TRAIN.MULTI_SCALE": "False"}
    ds = build_dataset(_cfg(tmp_path, [line], **plain, **{"TRAIN.DOWNSAMPLERATE": 2}), "train")
    assert [type(s) for s in ds.after_crop] == [DownsampleLabel]
    assert ds[0][1].shape == (H // 2, W // 2)
    ds = build_dataset(_cfg(tmp_path, [line], **plain), "train")
    image, label = ds[0][0], ds[0][1]
    ds.after_crop = (lambda image, label, rng: (image[:, ::-1], label[:, ::-1]),)
    torch.testing.assert_close(ds[0][0], image.flip(-1))
    torch.testing.assert_close(ds[0][1], label.flip(-1))
