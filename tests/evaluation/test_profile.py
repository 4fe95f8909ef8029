"""python -m alva.evaluation.profile on a user's RGB data: the figures of a zoo card, at the RGB default eps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alva.evaluation.profile import main
from alva.models import ModelLoadError, create, save
from alva.models.zoo import architecture_card


@pytest.fixture
def rgb(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()  # NHWC, as images often are
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(40) % 4)
    torch.manual_seed(0)
    model = create("cnn-small", in_shape=(3, 32, 32), num_classes=4)
    save(model, architecture_card(model), tmp_path / "rgb-model.safetensors")
    return tmp_path


def test_profile_of_a_model_on_rgb_data(rgb):
    out = rgb / "profile"
    assert main([str(rgb / "rgb-model.safetensors"), "--data", str(rgb / "rgb.npz"), "--n", "16", "--restarts", "1",
                 "--no-strong", "--no-progress", "--out", str(out)]) == 0
    profile = json.loads((out / "profile.json").read_text())[str(rgb / "rgb-model.safetensors")]
    assert profile["n"] == 16 and profile["eps"] == pytest.approx(8 / 255)
    assert profile["fgsm_acc"] <= profile["clean_acc"] and profile["pgd50x1_acc"] <= profile["clean_acc"]
    assert max(p["eps"] for p in profile["accuracy_vs_eps"]) == pytest.approx(4 / 3 * 8 / 255)
    assert profile["rubbish"]["n"] == 10_000 and (out / "accuracy_vs_eps.png").is_file()


def test_a_model_that_does_not_fit_the_data_is_refused_before_anything_is_written(rgb):
    out = rgb / "never"
    with pytest.raises(ModelLoadError, match="3 x 32 x 32|3x32x32"):
        main(["mnist/cnn-small", "--data", str(rgb / "rgb.npz"), "--no-progress", "--out", str(out)])
    assert not out.exists()
