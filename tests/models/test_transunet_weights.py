"""TransUNet's ``weights``: Google's R50+ViT-B_16 npz layout loads into the encoder, locally and from S3.

The npz is written here from a tiny TransUNet with the conventions of TransUNet's own ``load_from``
(HWIO conv kernels, ``(in, out)`` dense kernels, per-head query/key/value kernels, a class-token
position first); loading goes through timm's loader, so the two conversions check each other.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.models import ModelSpec, create_model, load_model, save_model

ENCODER = ("cnn.", "patch_embed.", "pos_embed", "blocks.", "norm.")


def conv(weight: torch.Tensor) -> np.ndarray:
    return weight.detach().permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO


def published_arrays(model) -> dict[str, np.ndarray]:
    """The arrays of ``model``'s encoder under the names and layouts of R50+ViT-B_16.npz."""
    arrays = {"conv_root/kernel": conv(model.cnn.stem_conv.weight),
              "gn_root/scale": model.cnn.stem_norm.weight.detach().numpy(), "gn_root/bias": model.cnn.stem_norm.bias.detach().numpy()}
    for i, stage in enumerate((model.cnn.stages_0, model.cnn.stages_1, model.cnn.stages_2)):
        for j, block in enumerate(stage.blocks):
            units = {f"{n}": (getattr(block, f"conv{n}"), getattr(block, f"norm{n}")) for n in (1, 2, 3)}
            if block.downsample is not None:
                units["_proj"] = (block.downsample.conv, block.downsample.norm)
            for suffix, (conv_layer, norm) in units.items():
                prefix = f"block{i + 1}/unit{j + 1}/"
                arrays[f"{prefix}conv{suffix}/kernel"] = conv(conv_layer.weight)
                arrays[f"{prefix}gn{suffix}/scale"] = norm.weight.detach().numpy()
                arrays[f"{prefix}gn{suffix}/bias"] = norm.bias.detach().numpy()
    hidden = model.norm.weight.shape[0]
    arrays["embedding/kernel"] = conv(model.patch_embed.weight)
    arrays["embedding/bias"] = model.patch_embed.bias.detach().numpy()
    arrays["cls"] = np.zeros((1, 1, hidden), np.float32)
    class_position = torch.randn(1, 1, hidden)  # the classifier's token, which TransUNet has not
    arrays["Transformer/posembed_input/pos_embedding"] = torch.cat([class_position, model.pos_embed.detach()], 1).numpy()
    arrays["Transformer/encoder_norm/scale"] = model.norm.weight.detach().numpy()
    arrays["Transformer/encoder_norm/bias"] = model.norm.bias.detach().numpy()
    for i, block in enumerate(model.blocks):
        prefix, heads = f"Transformer/encoderblock_{i}/", block.attn.num_heads
        for name, norm in (("LayerNorm_0", block.norm1), ("LayerNorm_2", block.norm2)):
            arrays[f"{prefix}{name}/scale"], arrays[f"{prefix}{name}/bias"] = norm.weight.detach().numpy(), norm.bias.detach().numpy()
        weights, biases = block.attn.qkv.weight.detach().chunk(3), block.attn.qkv.bias.detach().chunk(3)
        for name, weight, bias in zip(("query", "key", "value"), weights, biases):
            arrays[f"{prefix}MultiHeadDotProductAttention_1/{name}/kernel"] = weight.T.reshape(hidden, heads, -1).numpy()
            arrays[f"{prefix}MultiHeadDotProductAttention_1/{name}/bias"] = bias.reshape(heads, -1).numpy()
        out = block.attn.proj
        arrays[f"{prefix}MultiHeadDotProductAttention_1/out/kernel"] = out.weight.detach().T.reshape(heads, -1, hidden).numpy()
        arrays[f"{prefix}MultiHeadDotProductAttention_1/out/bias"] = out.bias.detach().numpy()
        for n, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            arrays[f"{prefix}MlpBlock_3/Dense_{n}/kernel"] = fc.weight.detach().T.numpy()
            arrays[f"{prefix}MlpBlock_3/Dense_{n}/bias"] = fc.bias.detach().numpy()
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def published(tiny, tmp_path):
    """``(source model, its arrays, npz path)``: a tiny pretrained encoder written in the published layout."""
    torch.manual_seed(1)
    source = create_model("transunet", **tiny("transunet")).eval()
    arrays = published_arrays(source)
    path = tmp_path / "R50+ViT-B_16.npz"
    path.write_bytes(npz_bytes(arrays))
    return source, arrays, str(path)


def assert_encoder_loaded(model, source) -> None:
    reference = source.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(ENCODER) and not key.startswith("cnn.stem_conv"):
            torch.testing.assert_close(value, reference[key], msg=key)


