"""Several weights files as one model: the mean of their class probabilities."""

from __future__ import annotations

import pytest
import torch

from lib.config import get_config
from lib.core.thresholds import threshold_file
from lib.models import Ensemble, WeightsError, get_seg_model, load_trained, model_files
from tests.tools.conftest import DEMO_CFG


def _model(seed: int):
    torch.manual_seed(seed)
    model = get_seg_model(get_config(DEMO_CFG))
    for m in model.modules():  # distinct, non-trivial statistics per model
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ens")
    paths = []
    for seed in (0, 1):
        path = folder / f"m{seed}.pth"
        torch.save(_model(seed).state_dict(), path)
        paths.append(path)
    return paths


def test_model_files_splits_on_commas_but_not_an_existing_file(tmp_path):
    assert model_files("a.pth") == ["a.pth"]
    assert model_files(" a.pth , b.pth,") == ["a.pth", "b.pth"]
    assert model_files(["x.pth", "y.pth"]) == ["x.pth", "y.pth"]
    assert model_files("") == []
    odd = tmp_path / "run,1.pth"
    odd.write_bytes(b"")
    assert model_files(str(odd)) == [str(odd)]


def test_the_ensemble_averages_probabilities_of_every_output():
    a, b = _model(0), _model(1)
    ens = Ensemble([a, b]).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs_a, outs_b, outs = a(x), b(x), ens(x)
    assert isinstance(outs, list) and len(outs) == len(outs_a) == 2  # OCR: aux and main
    for oa, ob, o in zip(outs_a, outs_b, outs):
        assert o.shape == oa.shape
        mean = (oa.softmax(1) + ob.softmax(1)) / 2
        torch.testing.assert_close(o.exp(), mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(o.softmax(1), mean, atol=1e-6, rtol=1e-5)
        # differs from either member: it is not one of them
        assert (o.exp() - oa.softmax(1)).abs().max() > 1e-3


def test_the_ensemble_stays_finite_where_a_softmax_underflows():

    class Fixed(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, 4, 4)
            out[:, 1] = self.value
            return out

    out = Ensemble([Fixed(500.0), Fixed(-500.0)])(torch.zeros(1, 3, 4, 4))
    assert torch.isfinite(out).all()  # log(0) would be -inf and a resize would make NaN
    torch.testing.assert_close(out.exp(), torch.full_like(out, 0.5))


def test_load_trained_one_file_is_the_bare_model_several_an_ensemble(two_files):
    cfg = get_config(DEMO_CFG)
    one = load_trained(cfg, str(two_files[0]))
    assert not isinstance(one, Ensemble)
    both = load_trained(cfg, f"{two_files[0]},{two_files[1]}")
    assert isinstance(both, Ensemble) and len(both.members) == 2
    for member, path in zip(both.members, two_files):
        saved = torch.load(path, weights_only=True)
        assert all(torch.equal(member.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(WeightsError, match="missing.pth: weights file not found"):
        load_trained(cfg, f"{two_files[0]},{two_files[0].parent / 'missing.pth'}")


def test_an_ensemble_threshold_file_is_its_own_and_ignores_order(two_files):
    a, b = (str(p) for p in two_files)
    path = threshold_file(f"{a},{b}")
    assert path == threshold_file(f"{b}, {a}")
    assert path not in (threshold_file(a), threshold_file(b))
    assert path.parent == two_files[0].parent and path.name.startswith("ensemble-")
