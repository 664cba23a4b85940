"""tools/gpu_smoke.py: without a GPU it says so; its flow (train, stop, resume, compare, test.py
under torchrun vs one process, predict) also runs on a CPU with --cpu (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from tools import gpu_smoke


def test_without_a_gpu_it_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_smoke.main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "gpu_smoke: no CUDA GPU is visible; nothing to do"


@pytest.mark.slow
def test_cpu_flow_runs_every_step(tmp_path):
    assert gpu_smoke.main(["--cpu", "--out", str(tmp_path), "--photos", "8"]) == 0
    rows = json.loads((tmp_path / "gpu_smoke.json").read_text())["rows"]
    results = {r["step"]: r["result"] for r in rows}
    for step in ("train fp16", "exact resume", "test.py torchrun == one process",
                 "tools/predict.py 5472x3078", "predict: 2 processes == 1"):
        assert results[step] == "ok", (step, results)
    assert next(r for r in rows if r["step"] == "exact resume")["bitwise"] is True
    assert (tmp_path / "gpu_smoke.md").read_text().startswith("GPU smoke test")
