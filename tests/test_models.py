"""Backbones and their weights: the packaged Lite ImageNet weights, local weights files, and
clear errors offline or on a mismatch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

timm = pytest.importorskip("timm", reason="needs the train extra: pip install 'artstyle[train]'")
torch = pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
torchvision = pytest.importorskip("torchvision", reason="needs the train extra: pip install 'artstyle[train]'")
cbook = pytest.importorskip("matplotlib.cbook", reason="needs the data extra: pip install 'artstyle[data]'")
pytest.importorskip("safetensors", reason="needs the train extra: pip install 'artstyle[train]'")

from safetensors.torch import save_file  # noqa: E402

from artstyle.errors import ArtstyleError  # noqa: E402
from artstyle.models import RANDOM_INIT, create_model  # noqa: E402
from artstyle.models.lite_weights import load_lite_imagenet  # noqa: E402

CLASSES = ["anime", "cartoon", "human"]
MILITARY_UNIFORM = 652  # ImageNet class of Grace Hopper's portrait


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
def test_packaged_lite_weights_load_strictly_and_recognise_a_real_photo(arch):
    model = timm.create_model(arch)
    load_lite_imagenet(model, arch)  # strict: raises on any unmatched key
    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").resize((224, 224))
    x = torch.from_numpy((np.asarray(img, np.float32) / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = model.eval()(x).softmax(1)
    assert top.argmax().item() == MILITARY_UNIFORM and top.max().item() > 0.3


def test_create_model_gives_a_fresh_head_and_the_models_preprocessing():
    model, spec = create_model("efficientnet_lite0", CLASSES, image_size=64)
    assert model.get_classifier().out_features == 3
    assert spec.arch == "tf_efficientnet_lite0" and spec.mean == [0.5] * 3 and spec.std == [0.5] * 3
    assert spec.init.startswith("imagenet")
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)


def test_optional_hidden_layer_in_the_head():
    model, spec = create_model("efficientnet_lite0", CLASSES, hidden=64)
    assert spec.hidden == 64
    assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_weights_file_timm_safetensors_and_torchvision_pth(tmp_path):
    timm_file = tmp_path / "resnet18.safetensors"
    reference = timm.create_model("resnet18")
    save_file(reference.state_dict(), str(timm_file))
    model, spec = create_model("resnet18", CLASSES, weights=timm_file)
    assert spec.init == "file resnet18.safetensors"
    assert torch.equal(model.conv1.weight, reference.conv1.weight)

    tv_file = tmp_path / "tv_resnet18.pth"
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tv_file)
    model, spec = create_model("resnet18", CLASSES, weights=tv_file)
    assert torch.equal(model.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)


def test_weights_of_the_wrong_architecture_name_the_mismatched_keys(tmp_path):
    wrong = tmp_path / "lite0.safetensors"
    save_file(timm.create_model("tf_efficientnet_lite0").state_dict(), str(wrong))
    with pytest.raises(ArtstyleError, match=r"do not fit resnet18.*missing: conv1.weight.*unexpected: blocks"):
        create_model("resnet18", CLASSES, weights=wrong)


def test_pickled_weights_are_never_unpickled(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "obj": object()}, evil)
    with pytest.raises(ArtstyleError, match="not a readable weights file"):
        create_model("resnet18", CLASSES, weights=evil)


def test_offline_without_weights_is_a_clear_error_and_random_init_only_on_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ArtstyleError, match="--weights FILE.*--no-pretrained"):
        create_model("resnet50", CLASSES)
    _, spec = create_model("resnet50", CLASSES, pretrained=False)
    assert spec.init == RANDOM_INIT


def test_unknown_backbone():
    with pytest.raises(ArtstyleError, match="unknown backbone 'efficientnet_b99'"):
        create_model("efficientnet_b99", CLASSES)
