"""torch.hub finds the models: every entry point builds, and trained weights load strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_every_hub_entry_names_an_experiment_file():
    import hubconf  # the repository root's hubconf.py, as torch.hub imports it

    entries = [
        name
        for name, value in vars(hubconf).items()
        if callable(value) and not name.startswith("_") and value.__module__ == "hubconf"
    ]
    assert set(entries) == set(hubconf._CONFIGS)
    for rel in hubconf._CONFIGS.values():
        assert (REPO / "experiments" / rel).is_file(), rel


def test_hub_load_with_weights_is_strict(tmp_path):
    model = torch.hub.load(str(REPO), "hrnet_ocr_w18_small_powerline", source="local")
    assert not model.training
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    again = torch.hub.load(str(REPO), "hrnet_ocr_w18_small_powerline", source="local",
                           weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  again.state_dict().values()))
    state = model.state_dict()
    state.pop(next(k for k in state if "cls_head" in k))
    torch.save(state, path)
    with pytest.raises(Exception, match="cls_head"):
        torch.hub.load(str(REPO), "hrnet_ocr_w18_small_powerline", source="local",
                       weights=str(path))
