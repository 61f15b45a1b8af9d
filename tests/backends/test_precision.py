"""fp16/bf16 on a CPU without instructions for them: one warning that they are emulated."""

import warnings

import pytest
import torch
import torch.nn as nn

from rsinfer.backends import torch_backend
from rsinfer.backends.torch_backend import EmulatedPrecisionWarning, TorchBackend, cpu_has_native
from rsinfer.models import get_config

CPU = torch.device("cpu")


def _backends(precision, n=2) -> list[warnings.WarningMessage]:
    config = get_config("simple-fcn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(n):
            TorchBackend(nn.Conv2d(3, 2, 1), config, CPU, precision=precision)
    return [w for w in caught if issubclass(w.category, EmulatedPrecisionWarning)]


@pytest.fixture(autouse=True)
def not_warned_yet(monkeypatch):
    monkeypatch.setattr(torch_backend, "_emulation_warned", False)


@pytest.mark.skipif(cpu_has_native("bf16"), reason="this CPU has bf16 instructions")
def test_bf16_on_a_cpu_without_bf16_instructions_warns_once_that_it_is_emulated():
    (warning,) = _backends("bf16")
    assert "no bf16 instructions" in str(warning.message) and "slower than fp32" in str(warning.message)


def test_no_warning_for_fp32_or_where_the_cpu_has_the_instructions(monkeypatch):
    assert _backends("fp32") == []
    monkeypatch.setattr(torch_backend, "cpu_has_native", lambda precision: True)
    assert _backends("bf16") == [] and _backends("fp16") == []
