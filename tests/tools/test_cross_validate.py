"""K-fold lists (tools_jss/make_lists.py --folds) and tools/cross_validate.py end to end."""

from __future__ import annotations

import json

import pytest

from lib.datasets.lists import parse_line
from tests.tools.conftest import DEMO_CFG, tiny_opts
from tools import cross_validate
from tools_jss import make_lists


def _all_list(tiny_data):
    lists = tiny_data / "list" / "daodixian_seg"
    lines = [ln for f in ("train.lst", "val.lst") for ln in (lists / f).read_text().splitlines()
             if ln.strip()]
    path = lists / "all.lst"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def test_folds_are_contiguous_blocks_of_the_sorted_names(tiny_data, tmp_path, capsys):
    path, lines = _all_list(tiny_data)
    out = tmp_path / "folds"
    assert make_lists.main(["--folds", "3", "--from-list", str(path), "--out", str(out)]) == 0
    assert "wrote 3 folds" in capsys.readouterr().out
    ordered = sorted(parse_line(ln)[0] for ln in lines)
    vals = [[parse_line(ln)[0] for ln in (out / f"fold{k}_val.lst").read_text().splitlines()]
            for k in (1, 2, 3)]
    assert [len(v) for v in vals] == [3, 4, 4] and sum(vals, []) == ordered
    for k, val in enumerate(vals, start=1):
        train = [parse_line(ln)[0] for ln in (out / f"fold{k}_train.lst").read_text().splitlines()]
        assert sorted(train + val) == ordered and not set(train) & set(val)
    meta = json.loads((out / "folds.json").read_text())
    assert [f["val_photos"] for f in meta["folds"]] == vals
    # the same split again, whatever the order of the input list
    path.write_text("\n".join(reversed(lines)) + "\n")
    again = tmp_path / "again"
    assert make_lists.main(["--folds", "3", "--from-list", str(path), "--out", str(again)]) == 0
    assert (again / "fold2_val.lst").read_text() == (out / "fold2_val.lst").read_text()
    # --root, which the list-writing form requires, is accepted here too (paths kept as written)
    assert make_lists.main(["--folds", "3", "--from-list", str(path), "--out", str(again),
                            "--root", str(tiny_data)]) == 0
    assert (again / "fold2_val.lst").read_text() == (out / "fold2_val.lst").read_text()
    assert make_lists.main(["--folds", "30", "--from-list", str(path), "--out", str(again)]) == 2
    assert "11 photos cannot make 30 folds" in capsys.readouterr().err


