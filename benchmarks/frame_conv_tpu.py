"""The TPU cost model's time and memory for the U-Net's frame convolutions and upsampling, per
formulation: the frame convolutions as one `lax.conv` (CPU, GPU) and as per-tap products over
bins-last arrays (TPU); the upsampling by gathers (the model's) and by its interpolation matrix
(not adopted: README, "Checking a run fits").

    python benchmarks/frame_conv_tpu.py                                   # seed's first level: 2 -> 4 channels
    python benchmarks/frame_conv_tpu.py --bins 128 --in-channels 10 --out-channels 10

Compiles forward and backward for one v5p chip with libtpu's compile-only devices, in bf16: a
FrameEncoder's convolutions (the 1-tap identity and the 3-tap pair, the second strided, with
FrameNorm's normalisation and leaky ReLU) as one `lax.conv` each and as per-tap products summed
over channels (a broadcast and a reduce, which fuse), then the decoder's
upsampling of the bins by gathers (the model's) and by the interpolation matrix. Times are
XLA's cost model, not a measurement.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from vocal_remover_jax.models.frame_conv import frame_conv_products, xla_frame_conv
from vocal_remover_jax.models.unet import resize_bins_align_corners
from vocal_remover_jax.train.plan import one_chip_gradient_cost


def resize_by_matmul(x, bins):
    """`resize_bins_align_corners` as a product with its interpolation matrix."""
    in_bins = x.shape[2]
    pos = np.arange(bins) * ((in_bins - 1) / max(bins - 1, 1))
    lo = np.clip(np.floor(pos).astype(np.int32), 0, in_bins - 1)
    weights = np.zeros((in_bins, bins))
    np.add.at(weights, (lo, np.arange(bins)), 1 - (pos - lo))
    np.add.at(weights, (np.minimum(lo + 1, in_bins - 1), np.arange(bins)), pos - lo)
    return jnp.einsum("bfnc,nm->bfmc", x, jnp.asarray(weights, x.dtype),
                      preferred_element_type=jnp.float32).astype(x.dtype)


def encoder_convolutions(conv, x, identity, first, second):
    """FrameEncoder's arithmetic with the affine of its norms left out."""
    def norm(h):
        h32 = h.astype(jnp.float32)
        mean = h32.mean(axis=(2, 3), keepdims=True)
        return ((h32 - mean) * jax.lax.rsqrt(jnp.square(h32 - mean).mean(axis=(2, 3), keepdims=True) + 1e-5)
                ).astype(h.dtype)

    x = x.astype(jnp.bfloat16)
    identity, first, second = (k.astype(jnp.bfloat16) for k in (identity, first, second))
    h = jax.nn.leaky_relu(norm(conv(x, first, 1, 1)))
    return conv(x, identity, 2, 0) + jax.nn.leaky_relu(norm(conv(h, second, 2, 1)))


def report(name, fn, *shapes) -> None:
    seconds, temporaries, _ = one_chip_gradient_cost(fn, *shapes)
    print(f"  {name:40s} {seconds * 1e3:7.3f} ms (cost model), temporaries {temporaries / 1e6:7.1f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--bins", type=int, default=1024)
    p.add_argument("--in-channels", type=int, default=2)
    p.add_argument("--out-channels", type=int, default=4)
    p.add_argument("--upsampled-channels", type=int, default=14, help="channels of the upsampled array")
    args = p.parse_args()
    b, f, n, cin, cout = args.batch, args.frames, args.bins, args.in_channels, args.out_channels
    kernels = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((1, cin, cout), (3, cin, cout), (3, cout, cout))]
    x = jax.ShapeDtypeStruct((b, f, n, cin), jnp.float32)
    print(f"FrameEncoder convolutions, {b} x {f} frames x {n} bins, {cin} -> {cout} channels, bf16, "
          "forward + backward, one v5p chip:")
    for name, conv in (("lax.conv (CPU, GPU)", xla_frame_conv), ("per-tap products, bins last (TPU)", frame_conv_products)):
        report(name, lambda *a, conv=conv: encoder_convolutions(conv, *a), x, *kernels)
    c = args.upsampled_channels
    print(f"Upsampling {n // 2} -> {n} bins, {b} x {f} frames x {c} channels, bf16, forward + backward:")
    low = jax.ShapeDtypeStruct((b, f, n // 2, c), jnp.bfloat16)
    for name, resize in (("gathers (the model's)", resize_bins_align_corners), ("interpolation matrix", resize_by_matmul)):
        report(name, lambda y, resize=resize: resize(y, n), low)


if __name__ == "__main__":
    main()
