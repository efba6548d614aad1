"""Mixed precision and the other speed options, exercised on the CPU (autocast bf16 runs there too)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import tiny_config
from losslab import build_dataloaders, build_model, run, train_one_epoch
from losslab.config.validation import validate
from losslab.distributed import SINGLE_PROCESS
from losslab.errors import LosslabError
from losslab.modeling.runtime import autocast
from losslab.training.optim import build_optimizer
from losslab.training.session import prepare_for_speed


def _conv_output_dtypes(model):
    seen = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    return seen


def test_bf16_mixed_runs_convolutions_in_bfloat16_and_keeps_float32_weights():
    cfg = tiny_config("trainer.precision=bf16-mixed")
    model = build_model(cfg)
    dtypes = _conv_output_dtypes(model)
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True), model)
    losses = train_one_epoch(model, optimizer, build_dataloaders(cfg)["train"], torch.device("cpu"), 1,
                             progress=False, precision="bf16-mixed")
    assert dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()) and losses["loss"] > 0


def test_autocast_is_off_at_full_precision():
    with autocast(torch.device("cpu"), "32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(torch.device("cpu"), "bf16-mixed"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_a_float16_run_keeps_its_grad_scaler_in_the_checkpoint(tmp_path, monkeypatch):
    # Validation refuses 16-mixed on a CPU (slow there, a CUDA mode); the scaler's bookkeeping is the same on either,
    # so without CUDA the refusal is lifted to test it here.
    if not torch.cuda.is_available():
        monkeypatch.setattr("losslab.config.validation.precision_problems", lambda precision, device: [])
    result = run(tiny_config("trainer.precision=16-mixed", "eval.every=0", "trainer.keep_resume_state=true",
                             run_dir=tmp_path / "run"))
    assert result.status == "completed"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0 and state["classes"] == ["circle", "square", "triangle"]


def test_channels_last_and_compile_options_change_the_model_in_place():
    cfg = tiny_config("trainer.channels_last=true", "trainer.compile=true")
    model = build_model(cfg)
    keys = list(model.state_dict())
    assert model.backbone._compiled_call_impl is None
    trained = prepare_for_speed(model, validate(cfg).sections["trainer"], torch.device("cpu"), SINGLE_PROCESS)
    assert trained is model
    weight = model.backbone.body.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    # The backbone's forward goes through torch.compile (compiled lazily on its first call), in place:
    # the checkpoint keys stay those of the plain model.
    assert model.backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == keys


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(LosslabError, match="trainer.precision=64: expected one of 32, 16-mixed, bf16-mixed"):
        run(tiny_config("trainer.precision=64"))
