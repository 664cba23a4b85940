"""Wire decisions at a probability threshold; the dataset-level threshold sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib.config import ConfigError, get_config
from lib.core.thresholds import (
    ThresholdSweep,
    decide,
    held_out_thresholds,
    probability_png,
    resolve_threshold,
    sweep_scores,
    threshold_file,
    wire_probability,
    write_threshold,
)


def _scores(p_wire: torch.Tensor) -> torch.Tensor:
    """Two-class exp-logit scores whose P(wire) is `p_wire` (scaled: only ratios matter)."""
    return torch.stack([1 - p_wire, p_wire]) * 7.0


def test_threshold_zero_is_argmax_and_a_threshold_moves_the_decision():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 5, 6, generator=g)
    assert torch.equal(decide(scores, 0.0), scores.argmax(0))
    p = torch.tensor([[0.1, 0.3, 0.45, 0.6]])
    assert decide(_scores(p), 0.0).tolist() == [[0, 0, 0, 1]]
    assert decide(_scores(p), 0.3).tolist() == [[0, 1, 1, 1]]
    assert torch.allclose(wire_probability(_scores(p)), p)


def test_three_classes_with_one_wire_class():
    # class 2 is the wire; below the threshold the best of classes 0 and 1 wins
    scores = torch.tensor([[0.5, 0.1], [0.2, 0.6], [0.3, 0.3]])[..., None]  # (3, 2, 1)
    assert decide(scores, 0.25, wire_classes=[2]).flatten().tolist() == [2, 2]
    assert decide(scores, 0.35, wire_classes=[2]).flatten().tolist() == [0, 1]


def test_probability_png_is_8_bit():
    assert probability_png(torch.tensor([0.0, 0.5, 1.0, 1.2])).tolist() == [0, 128, 255, 255]


def test_sweep_finds_the_threshold_between_distractors_and_wires():
    label = np.zeros((60, 80), np.uint8)
    label[:, 20] = 1  # a wire
    label[0, :] = 255  # an ignored row
    prob = np.zeros((60, 80), np.float32)
    prob[:, 20] = 0.35  # the wire, found only below 0.5
    prob[30:40, 60:70] = 0.25  # a distractor far from the wire
    prob[0, :] = 0.9  # ignored pixels never count
    sweep = ThresholdSweep([0.1, 0.2, 0.3, 0.4, 0.5], tolerance=2)
    sweep.update(prob, label)
    rows = {r["threshold"]: r for r in sweep.scores()}
    assert sweep.best()["threshold"] == 0.3 and rows[0.3]["f1"] == 1.0
    assert rows[0.2]["recall"] == 1.0 and rows[0.2]["precision"] == pytest.approx(59 / 159)
    assert rows[0.5]["f1"] == 0.0  # what argmax gives here
    # counts add over images: a second image changes the dataset-level numbers
    sweep.update(np.zeros_like(prob), label)
    assert sweep.scores()[2]["recall"] == pytest.approx(0.5)


def _cfg(value: str, model_file: str = "", dataset: str = "daodixian_seg"):
    return get_config(None, ["DATASET.DATASET", dataset, "WIRE.THRESHOLD", value,
                             "TEST.MODEL_FILE", model_file])


def test_resolve_threshold_from_the_key_the_file_or_argmax(tmp_path):
    weights = tmp_path / "best.pth"
    assert resolve_threshold(_cfg("auto", str(weights))) == (0.0, "argmax")
    path = write_threshold(weights, {"threshold": 0.32, "f1": 0.9})
    assert path == threshold_file(weights) == tmp_path / "best.pth.wire_threshold.json"
    assert resolve_threshold(_cfg("auto", str(weights))) == (0.32, str(path))
    assert resolve_threshold(_cfg("0.4", str(weights))) == (0.4, "WIRE.THRESHOLD")
    assert resolve_threshold(_cfg("argmax", str(weights)))[0] == 0.0
    # a picked file belongs to a wire model: without a wire class auto is argmax
    assert resolve_threshold(_cfg("auto", str(weights), "cityscapes")) == (0.0, "argmax")
    # a value set after loading (tools do, defrosted) is checked by the same function
    cfg = _cfg("auto")
    cfg.defrost()
    cfg.WIRE.THRESHOLD = "1.5"
    with pytest.raises(ConfigError, match="WIRE.THRESHOLD is '1.5'; use auto"):
        resolve_threshold(cfg)
    path.write_text(json.dumps({"f1": 1}))
    with pytest.raises(ValueError, match="not a wire threshold file"):
        resolve_threshold(_cfg("auto", str(weights)))


def test_held_out_thresholds_pick_on_the_other_folds_only():
    thresholds = [0.2, 0.5, 0.8]

    def counts(best: int) -> np.ndarray:
        # perfect at threshold index `best`, poor elsewhere: (pred_hit, pred, label_hit, label)
        c = np.array([[10, 40, 5, 20]] * 3)
        c[best] = [20, 20, 20, 20]
        return c

    folds = {1: counts(0), 2: counts(2), 3: counts(2)}
    held = held_out_thresholds(folds, thresholds)
    # fold 1 alone likes 0.2, but folds 2 and 3 (its "others") pick 0.8: it is scored at 0.8
    assert held["folds"][1]["threshold"] == 0.8
    assert held["folds"][1]["f1"] == pytest.approx(2 * 0.25 * 0.25 / 0.5)
    # fold 2's others are folds 1 and 3: a tie 0.2 / 0.8 goes to the lower threshold
    assert held["folds"][2]["threshold"] == 0.2
    assert held["pooled"]["threshold"] == 0.8 and held["pooled"]["f1"] < 1
    assert sweep_scores(folds[2], thresholds)[2]["f1"] == 1.0
    with pytest.raises(ValueError, match="at least two folds"):
        held_out_thresholds({1: folds[1]}, thresholds)