def test_cross_validate_trains_scores_and_reuses_finished_folds(tiny_data, tmp_path, capsys,
                                                                monkeypatch):
    path, _ = _all_list(tiny_data)
    folds = tmp_path / "folds"
    assert make_lists.main(["--folds", "3", "--from-list", str(path), "--out", str(folds)]) == 0
    opts = tiny_opts(tiny_data, tmp_path, "TRAIN.END_EPOCH", "1")
    argv = ["--cfg", str(DEMO_CFG), "--folds", str(folds), *opts]
    assert cross_validate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "worst" in printed and "over 3 folds" in printed
    assert "WIRE.THRESHOLD" in printed and "picked on the other folds" in printed
    summary = json.loads((tmp_path / "output" / "daodixian_seg"
                          / f"{DEMO_CFG.stem}_cv.json").read_text())
    f1 = [summary["folds"][str(k)]["f1"] for k in (1, 2, 3)]
    assert summary["mean"]["f1"] == pytest.approx(sum(f1) / 3)
    assert summary["worst"]["f1"] == min(f1)
    for k in (1, 2, 3):
        assert (tmp_path / "output" / "daodixian_seg" / f"{DEMO_CFG.stem}_fold{k}"
                / "final_state.pth").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    for k in (1, 2, 3):  # the threshold of each fold comes from the other two folds' counts
        kept = json.loads((tmp_path / "output" / "daodixian_seg" / f"{DEMO_CFG.stem}_fold{k}"
                           / "cv_eval.json").read_text())
        assert kept["scores"]["f1"] == summary["folds"][str(k)]["f1"]
        assert len(kept["counts"]) == len(kept["settings"]["thresholds"])
    assert summary["threshold_for_all_photos"]["threshold"] in kept["settings"]["thresholds"]
    assert "f1_at_threshold" in summary["mean"] and summary["test"]["flip"] is False

    monkeypatch.setattr(cross_validate, "train", no_training)
    scored = []
    real_evaluate = cross_validate.evaluate

    def counting_evaluate(cfg, *args, **kwargs):
        scored.append(cfg.TEST.FLIP_TEST)
        return real_evaluate(cfg, *args, **kwargs)

    monkeypatch.setattr(cross_validate, "evaluate", counting_evaluate)
    assert cross_validate.main(argv) == 0
    assert scored == []  # same weights, same test settings: the kept scores
    capsys.readouterr()
    zooms = []
    monkeypatch.setattr(cross_validate, "evaluate",
                        lambda cfg, *a, **k: zooms.append(cfg.TEST.ZOOM) or real_evaluate(cfg, *a, **k))
    assert cross_validate.main([*argv, "--zoom", "0.5,1,3"]) == 0
    assert sorted(zooms) == [0.5] * 3 + [3.0] * 3  # zoom 1 kept; each other zoom once a fold
    printed = capsys.readouterr().out
    assert "as if the camera were closer" in printed and "below zoom 1" in printed
    summary = json.loads((tmp_path / "output" / "daodixian_seg"
                          / f"{DEMO_CFG.stem}_cv.json").read_text())
    assert set(summary["zoom"]) == {"0.5", "1", "3"}
    assert summary["zoom"]["1"]["mean"]["f1"] == pytest.approx(summary["mean"]["f1"])
    three = summary["zoom"]["3"]
    assert three["worst"]["f1"] == min(r["f1"] for r in three["folds"].values())
    assert three["drop_from_zoom_1"] == pytest.approx(summary["mean"]["f1"] - three["mean"]["f1"])
    # the reference: zoom-1 predictions carried to each zoom; at zoom 1 they are the scored ones
    one = summary["zoom"]["1"]
    assert one["carried_f1"] == pytest.approx({k: r["f1"] for k, r in one["folds"].items()})
    assert 0 <= three["carried_mean_f1"] <= 1 and "zoom 1 carried" in printed
    # how many held-out photos keep a labelled wire in view: all at zoom 1, no more closer
    assert one["photos"] == three["photos"] == 11 and one["photos_with_wire"] == 11
    assert 0 <= three["photos_with_wire"] <= 11 and "photos with wire" in printed
    assert f"{three['photos_with_wire']} of 11" in printed
    # a kept reference written before the photos were counted is scored again, nothing else
    carried_file = (tmp_path / "output" / "daodixian_seg" / f"{DEMO_CFG.stem}_fold1"
                    / "cv_eval_carried.json")
    record = json.loads(carried_file.read_text())
    for scores in record["scores"].values():
        scores.pop("photos_with_wire")
    carried_file.write_text(json.dumps(record))
    assert cross_validate.main([*argv, "--zoom", "0.5,1,3"]) == 0 and len(zooms) == 6
    assert json.loads(carried_file.read_text())["scores"]["3"]["photos_with_wire"] >= 0
    kept = json.loads((tmp_path / "output" / "daodixian_seg" / f"{DEMO_CFG.stem}_fold1"
                       / "cv_eval_zoom3.json").read_text())
    assert kept["settings"]["zoom"] == 3.0 and kept["scores"] == three["folds"]["1"]
    assert cross_validate.main([*argv, "--zoom", "3"]) == 0 and len(zooms) == 6  # kept
    assert cross_validate.main([*argv, "--zoom", "0,2"]) == 2  # one line, nothing done
    assert "every zoom must be a number > 0" in capsys.readouterr().err
    monkeypatch.setattr(cross_validate, "evaluate", counting_evaluate)
    assert cross_validate.main([*argv, "--only", "2", "TEST.FLIP_TEST", "True"]) == 0
    assert scored == [True]  # other test settings: scored again, not trained again
    assert "at a threshold" not in capsys.readouterr().out  # one fold: no held-out threshold
    scales = ["TEST.SCALE_LIST", "[0.5,1.0]"]
    assert cross_validate.main([*argv, "--only", "2", *scales]) == 0
    assert cross_validate.main([*argv, "--only", "2", *scales, "TEST.SCALE_FUSE", "wire_max"]) == 0
    assert scored == [True, False, False]  # the scales' fusion is a test setting of its own
    summary = json.loads((tmp_path / "output" / "daodixian_seg"
                          / f"{DEMO_CFG.stem}_cv.json").read_text())
    assert summary["test"]["fuse"] == "wire_max" and summary["test"]["scales"] == [0.5, 1.0]
    assert cross_validate.main([*argv, "--only", "2"]) == 0
    assert cross_validate.main([*argv, "--only", "7"]) == 2  # nothing done
    assert "no fold 7" in capsys.readouterr().err


def test_a_threshold_that_loses_to_argmax_held_out_is_not_recommended():
    def summary(mean_thr, worst_thr):
        return {"threshold_for_all_photos": {"threshold": 0.54, "f1": 0.94},
                "mean": {"f1": 0.92, "f1_at_threshold": mean_thr},
                "worst": {"f1": 0.83, "f1_at_threshold": worst_thr}}

    assert cross_validate.recommend(summary(0.93, 0.83)) == 0.54
    # one fold's model never reached P(wire) 0.54: F1 0 there, so argmax for a new model
    assert cross_validate.recommend(summary(0.74, 0.0)) == -1.0
    assert cross_validate.recommend(summary(0.91, 0.83)) == -1.0
    assert cross_validate.recommend({"threshold_for_all_photos": None}) == -1.0


def test_cross_validate_under_torchrun_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cross_validate.main(["--cfg", str(DEMO_CFG), "--folds", str(tmp_path)]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "runs as one process" in errors[0]
