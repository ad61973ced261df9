"""smp architectures: same networks as smp builds, encoder weights from files, stage freezing."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file
from torch import nn

from raysegment.errors import ConfigError
from raysegment.models import count_parameters, create_model
from raysegment.models.freezing import encoder_stages, freeze_encoder_stages
from raysegment.models.smp_models import ARCHITECTURES


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_same_network_as_smp(arch):
    ours = create_model(f"smp-{arch}", in_channels=4, classes=3, encoder="tu-test_resnet", encoder_weights=None)
    reference = smp.create_model(arch, encoder_name="tu-test_resnet", encoder_weights=None, in_channels=4, classes=3)
    assert type(ours) is type(reference)
    assert count_parameters(ours) == count_parameters(reference)


def test_architecture_options_pass_through_and_unknown_ones_fail():
    model = create_model("smp-Unet", encoder="tu-test_resnet", encoder_weights=None, decoder_channels=(32, 16, 8, 8, 4))
    assert model.segmentation_head[0].in_channels == 4
    with pytest.raises(ConfigError, match="no option 'decoder_chanels'.*decoder_channels"):
        create_model("smp-Unet", encoder_weights=None, decoder_chanels=(8,))


def test_unknown_encoder():
    with pytest.raises(ConfigError, match="unknown encoder 'resnet35'"):
        create_model("smp-FPN", encoder="resnet35", encoder_weights=None)


def test_unreachable_hub_is_a_config_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    with pytest.raises(ConfigError, match="could not fetch 'imagenet' weights for encoder resnet18.*encoder_weights=None"):
        create_model("smp-Unet", encoder="resnet18")


@pytest.fixture
def resnet18_weights(tmp_path):
    """A resnet18 encoder state dict with a classifier head, as torchvision saves it."""
    torch.manual_seed(1)
    encoder = smp.encoders.get_encoder("resnet18", weights=None)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_local_weights_file_is_loaded(resnet18_weights):
    path, state = resnet18_weights
    model = create_model("smp-Unet", encoder="resnet18", encoder_weights=str(path))
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_local_weights_adapt_the_first_conv_to_one_channel(resnet18_weights):
    path, state = resnet18_weights
    model = create_model("smp-Unet", in_channels=1, encoder="resnet18", encoder_weights=str(path))
    # a 3-channel filter summed over its input channels answers a grey image as the RGB one did
    torch.testing.assert_close(model.encoder.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_safetensors_and_whole_model_state_dicts(tmp_path):
    source = create_model("smp-FPN", encoder="resnet18", encoder_weights=None)
    path = tmp_path / "fpn.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model("smp-FPN", encoder="resnet18", encoder_weights=str(path))
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, source.encoder.layer4[1].conv2.weight)


@pytest.mark.s3
def test_weights_file_on_s3(s3_bucket, resnet18_weights):
    from raysegment import storage

    path, state = resnet18_weights
    uri = f"{s3_bucket}/weights/resnet18.pth"
    storage.write_bytes(uri, path.read_bytes())
    model = create_model("smp-Unet", encoder="resnet18", encoder_weights=uri)
    torch.testing.assert_close(model.encoder.conv1.weight, state["conv1.weight"])


def test_weights_for_another_encoder_name_the_file(resnet18_weights):
    path, _ = resnet18_weights
    with pytest.raises(ConfigError, match=rf"{path}: .* encoder weights missing from the file"):
        create_model("smp-Unet", encoder="resnet34", encoder_weights=str(path))


def test_corrupt_weights_file_names_the_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=rf"{path}: not a readable weights file"):
        create_model("smp-Unet", encoder="resnet18", encoder_weights=str(path))


def frozen_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.encoder.named_parameters() if not p.requires_grad}


def test_freezing_resnet_stem_and_layer1():
    model = create_model("smp-Unet", encoder="resnet18", encoder_weights=None, freeze_encoder_stages=2)
    frozen = frozen_names(model)
    assert {"conv1.weight", "bn1.weight", "bn1.bias", "layer1.1.conv2.weight"} <= frozen
    assert all(name.startswith(("conv1.", "bn1.", "layer1.")) for name in frozen)
    assert model.encoder.layer2[0].conv1.weight.requires_grad
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - sum(
        p.numel() for p in model.encoder.parameters() if not p.requires_grad
    )

    frozen_bn, live_bn = model.encoder.layer1[0].bn1, model.encoder.layer2[0].bn1
    frozen_stats, live_stats = frozen_bn.running_mean.clone(), live_bn.running_mean.clone()
    model.train()
    model(torch.randn(2, 3, 64, 64))
    assert not frozen_bn.training and live_bn.training
    torch.testing.assert_close(frozen_bn.running_mean, frozen_stats)
    assert not torch.allclose(live_bn.running_mean, live_stats)


def test_freezing_keeps_loaded_statistics(resnet18_weights):
    path, state = resnet18_weights
    model = create_model("smp-Unet", encoder="resnet18", encoder_weights=str(path), freeze_encoder_stages=1).train()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.encoder.bn1.running_var, state["bn1.running_var"])


@pytest.mark.parametrize(
    "encoder,first_stage",
    [
        ("vgg16", {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"}),
        ("tu-test_resnet", {"model.conv1.0.weight", "model.conv1.1.weight", "model.bn1.weight"}),
    ],
)
def test_stages_of_other_encoders(encoder, first_stage):
    model = create_model("smp-Unet", encoder=encoder, encoder_weights=None, classes=2)
    stages = encoder_stages(model.encoder, 3)
    assert len(stages) == 5
    assert first_stage <= set(stages[0])
    assert freeze_encoder_stages(model.encoder, 1, 3) == stages[:1]
    assert frozen_names(model) == set(stages[0])
    # tracing left the statistics alone, and VGG works at any multiple of 32
    assert all(not m.num_batches_tracked for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 2, 64, 96)


def test_freezing_more_stages_than_exist():
    with pytest.raises(ConfigError, match="freeze_encoder_stages=6, but this encoder has 5 stages"):
        create_model("smp-Unet", encoder="tu-test_resnet", encoder_weights=None, freeze_encoder_stages=6)
