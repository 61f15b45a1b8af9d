"""Checkpoints as users have them: full mmengine/mmseg training files, read without running pickled code."""

from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict

import pytest
import torch

from rsinfer.errors import ModelError
from rsinfer.models import create_model
from rsinfer.weights import Inert, load_checkpoint, read_checkpoint, restricted_load


class HistoryBuffer:
    """Stands in for mmengine.logging.history_buffer.HistoryBuffer (not installed here)."""

    def __init__(self, values):
        self._log_history = list(values)
        self._count_history = [1] * len(values)
        self.max_length = 1000000


class Payload:
    """Runs a shell command when unpickled by a trusting loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def mmengine_module():
    """``mmengine.logging.history_buffer`` as a module holding HistoryBuffer, so pickle names it so."""
    names = ["mmengine", "mmengine.logging", "mmengine.logging.history_buffer"]
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules["mmengine.logging.history_buffer"].HistoryBuffer = HistoryBuffer  # type: ignore[attr-defined]
    HistoryBuffer.__module__ = "mmengine.logging.history_buffer"
    yield
    HistoryBuffer.__module__ = __name__
    for n, m in saved.items():
        if m is None:
            sys.modules.pop(n, None)
        else:
            sys.modules[n] = m


def mmengine_checkpoint(state: dict[str, torch.Tensor], marker) -> dict:
    """The layout of an mmengine ``iter_*.pth`` / ``best_*.pth`` (CheckpointHook / Runner.save_checkpoint)."""
    return {
        "meta": {"epoch": 0, "iter": 8000, "seed": 0, "mmseg_version": "1.2.2", "dataset_meta": {"classes": ("a",)}},
        "state_dict": OrderedDict(state),
        "message_hub": {
            "log_scalars": {"train/loss": HistoryBuffer([0.9, 0.7]), "train/lr": HistoryBuffer([0.01])},
            "runtime_info": {"iter": 8000, "payload": Payload(marker)},
            "resumed_keys": {"iter": True},
        },
        "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.01, "params": [0]}]},
        "param_schedulers": [{"eta_min": 1e-4, "power": 1.0, "last_step": 8000}],
    }


def test_full_mmengine_checkpoint_loads_its_state_dict_and_runs_no_code(tmp_path, mmengine_module):
    marker = tmp_path / "pwned"
    model = create_model("simple-fcn")
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "iter_8000.pth"
    torch.save(mmengine_checkpoint(state, marker), path)
    # what torch.load(weights_only=True) alone says about this file
    with pytest.raises(Exception, match="HistoryBuffer"):
        torch.load(path, weights_only=True)

    got = read_checkpoint(path)
    assert not marker.exists()
    assert got.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(got[k], v)
    load_checkpoint("simple-fcn", model, path)
    assert not marker.exists()

    whole, unknown = restricted_load(path)
    assert not marker.exists()
    assert {"mmengine.logging.history_buffer.HistoryBuffer"} < set(unknown)
    assert any(u.endswith(".system") for u in unknown)  # os.system (posix.system): a stand-in, never called
    buffer = whole["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, Inert) and buffer.state["_log_history"] == [0.9, 0.7]
    payload = whole["message_hub"]["runtime_info"]["payload"]
    assert isinstance(payload, Inert) and payload.args == (f"touch {marker}",)
    assert torch.equal(whole["optimizer"]["state"][0]["momentum_buffer"], torch.zeros(3))


def test_legacy_format_with_a_foreign_class_is_one_clear_line(tmp_path, mmengine_module):
    marker = tmp_path / "pwned"
    path = tmp_path / "best_mIoU.pth"
    torch.save(mmengine_checkpoint({"w": torch.ones(2)}, marker), path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and "\x1b" not in message
    assert "mmengine.logging.history_buffer.HistoryBuffer" in message and "state_dict" in message
    assert not marker.exists()


def test_copyreg_extension_opcodes_are_refused(tmp_path):
    """EXT opcodes could fetch an object from copyreg's cache without find_class: refused."""
    import copyreg
    import pickle

    path = tmp_path / "ext.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    copyreg.add_extension("collections", "OrderedDict", 0x7FFF0001)
    try:
        payload = pickle.dumps(OrderedDict(a=1), protocol=2)
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 0x7FFF0001)
    assert b"\x84" in payload or b"\x83" in payload or b"\x82" in payload  # EXT4/EXT2/EXT1
    import zipfile

    with zipfile.ZipFile(path) as src:
        records = {n: src.read(n) for n in src.namelist()}
    name = next(n for n in records if n.endswith("/data.pkl"))
    records[name] = payload
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as dst:
        for n, b in records.items():
            dst.writestr(n, b)
    with pytest.raises(pickle.UnpicklingError, match="EXT4 opcode"):
        restricted_load(bad)
