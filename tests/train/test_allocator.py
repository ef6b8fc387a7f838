"""The allocator settings of ``train/allocator.py``."""

import sys

import pytest

from normlab.train import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_settings_apply_on_linux_and_can_be_turned_off(monkeypatch):
    assert allocator._apply() is True
    monkeypatch.setenv("NORMLAB_MALLOC_TUNING", "0")
    assert allocator._apply() is False


def test_applied_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_apply", lambda: calls.append(1) or True)
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [1]
