"""The packed model's grouped convolutions, timed layer by layer against the alternatives tried.

    python benchmarks/conv_variants.py [--pack-size 25] [--batch-size 2]
        [--variants grouped,native,unfold_bmm,im2col_last,hybrid] [--onednn-split]

Every 3x3 and 1x1 convolution of the default ResNet on digits (depth 8, widths 16/32/64, 8x8
inputs), packed K times along the channel axis as the packed engine builds it (``groups=K``),
forward and backward (input, weight and bias gradients; the stem's input gets none, as in
the engine) on random data, 1 thread, best of 5
rounds of 20 after 10 untimed calls, with the engine's allocator settings. Each variant is first
checked against ``F.conv2d`` (outputs and gradients: ``assert_close``, atol 1e-3, rtol 1e-4).

- ``grouped``: ``F.conv2d(..., groups=K)``, oneDNN's grouped convolution (what the engine uses).
- ``native``: the same call with oneDNN disabled for forward and backward (PyTorch's own
  convolution).
- ``unfold_bmm``: im2col by ``F.unfold``, the K runs as the batch of one ``baddbmm``, autograd.
- ``im2col_last``: im2col in a runs-first, channel-last order (one strided copy), a ``baddbmm``
  whose output's last dimension is the output channels, and a hand-written backward that writes
  the weight gradient in the parameter's own layout and folds the input gradient tap by tap.
- ``hybrid``: oneDNN for the forward and the input gradient, a ``bmm`` for the weight gradient
  (avoids oneDNN's reorder of the weight gradient back to PyTorch's layout).

``--onednn-split`` reruns the ``grouped`` layers in a child process with ``ONEDNN_VERBOSE=1``
and splits oneDNN's own time into convolution kernels and layout reorders (the mean of the
fastest two thirds of the calls of each primitive, per pass over the layers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from normlab.train.allocator import keep_freed_memory

LAYERS = [
    # (input channels, output channels, input size, stride, kernel): the default ResNet's convs.
    (1, 16, 8, 1, 3),
    (16, 16, 8, 1, 3),
    (16, 16, 8, 1, 3),
    (16, 32, 8, 2, 3),
    (32, 32, 4, 1, 3),
    (16, 32, 8, 2, 1),
    (32, 64, 4, 2, 3),
    (64, 64, 2, 1, 3),
    (32, 64, 4, 2, 1),
]


def grouped(
    x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int, count: int
) -> Tensor:
    return F.conv2d(x, weight, bias, stride, padding, 1, count)


def native(
    x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int, count: int
) -> Tensor:
    return F.conv2d(x, weight, bias, stride, padding, 1, count)  # run under ONEDNN_OFF


def unfold_bmm(
    x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int, count: int
) -> Tensor:
    batch, _, height, width = x.shape
    out_channels, in_channels, kernel = weight.shape[0] // count, weight.shape[1], weight.shape[-1]
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    columns = F.unfold(x, kernel, padding=padding, stride=stride)
    fan_in, positions = in_channels * kernel * kernel, out_h * out_w
    columns = columns.reshape(batch, count, fan_in, positions).permute(1, 2, 0, 3)
    columns = columns.reshape(count, fan_in, batch * positions)
    out = torch.baddbmm(
        bias.view(count, out_channels, 1), weight.view(count, out_channels, fan_in), columns
    )
    out = out.view(count, out_channels, batch, positions).permute(2, 0, 1, 3)
    return out.reshape(batch, count * out_channels, out_h, out_w)


def _columns_last(
    x: Tensor, count: int, kernel: int, stride: int, padding: int, out_h: int, out_w: int
) -> Tensor:
    """(K, N * out positions, C * kernel * kernel) im2col of (N, K * C, H, W), one strided copy."""
    batch, channels = x.shape[:2]
    in_channels = channels // count
    padded = F.pad(x, (padding,) * 4).contiguous() if padding else x.contiguous()
    height, width = padded.shape[2:]
    plane = height * width
    view = padded.as_strided(
        (count, batch, out_h, out_w, in_channels, kernel, kernel),
        (in_channels * plane, channels * plane, stride * width, stride, plane, width, 1),
    )
    return view.reshape(count, batch * out_h * out_w, in_channels * kernel * kernel)


class _Im2colLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, count):
        batch, _, height, width = x.shape
        out_channels, kernel = weight.shape[0] // count, weight.shape[-1]
        out_h = (height + 2 * padding - kernel) // stride + 1
        out_w = (width + 2 * padding - kernel) // stride + 1
        columns = _columns_last(x, count, kernel, stride, padding, out_h, out_w)
        matrix = weight.view(count, out_channels, -1)
        out = torch.baddbmm(bias.view(count, 1, out_channels), columns, matrix.transpose(1, 2))
        ctx.save_for_backward(columns, weight)
        ctx.shape = (x.shape, stride, padding, count, out_h, out_w)
        out = out.view(count, batch, out_h * out_w, out_channels).permute(1, 0, 3, 2)
        return out.reshape(batch, count * out_channels, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out):
        columns, weight = ctx.saved_tensors
        (batch, channels, height, width), stride, padding, count, out_h, out_w = ctx.shape
        out_channels, in_channels, kernel = (
            weight.shape[0] // count,
            weight.shape[1],
            weight.shape[-1],
        )
        grad = grad_out.reshape(batch, count, out_channels, out_h * out_w).permute(1, 0, 3, 2)
        grad = grad.reshape(count, batch * out_h * out_w, out_channels)
        grad_weight = torch.bmm(grad.transpose(1, 2), columns).view_as(weight)
        grad_bias = grad.sum(1).view(-1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_columns = torch.bmm(grad, weight.view(count, out_channels, -1))
            taps = grad_columns.view(count, batch, out_h, out_w, in_channels, kernel, kernel)
            padded = grad_columns.new_zeros(
                batch, count, in_channels, height + 2 * padding, width + 2 * padding
            )
            for row in range(kernel):
                for col in range(kernel):
                    rows = slice(row, row + stride * (out_h - 1) + 1, stride)
                    cols = slice(col, col + stride * (out_w - 1) + 1, stride)
                    padded[:, :, :, rows, cols] += taps[..., row, col].permute(1, 0, 4, 2, 3)
            grad_x = padded[:, :, :, padding : padding + height, padding : padding + width]
            grad_x = grad_x.reshape(batch, channels, height, width)
        return grad_x, grad_weight, grad_bias, None, None, None


def im2col_last(
    x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int, count: int
) -> Tensor:
    return _Im2colLast.apply(x, weight, bias, stride, padding, count)


class _Hybrid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, count):
        ctx.save_for_backward(x, weight)
        ctx.shape = (stride, padding, count)
        return F.conv2d(x, weight, bias, stride, padding, 1, count)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, count = ctx.shape
        batch, channels = x.shape[:2]
        out_channels, kernel = weight.shape[0] // count, weight.shape[-1]
        positions = grad_out.shape[2] * grad_out.shape[3]
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0],
                count, [True, False, False],
            )[0]  # fmt: skip
        columns = F.unfold(x, kernel, padding=padding, stride=stride)
        fan_in = channels // count * kernel * kernel
        columns = columns.view(batch, count, fan_in, positions).permute(1, 0, 3, 2)
        columns = columns.reshape(count, batch * positions, fan_in)
        grad = grad_out.reshape(batch, count, out_channels, positions).permute(1, 2, 0, 3)
        grad = grad.reshape(count, out_channels, batch * positions)
        grad_weight = torch.bmm(grad, columns).view_as(weight)
        return grad_x, grad_weight, grad.sum(2).view(-1), None, None, None


def hybrid(
    x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int, count: int
) -> Tensor:
    return _Hybrid.apply(x, weight, bias, stride, padding, count)


Layer = tuple[int, int, int, int, int]
"""(input channels, output channels, input size, stride, kernel)."""


def _without_onednn() -> contextlib.AbstractContextManager:
    return torch.backends.mkldnn.flags(enabled=False)


VARIANTS: dict[
    str, tuple[Callable[..., Tensor], Callable[[], contextlib.AbstractContextManager]]
] = {
    "grouped": (grouped, contextlib.nullcontext),
    "native": (native, _without_onednn),  # forward and backward both without oneDNN
    "unfold_bmm": (unfold_bmm, contextlib.nullcontext),
    "im2col_last": (im2col_last, contextlib.nullcontext),
    "hybrid": (hybrid, contextlib.nullcontext),
}


def time_layer(variant: str, layer: Layer, count: int, batch_size: int) -> tuple[float, float]:
    """Best (forward, backward) seconds per call of ``variant`` on one packed layer."""
    convolution, context = VARIANTS[variant]
    in_channels, out_channels, size, stride, kernel = layer
    torch.manual_seed(0)
    # The stem's input is the data: the engine computes no gradient for it.
    shape = (batch_size, count * in_channels, size, size)
    x = torch.randn(shape, requires_grad=in_channels > 1)
    weight = torch.randn(count * out_channels, in_channels, kernel, kernel, requires_grad=True)
    bias = torch.randn(count * out_channels, requires_grad=True)
    arguments = (x, weight, bias, stride, kernel // 2, count)
    inputs = [tensor for tensor in (x, weight, bias) if tensor.requires_grad]
    reference = grouped(*arguments)
    grad_out = torch.randn_like(reference)
    expected = [reference, *torch.autograd.grad(reference, inputs, grad_out)]
    with context():
        out = convolution(*arguments)
        got = [out, *torch.autograd.grad(out, inputs, grad_out)]
    for value, wanted in zip(got, expected, strict=True):
        torch.testing.assert_close(value, wanted, atol=1e-3, rtol=1e-4)

    def call() -> tuple[float, float]:
        x.grad = weight.grad = bias.grad = None  # as the engine's zero_grad: no accumulation
        with context():
            started = time.perf_counter()
            out = convolution(*arguments)
            forward = time.perf_counter()
            out.backward(grad_out)
            return forward - started, time.perf_counter() - forward

    for _ in range(10):
        call()
    best_forward = best_backward = float("inf")
    for _ in range(5):
        rounds = [call() for _ in range(20)]
        best_forward = min(best_forward, sum(forward for forward, _ in rounds) / len(rounds))
        best_backward = min(best_backward, sum(backward for _, backward in rounds) / len(rounds))
    return best_forward, best_backward


def onednn_split(count: int, batch_size: int) -> None:
    """oneDNN's own kernel and reorder time per pass over the grouped layers (child process)."""
    passes = 30
    code = (
        "import torch, torch.nn.functional as F\n"
        "from normlab.train.allocator import keep_freed_memory\n"
        "torch.set_num_threads(1); keep_freed_memory()\n"
        f"for in_channels, out_channels, size, stride, kernel in {LAYERS!r}:\n"
        f"    shape = ({batch_size}, {count} * in_channels, size, size)\n"
        "    x = torch.randn(shape, requires_grad=in_channels > 1)\n"
        f"    weight = torch.randn({count} * out_channels, in_channels, kernel, kernel)\n"
        "    weight.requires_grad_()\n"
        f"    for _ in range({passes}):\n"
        f"        out = F.conv2d(x, weight, None, stride, kernel // 2, 1, {count})\n"
        "        out.sum().backward()\n"
    )
    environment = dict(os.environ, ONEDNN_VERBOSE="1")
    output = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    ).stdout
    calls: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in output.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        for kind in ("convolution", "reorder"):  # other primitives, if any, are left out
            if kind in fields:
                calls[(kind, fields[-2])].append(float(fields[-1]))
    totals: dict[str, float] = defaultdict(float)
    for (kind, _), times in calls.items():
        fastest = sorted(times)[: max(1, len(times) * 2 // 3)]
        totals[kind] += sum(fastest) / len(fastest) * len(times) / passes
    print(
        f"oneDNN per pass over the layers (K={count}, batch {batch_size}): convolution kernels "
        f"{totals['convolution']:.2f} ms, reorders {totals['reorder']:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack-size", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--onednn-split", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    keep_freed_memory()
    print(f"K={args.pack_size}, batch {args.batch_size}, 1 thread; forward + backward, ms per call")
    print("| layer | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    totals = dict.fromkeys(variants, 0.0)
    for layer in LAYERS:
        cells = []
        for name in variants:
            forward, backward = time_layer(name, layer, args.pack_size, args.batch_size)
            totals[name] += forward + backward
            cells.append(f"{forward * 1e3:.2f} + {backward * 1e3:.2f}")
        in_channels, out_channels, size, stride, kernel = layer
        label = f"{in_channels}->{out_channels} {kernel}x{kernel}/{stride} on {size}x{size}"
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| all layers | " + " | ".join(f"{totals[name] * 1e3:.2f}" for name in variants) + " |")
    if args.onednn_split:
        onednn_split(args.pack_size, args.batch_size)


if __name__ == "__main__":
    main()
