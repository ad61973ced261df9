"""TransUNet (Chen et al. 2021, "R50-ViT-B_16" hybrid): CNN stem + ViT encoder + cascaded upsampler.

* CNN: timm's ResNetV2 without pre-activation (weight-standardised convs + GroupNorm), the backbone
  of the published model and of timm's hybrid ViTs. Its stem and three stages give features at
  1/2, 1/4, 1/8 and 1/16 of the input size.
* Transformer: the 1/16 map is embedded with 1x1 patches (a 1x1 convolution), a learned position
  embedding is added (resampled bicubically when the grid differs from ``img_size // 16``, so any
  input divisible by 16 works), then ``num_layers`` timm ViT ``Block``s and a final LayerNorm.
* CUP decoder: the token grid goes back to an image, a 3x3 conv brings it to ``head_channels``,
  then four blocks each upsample x2 (bilinear), concatenate the CNN feature of that resolution (the
  first ``n_skip`` blocks: 1/8, 1/4, 1/2) and apply two 3x3 conv-BN-ReLU; a 3x3 conv gives logits.

The defaults are the published configuration (ViT-B: hidden 768, 12 layers, 12 heads; R50 stages
of 3, 4 and 9 units; decoder 256-128-64-16): 105.28M parameters with 3 input channels and 9
classes, as published. Weights start random, or, with ``weights`` (a local path or s3:// URI, never a
download), the encoder starts from Google's ImageNet-21k ``R50+ViT-B_16.npz`` as the published model
did (see :func:`load_published_weights`). A checkpoint holds every weight, so loading one never
reads that file again (``weights`` is one of the factory's ``PRETRAINED_OPTIONS``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.models.blocks import ConvBNReLU, check_input_size
from raysegment.models.factory import MODELS

if TYPE_CHECKING:
    from timm.models.resnetv2 import ResNetV2

# timm (which imports torchvision) is imported when a TransUNet is built, not when the registry
# is: every fresh Ray worker that loads another model saves seconds of imports.


def cnn_backbone(
    in_channels: int, layers: tuple[int, ...], widths: tuple[int, ...], stem_channels: int, norm_groups: int
) -> ResNetV2:
    """ResNetV2 (no pre-activation) with a stem (1/2) and three stages (1/4, 1/8, 1/16), as timm's hybrid ViTs use."""
    from timm.layers import GroupNormAct, StdConv2d
    from timm.models.resnetv2 import ResNetV2

    if len(layers) != 3 or len(widths) != 3:
        raise ConfigError(f"transunet: cnn_layers and cnn_widths need 3 entries (stages at 1/4, 1/8, 1/16), got {layers} and {widths}")
    resnet = ResNetV2(
        layers=list(layers),
        channels=tuple(widths),
        in_chans=in_channels,
        stem_chs=stem_channels,
        num_classes=0,
        global_pool="",
        preact=False,
        stem_type="",
        conv_layer=partial(StdConv2d, eps=1e-8),
        norm_layer=partial(GroupNormAct, num_groups=norm_groups, eps=1e-6),
    )
    return resnet


def load_published_weights(model: TransUNet, resnet: ResNetV2, num_heads: int, uri: str) -> None:
    """Load Google's ImageNet-21k ``R50+ViT-B_16.npz`` (local or s3://) into ``model``'s encoder.

    That file is where TransUNet's authors start. timm's ViT npz loader does the conversion (HWIO
    kernels to OIHW, query/key/value kernels to the fused qkv): a timm hybrid ViT is assembled
    around the model's own ResNetV2, patch embedding, blocks and final norm, so the loader writes
    straight into them. The position embedding loses the file's class-token entry and, when
    ``img_size // 16`` differs from the file's grid, is resampled (bilinear), as TransUNet does.
    The decoder stays random.

    With ``in_channels != 3`` the stem's RGB kernel is adapted as timm adapts every pretrained first
    convolution: summed over RGB for 1 channel (what TransUNet gets by repeating a grey image three
    times); for more, repeated across channels and scaled by ``3 / in_channels``.

    Raises:
        ConfigError: naming ``uri`` when it is not a hybrid ViT npz or does not fit the model's configuration.
    """
    import numpy as np
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    own = {"num_layers": len(model.blocks), "num_heads": num_heads, "cnn_layers": [len(stage.blocks) for stage in resnet.stages]}
    with storage.local_file(uri) as path:
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{uri}: not a .npz weights file ({' '.join(str(exc).split())[:200]})") from exc
        if not isinstance(npz, np.lib.npyio.NpzFile) or not {"conv_root/kernel", "embedding/kernel"} <= set(npz.files):
            raise ConfigError(f"{uri}: not a hybrid ViT .npz in the layout of R50+ViT-B_16.npz (no conv_root/kernel, embedding/kernel)")
        with npz:
            found = _npz_architecture(npz)
        if found != own:
            # timm's loader walks the model's blocks and would leave a longer file's extra blocks
            # unread, and a head count changes no shape: both would load "successfully".
            raise ConfigError(f"{uri}: the file has {_describe(found)}, this model {_describe(own)}; set model.config to "
                              "the file's (R50+ViT-B_16.npz: num_layers 12, num_heads 12, cnn_layers [3, 4, 9])")
        vit = VisionTransformer(img_size=model.grid * 16, patch_size=1, in_chans=resnet.stem.conv.in_channels, num_classes=0,
                                embed_dim=model.patch_embed.out_channels, depth=0, weight_init="skip",
                                embed_layer=partial(HybridEmbed, backbone=resnet))
        vit.patch_embed.proj, vit.blocks, vit.norm = model.patch_embed, model.blocks, model.norm
        try:
            vit.load_pretrained(path)
        except (KeyError, RuntimeError, ValueError) as exc:  # a missing array, or a shape that is not this model's
            raise ConfigError(f"{uri}: does not fit this TransUNet (hidden_size, mlp_ratio, cnn_widths and stem_channels "
                              f"must be the file's): {' '.join(str(exc).split())[:300]}") from exc
    with torch.no_grad():
        model.pos_embed.copy_(vit.pos_embed[:, vit.num_prefix_tokens :])


