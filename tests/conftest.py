"""Shared test helpers: paths to the repository and to the official reference fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OFFICIAL = SHARED / "fixtures" / "official"
PLDM = SHARED / "data" / "pldm"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """The folder of official reference numbers; skips when ../shared is absent."""
    if not (OFFICIAL / "README.md").is_file():
        pytest.skip(f"official fixtures not found at {OFFICIAL} (../shared is absent)")
    return OFFICIAL


@pytest.fixture(scope="session")
def parity(official_dir: Path) -> dict:
    """The official w18s1_ocr parity dict (state_dict, inputs, outputs, losses, grads)."""

    return torch.load(official_dir / "w18s1_ocr_parity.pt", weights_only=True)


@pytest.fixture(scope="session")
def pldm_dir() -> Path:
    """Real aerial power-line photos; skips when ../shared/data/pldm is absent."""
    if not (PLDM / "images").is_dir():
        pytest.skip(f"real power-line photos not found at {PLDM} (../shared is absent)")
    return PLDM
