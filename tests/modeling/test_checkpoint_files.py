"""Reading checkpoints: only with torch.load(weights_only=True), and a clear reason for every file refused."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch

from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint


def test_an_empty_file_is_refused_with_a_reason(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(LosslabError, match="is empty \\(0 bytes\\): a copy or a disk that filled up cut it short"):
        read_checkpoint(tmp_path / "last.pt")


def test_a_cut_short_file_is_refused_with_a_reason(tmp_path):
    torch.save({"model": {"w": torch.zeros(1000)}, "epoch": 1}, tmp_path / "whole.pt")
    (tmp_path / "last.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
    with pytest.raises(LosslabError) as refused:
        read_checkpoint(tmp_path / "last.pt")
    assert str(refused.value).removeprefix(f"checkpoint {tmp_path / 'last.pt'} could not be read as a losslab "
                                           "checkpoint: ").strip(), "the reason is empty"


class Payload:
    """Any class: unpickling it would run code of the file's choosing."""


def test_a_pickled_object_is_refused_without_advice_to_load_it_unsafely(tmp_path):
    torch.save({"model": Payload(), "epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(LosslabError) as refused:
        read_checkpoint(tmp_path / "last.pt")
    message = str(refused.value)
    assert f"it holds a Python object ({Payload.__module__}.Payload) that a safe load refuses" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "add_safe_globals" not in message


def test_a_foreign_file_is_refused_without_torchs_advice(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LosslabError, match="it is not a file torch.save wrote") as refused:
        read_checkpoint(tmp_path / "last.pt")
    assert "False" not in str(refused.value)


class Command:
    """What a malicious file pickles: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return os.system, ("echo ran",)


def test_a_file_whose_pickle_calls_a_function_is_said_to_hold_code_that_is_refused(tmp_path):
    torch.save({"model": Command(), "epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(LosslabError) as refused:
        read_checkpoint(tmp_path / "last.pt")
    message = str(refused.value)
    assert "it holds code (posix.system, of the module posix) that a safe load refuses to run" in message
    assert "not a file torch.save wrote" not in message and "weights_only` set to `False" not in message


def test_a_plain_pickle_is_refused_without_torchs_warnings(tmp_path):
    (tmp_path / "last.pt").write_bytes(pickle.dumps({"model": {}, "epoch": 1}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LosslabError, match="it is not a file torch.save wrote"):
            read_checkpoint(tmp_path / "last.pt")
    assert [str(warning.message) for warning in caught] == []
