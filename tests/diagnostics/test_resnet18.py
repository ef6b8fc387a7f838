"""The doctor on a torchvision-style ResNet-18 at batch 4 (the time is reported, not asserted)."""

import time

import torch

from normlab.data import synthetic
from normlab.diagnostics import examine, format_findings

from .resnet18 import ResNet18


def test_doctor_on_resnet18_at_batch_4(capsys):
    torch.manual_seed(0)
    model = ResNet18(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 11_181_642
    data = synthetic(num_examples=400, num_classes=10, channels=3, size=32, seed=0)
    x, y = data.x_train[:128], data.y_train[:128]
    started = time.perf_counter()
    findings = examine(model, x, y, 4, num_train_examples=len(data.y_train))
    seconds = time.perf_counter() - started
    found = {finding.code for finding in findings}
    # At 32x32 the last stage is 1x1: BN there sees one value per example, so batch 1 fails
    # in training and batch 4 is as noisy as i.i.d. examples (~0.4 sigma).
    assert {"batch-one-failure", "bn-batch-noise"} <= found
    text = format_findings(findings)
    assert "layer4" in text
    with capsys.disabled():
        print(f"\ndoctor on ResNet-18 at batch 4: {seconds:.1f} s\n{text}")
