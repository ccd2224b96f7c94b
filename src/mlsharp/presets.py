"""Network hyper-parameters as frozen dataclasses, and the named presets.

`full` reproduces the official checkpoint's architecture (it must load `sharp_2572gikvuh.pt`
strictly); `tiny` keeps every code path of the 1536 px pipeline at ~1.1 M parameters for CI;
`test` runs the tiny widths at 512 px with patch overlap off for sub-second tests.
The spatial pipeline is fixed by `working_size_px` and the ViT tile size: the working image is
cut into ViT-sized tiles at full and half resolution, and its quarter-resolution copy must be
exactly one tile.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlsharp.errors import InvalidParameterError


@dataclass(frozen=True)
class ViTConfig:
    """A timm-style VisionTransformer (class token, LayerScale, no register tokens)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    img_size_px: int = 384
    patch_size_px: int = 16
    mlp_ratio: float = 4.0
    #: classifier width; the official weights carry an unused 21841-way head
    num_classes: int = 21841
    layer_scale_init: float = 1e-5
    norm_eps: float = 1e-6

    @property
    def grid_size(self) -> int:
        """Tokens per side of the patch grid (24 for 384 px / 16 px)."""
        return self.img_size_px // self.patch_size_px


@dataclass(frozen=True)
class EncoderConfig:
    """Sliding pyramid network: two ViTs plus projection/upsampling stacks."""

    vit: ViTConfig = ViTConfig()
    #: channel widths of the four SPN levels after projection (Depth Pro `dims_encoder`)
    dims_encoder: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    #: patch-encoder blocks whose raw outputs become latent0 / latent1 (only the first two are used)
    hook_block_ids: tuple[int, ...] = (5, 11, 17, 23)


@dataclass(frozen=True)
class DepthConfig:
    """Monodepth DPT decoder and depth head."""

    decoder_dim: int = 256
    #: width before the final 1x1 conv of the depth head (fixed at 32 in the official model)
    head_hidden_dim: int = 32


@dataclass(frozen=True)
class GaussianDecoderConfig:
    """Gaussian feature decoder (second DPT decoder + texture/geometry heads)."""

    decoder_dim: int = 128
    dim_out: int = 32
    norm_num_groups: int = 8


@dataclass(frozen=True)
class AlignmentConfig:
    """Learned depth-alignment UNet: weights only (never run at inference)."""

    base_width: int = 16
    steps: int = 4
    norm_num_groups: int = 4


@dataclass(frozen=True)
class SharpConfig:
    """Everything that shapes the SHARP network."""

    name: str
    working_size_px: int = 1536
    use_patch_overlap: bool = True
    encoder: EncoderConfig = EncoderConfig()
    depth: DepthConfig = DepthConfig()
    gaussian_decoder: GaussianDecoderConfig = GaussianDecoderConfig()
    alignment: AlignmentConfig = AlignmentConfig()
    #: Gaussian layers per pixel cell (the depth head predicts one disparity per layer)
    num_layers: int = 2
    #: pixel cell size of the Gaussian grid (one Gaussian per layer per 2x2 block)
    stride: int = 2

    @property
    def grid_size(self) -> int:
        """Gaussians per side of one layer (768 for the 1536 px working size)."""
        return self.working_size_px // self.stride

    @property
    def num_gaussians(self) -> int:
        """Gaussians per image: layers x grid x grid (1,179,648 for full/tiny)."""
        return self.num_layers * self.grid_size**2


_TINY_VIT = ViTConfig(embed_dim=64, depth=4, num_heads=2, img_size_px=384, num_classes=0)
_TINY_ENCODER = EncoderConfig(vit=_TINY_VIT, dims_encoder=(32, 64, 64, 64), hook_block_ids=(0, 1, 2, 3))
_TINY_DEPTH = DepthConfig(decoder_dim=32)
_TINY_GAUSSIAN = GaussianDecoderConfig(decoder_dim=16, dim_out=16)
_TINY_ALIGNMENT = AlignmentConfig(base_width=8, steps=2)

PRESETS: dict[str, SharpConfig] = {
    "full": SharpConfig(name="full"),
    "tiny": SharpConfig(
        name="tiny",
        encoder=_TINY_ENCODER,
        depth=_TINY_DEPTH,
        gaussian_decoder=_TINY_GAUSSIAN,
        alignment=_TINY_ALIGNMENT,
    ),
    "test": SharpConfig(
        name="test",
        working_size_px=512,
        use_patch_overlap=False,
        encoder=EncoderConfig(
            vit=ViTConfig(embed_dim=64, depth=4, num_heads=2, img_size_px=128, num_classes=0),
            dims_encoder=_TINY_ENCODER.dims_encoder,
            hook_block_ids=_TINY_ENCODER.hook_block_ids,
        ),
        depth=_TINY_DEPTH,
        gaussian_decoder=_TINY_GAUSSIAN,
        alignment=_TINY_ALIGNMENT,
    ),
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_preset(name: str) -> SharpConfig:
    """Return the named preset; unknown names raise with the list of valid ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise InvalidParameterError(
            f"unknown preset {name!r}; valid presets: {', '.join(PRESET_NAMES)}"
        ) from None
