"""Several trained models as one: the mean of their class probabilities.

`TEST.MODEL_FILE a.pth,b.pth,c.pth` (tools/test.py, tools/predict.py, tools/pick_threshold.py,
tools/export_onnx.py) loads each file into the experiment's model and wraps them in
`Ensemble`. Its outputs have the structure of one model's (a list of NUM_OUTPUTS tensors for
OCR) but hold log(mean over models of softmax(logits)): every consumer takes exp() or softmax of
its outputs, and both give back exactly the mean probability, so argmax, a wire threshold,
multi-scale and flip inference and the 8-bit probability maps all work on the averaged
probabilities. Averaging probabilities of models trained with different data or seeds takes out
much of the run-to-run spread of a small-data model (docs/real_photos.md).

A single file is exactly the model it holds: no wrapper, the official computation.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

__all__ = ["Ensemble", "model_files", "ensemble_key"]


def model_files(spec: str | Path | list | tuple) -> list[str]:
    """The weights files named by TEST.MODEL_FILE: one path, or several separated by commas.

    A string that names an existing file is that one file even if it holds a comma.
    """
    if isinstance(spec, (list, tuple)):
        files = [str(f).strip() for f in spec]
    else:
        text = str(spec).strip()
        if "," not in text or Path(text).is_file():
            return [text] if text else []
        files = [f.strip() for f in text.split(",")]
    return [f for f in files if f]


def ensemble_key(files: list[str]) -> str:
    """A short name for a set of weights files (order does not matter: the mean is symmetric)."""
    names = sorted(str(Path(f).resolve()) for f in files)
    return hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]


class Ensemble(nn.Module):
    """Models of one architecture whose outputs are averaged as probabilities.

    forward(x) returns, per output of the models, log(mean_k softmax(out_k)) computed in
    float32 as logsumexp_k(log_softmax(out_k)) - log K: finite everywhere (safe to resize
    bilinearly), and exp() of it sums to 1 over the classes.
    """

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor):
        outs = [m(x) for m in self.members]
        single = not isinstance(outs[0], (list, tuple))
        if single:
            outs = [[o] for o in outs]
        log_k = math.log(len(outs))
        merged = [
            torch.logsumexp(torch.stack([o[i].float().log_softmax(1) for o in outs]), 0) - log_k
            for i in range(len(outs[0]))
        ]
        return merged[0] if single else merged
