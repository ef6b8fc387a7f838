"""The guard against oneDNN's heap overflow in a strided 1x1 convolution's backward over
channels-last input (train/conv_guard.py).

The overflow corrupts the heap, so training that hits it is run in a child process: an abort
there fails the test instead of the whole session, and corruption cannot leak into other tests.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import torch
from torch import nn

from normlab.norms import make_norm
from normlab.train.conv_guard import guard_strided_pointwise_convolutions


class LayerNorm2d(nn.Module):
    """timm-style channel LayerNorm: channels moved last and left there (channels-last out)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def projection_net(in_channels: int = 1, num_classes: int = 4) -> nn.Module:
    # Four channels: below the vector width on AVX2 (8) and AVX-512 (16) alike.
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        LayerNorm2d(4),
        nn.Conv2d(4, 8, 1, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def test_guard_covers_strided_pointwise_convolutions_only():
    model = projection_net()
    assert guard_strided_pointwise_convolutions(model) == 1


def test_guarded_convolution_equals_the_unguarded_one():
    torch.manual_seed(0)
    guarded = projection_net()
    plain = projection_net()
    plain.load_state_dict(guarded.state_dict())
    guard_strided_pointwise_convolutions(guarded)
    x = torch.randn(8, 1, 8, 8)
    # Forward only for the unguarded model: its backward is the overflowing kernel. The two
    # memory formats take different oneDNN kernels, so sums differ in float32 rounding only.
    torch.testing.assert_close(guarded(x), plain(x), rtol=1e-5, atol=1e-6)


def test_ln_returns_nchw_order():
    x = torch.randn(2, 4, 3, 3)
    assert make_norm("ln", 4)(x).is_contiguous()


def test_training_a_channels_last_projection_model_does_not_corrupt_the_heap(tmp_path):
    # Before the guard this child aborted on an AVX2 machine ("malloc(): ... corrupted").
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import torch
        from normlab.data import synthetic
        from normlab.train import RunConfig, train_run
        torch.set_num_threads(1)
        data = synthetic(num_examples=64, num_classes=4, size=8, seed=0)
        config = RunConfig(
            dataset="synthetic", model="net.py:projection_net", batch_size=8, lr=0.05,
            steps=40, norm="bn",
        )
        result = train_run(config, data)
        print(result.status)
        """
    )
    source = "import torch\nfrom torch import nn\n\n\n"
    source += inspect.getsource(LayerNorm2d) + "\n" + inspect.getsource(projection_net)
    (tmp_path / "net.py").write_text(source)
    (tmp_path / "main.py").write_text(script)
    child = subprocess.run(
        [sys.executable, str(tmp_path / "main.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split()[-1] in {"done", "diverged"}