def test_npz_loads_into_the_encoder_with_the_published_transposes(tiny, published):
    source, arrays, path = published
    torch.manual_seed(0)
    random = create_model("transunet", **tiny("transunet")).eval()
    torch.manual_seed(0)
    model = create_model("transunet", **tiny("transunet"), weights=path).eval()
    # the file's arrays, converted as TransUNet's load_from does (np2th)
    torch.testing.assert_close(model.cnn.stem_conv.weight, torch.from_numpy(arrays["conv_root/kernel"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(model.cnn.stages_2.blocks[0].norm3.weight, torch.from_numpy(arrays["block3/unit1/gn3/scale"]))
    query = torch.from_numpy(arrays["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"])
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight[:32], query.reshape(32, 32).T)
    dense = torch.from_numpy(arrays["Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel"])
    torch.testing.assert_close(model.blocks[0].mlp.fc2.weight, dense.T)
    position = torch.from_numpy(arrays["Transformer/posembed_input/pos_embedding"])
    torch.testing.assert_close(model.pos_embed, position[:, 1:])  # the class token's entry is dropped
    assert_encoder_loaded(model, source)
    for key, value in model.state_dict().items():  # the decoder keeps its random initialisation
        if not key.startswith(ENCODER):
            torch.testing.assert_close(value, random.state_dict()[key], msg=key)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(x), random(x))


def test_position_embedding_is_resampled_to_another_grid(tiny, published):
    _, arrays, path = published
    model = create_model("transunet", **{**tiny("transunet"), "img_size": 96}, weights=path)
    grid = torch.from_numpy(arrays["Transformer/posembed_input/pos_embedding"])[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 6), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.pos_embed, expected)


@pytest.mark.parametrize("in_channels", [1, 4])
def test_other_channel_counts_adapt_the_stem_as_timm_does(tiny, published, in_channels):
    from timm.models import adapt_input_conv

    source, arrays, path = published
    model = create_model("transunet", in_channels=in_channels, **tiny("transunet"), weights=path)
    rgb = torch.from_numpy(arrays["conv_root/kernel"]).permute(3, 2, 0, 1)
    torch.testing.assert_close(model.cnn.stem_conv.weight, adapt_input_conv(in_channels, rgb))
    if in_channels == 1:
        torch.testing.assert_close(model.cnn.stem_conv.weight, rgb.sum(1, keepdim=True))
    assert_encoder_loaded(model, source)


def test_weights_load_from_s3(tiny, published, s3_bucket):
    source, arrays, _ = published
    uri = f"{s3_bucket}/vit/R50+ViT-B_16.npz"
    storage.write_bytes(uri, npz_bytes(arrays))
    assert_encoder_loaded(create_model("transunet", **tiny("transunet"), weights=uri), source)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"num_layers": 1}, "num_layers 2, num_heads 2.*this model num_layers 1"),
        ({"num_heads": 4}, "num_heads 4"),
        ({"cnn_layers": (1, 2, 1)}, r"cnn_layers \[1, 2, 1\]"),
        ({"hidden_size": 64, "num_heads": 2}, "does not fit this TransUNet"),
        ({"cnn_widths": (16, 32, 128)}, "does not fit this TransUNet"),
    ],
)
def test_a_file_of_another_configuration_is_refused_naming_it(tiny, published, change, match):
    path = published[2]
    with pytest.raises(ConfigError, match=match) as caught:
        create_model("transunet", **{**tiny("transunet"), **change}, weights=path)
    assert str(caught.value).startswith(path) and "\n" not in str(caught.value)


def test_a_file_in_another_layout_is_refused(tiny, published, tmp_path):
    _, arrays, _ = published
    plain_vit = tmp_path / "ViT-B_16.npz"
    plain_vit.write_bytes(npz_bytes({k: v for k, v in arrays.items() if not k.startswith(("conv_root", "gn_root", "block"))}))
    with pytest.raises(ConfigError, match="not a hybrid ViT"):
        create_model("transunet", **tiny("transunet"), weights=str(plain_vit))
    state_dict = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, state_dict)
    with pytest.raises(ConfigError, match="not a hybrid ViT"):
        create_model("transunet", **tiny("transunet"), weights=str(state_dict))
    missing = dict(arrays)
    del missing["Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias"]
    (tmp_path / "missing.npz").write_bytes(npz_bytes(missing))
    with pytest.raises(ConfigError, match="Dense_0/bias"):
        create_model("transunet", **tiny("transunet"), weights=str(tmp_path / "missing.npz"))


def test_a_checkpoint_loads_without_the_weights_file(tiny, published, tmp_path):
    _, _, path = published
    spec = ModelSpec("transunet", in_channels=3, classes=2, config={**tiny("transunet"), "weights": path})
    model = spec.build()
    model.decoder[0].conv[0][0].weight.data.add_(1.0)  # as training would, after loading
    save_model(str(tmp_path / "ckpt"), model, spec)
    (tmp_path / "R50+ViT-B_16.npz").unlink()
    loaded, meta = load_model(str(tmp_path / "ckpt"))
    assert meta["model"]["config"]["weights"] == path
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