def _npz_architecture(npz) -> dict:
    blocks = {name.split("/")[1] for name in npz.files if name.startswith("Transformer/encoderblock_")}
    query = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
    return {
        "num_layers": len(blocks),
        "num_heads": int(npz[query].shape[1]) if query in npz.files else None,  # (hidden, heads, head_dim)
        "cnn_layers": [len({name.split("/")[1] for name in npz.files if name.startswith(f"block{i}/")}) for i in (1, 2, 3)],
    }


def _describe(architecture: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in architecture.items())


class DecoderBlock(nn.Module):
    """x2 bilinear upsampling, concatenation of an optional skip feature, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(ConvBNReLU(in_channels + skip_channels, out_channels), ConvBNReLU(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


@MODELS.register("transunet")
class TransUNet(nn.Module):
    """TransUNet R50-ViT-B_16: ResNetV2 stem, ViT on 1/16 features, cascaded upsampler (Chen et al. 2021).

    Shape:
        input ``(N, in_channels, H, W)`` with H and W divisible by 16;
        output ``(N, classes, H, W)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        img_size: int = 224,
        cnn_layers: tuple[int, ...] = (3, 4, 9),
        cnn_widths: tuple[int, ...] = (256, 512, 1024),
        stem_channels: int = 64,
        norm_groups: int = 32,
        head_channels: int = 512,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 16),
        n_skip: int = 3,
        weights: str | None = None,
    ):
        from timm.layers import trunc_normal_
        from timm.models import FeatureListNet
        from timm.models.vision_transformer import Block, init_weights_vit_timm

        super().__init__()
        if len(decoder_channels) != 4 or not 0 <= n_skip <= 3 or img_size % 16:
            raise ConfigError("transunet: decoder_channels needs 4 entries, n_skip must be 0-3 and img_size divisible by 16")
        resnet = cnn_backbone(in_channels, cnn_layers, cnn_widths, stem_channels, norm_groups)
        self.cnn = FeatureListNet(resnet, out_indices=(0, 1, 2, 3), flatten_sequential=True)
        cnn_channels = self.cnn.feature_info.channels()  # [1/2, 1/4, 1/8, 1/16]
        self.grid = img_size // 16
        self.patch_embed = nn.Conv2d(cnn_channels[3], hidden_size, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, hidden_size))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *(
                Block(
                    hidden_size,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=True,
                    proj_drop=dropout,
                    attn_drop=attention_dropout,
                    norm_layer=partial(nn.LayerNorm, eps=1e-6),
                )
                for _ in range(num_layers)
            )
        )
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.conv_more = ConvBNReLU(hidden_size, head_channels)
        # skips from the deepest used resolution up: 1/8, 1/4, 1/2; the last block has none
        skip_channels = [cnn_channels[2], cnn_channels[1], cnn_channels[0], 0]
        skip_channels = [c if i < n_skip else 0 for i, c in enumerate(skip_channels)]
        in_chs = [head_channels, *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(in_chs, skip_channels, decoder_channels))
        self.n_skip = n_skip
        self.head = nn.Conv2d(decoder_channels[-1], classes, kernel_size=3, padding=1)
        trunc_normal_(self.pos_embed, std=0.02)
        self.blocks.apply(init_weights_vit_timm)
        if weights:
            load_published_weights(self, resnet, num_heads, weights)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Transformer feature map ``(N, hidden, H/16, W/16)`` and the CNN skips ``[1/8, 1/4, 1/2]``."""
        half, quarter, eighth, sixteenth = self.cnn(x)
        tokens = self.patch_embed(sixteenth)
        n, c, h, w = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)  # (N, h*w, hidden)
        pos = self.pos_embed
        if (h, w) != (self.grid, self.grid):
            from timm.layers import resample_abs_pos_embed

            pos = resample_abs_pos_embed(pos, new_size=[h, w], old_size=[self.grid, self.grid], num_prefix_tokens=0)
        tokens = self.norm(self.blocks(self.pos_drop(tokens + pos)))
        return tokens.transpose(1, 2).reshape(n, c, h, w), [eighth, quarter, half]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, 16, "transunet")
        x, skips = self.encode(x)
        x = self.conv_more(x)
        for i, block in enumerate(self.decoder):
            x = block(x, skips[i] if i < self.n_skip else None)
        return self.head(x)
