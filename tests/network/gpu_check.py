"""Manual accelerator check (not collected by pytest): timm parity of the ViT, full-preset forward.

Run on a CUDA machine with timm installed: `PYTHONPATH=src python3 tests/network/gpu_check.py`.
Checks that (1) our ViT loads a timm `vit_large_patch16_384` (LayerScale, 21841 classes) state_dict
strictly and matches its final/intermediate features, and (2) the full preset runs at 1536 px,
with a batch of 2 equal to two single forwards.
"""

from __future__ import annotations

import time

import torch

from mlsharp.checkpoint import randomize_zero_heads
from mlsharp.network import RAW_OUTPUT_NAMES, SharpPredictor
from mlsharp.network.vit import VisionTransformer
from mlsharp.presets import ViTConfig, get_preset


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_timm_parity(dev: str) -> None:
    import timm

    ref = timm.create_model(
        "vit_large_patch16_384", pretrained=False, init_values=1e-5, num_classes=21841, global_pool=""
    )
    ref = ref.to(dev).eval()
    with torch.no_grad():  # make LayerScale non-trivial so blocks matter
        for blk in ref.blocks:
            blk.ls1.gamma.uniform_(0.5, 1.0)
            blk.ls2.gamma.uniform_(0.5, 1.0)
    for fused in (True, False):
        mine = VisionTransformer(ViTConfig(), fused_attention=fused).to(dev).eval()
        mine.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(3, 3, 384, 384, device=dev)
        with torch.no_grad():
            final, (i5, i11) = mine(x, (5, 11))
            tokens, inter = ref.forward_intermediates(x, indices=[5, 11], norm=False, output_fmt="NCHW")
            ref_final = tokens[:, 1:].reshape(3, 24, 24, 1024).permute(0, 3, 1, 2)
        print(
            f"timm parity fused={fused}: final {rel(final, ref_final):.2e}, "
            f"block5 {rel(i5, inter[0]):.2e}, block11 {rel(i11, inter[1]):.2e}"
        )


def check_full_forward(dev: str) -> None:
    torch.manual_seed(0)
    with torch.device(dev):
        model = SharpPredictor(get_preset("full")).eval()
        randomize_zero_heads(model)
    image = torch.rand(2, 3, 1536, 1536, device=dev)
    phi = torch.tensor([0.9, 1.1], device=dev)
    with torch.no_grad():
        for b in (1, 2):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            out = model(image[:b], phi[:b])
            torch.cuda.synchronize()
            peak_gib = torch.cuda.max_memory_allocated() / 2**30
            print(
                f"full B={b}: {time.perf_counter() - t0:.2f} s, peak {peak_gib:.1f} GiB, "
                f"shapes {[tuple(o.shape) for o in out]}, finite {all(o.isfinite().all() for o in out)}"
            )
        batched = model(image, phi)
        second = model(image[1:], phi[1:])
        first = model(image[:1], phi[:1])
        for name, o, a, c in zip(RAW_OUTPUT_NAMES, batched, first, second, strict=True):
            print(f"  batch-vs-single {name}: {rel(o, torch.cat([a, c])):.2e}")


if __name__ == "__main__":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda"
    print(torch.__version__, torch.cuda.get_device_name())
    check_timm_parity(device)
    check_full_forward(device)
