"""What validation refuses before anything runs, beyond what composition refuses: keys added with `+` where the
schema has none, values torch itself would refuse mid-run, loss parameters out of their range, and a CUDA-only
precision on a CPU."""

from __future__ import annotations

import re

import pytest

from losslab import compose_config
from losslab.config.validation import validate
from losslab.errors import LosslabError


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+trainer.max_epoch=3"], "trainer.max_epoch: trainer has no key 'max_epoch'; the nearest is "
                                   "trainer.max_epochs"),
        (["+trainer.foo=2"], "trainer.foo: trainer has no key 'foo'; its keys are max_epochs, device, seed"),
        (["+trainer.early_stopping.patiense=1"], "trainer.early_stopping.patiense: trainer.early_stopping has no "
                                                 "key 'patiense'; the nearest is trainer.early_stopping.patience"),
        (["+foo=1"], "foo: the config has no key 'foo'; its keys are task, model, loss"),
        (["+data.num_image=5"], "data.num_image: data has no key 'num_image'; the nearest is data.num_images"),
        (["+loss.cls.gamma=2"], "loss.cls.gamma: loss.cls has no key 'gamma'; its keys are name"),
        (["loss.schedule.phases=[{epochs: 1}]", "+loss.schedule.phases.0.lr_factr=0.5"],
         "loss.schedule.phases[0].lr_factr: loss.schedule.phases[0] has no key 'lr_factr'; the nearest is "
         "loss.schedule.phases[0].lr_factor"),
    ],
)
def test_a_key_added_with_plus_where_the_schema_has_none_is_refused(overrides, message):
    with pytest.raises(LosslabError, match=re.escape(message)):
        validate(compose_config(overrides))


def test_keys_added_with_plus_where_new_keys_belong_are_accepted():
    plan = validate(compose_config(["loss/cls=custom", "loss.cls._target_=torch.nn.functional.cross_entropy",
                                    "+loss.cls.label_smoothing=0.1", "++optimizer.amsgrad=true",
                                    "scheduler=step", "++scheduler.last_epoch=-1"]))
    assert plan.sections["loss"]["cls"]["label_smoothing"] == 0.1
    assert plan.sections["optimizer"]["amsgrad"] is True and plan.sections["scheduler"]["last_epoch"] == -1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["++optimizer.betas=[2.0,0.9]"],
         "optimizer.betas=[2.0, 0.9]: torch.optim.AdamW refuses it (Invalid beta parameter at index 0: 2.0)"),
        (["++optimizer.eps=-1.0"], "optimizer.eps=-1.0: torch.optim.AdamW refuses it (Invalid epsilon value: -1.0)"),
        (["scheduler=plateau", "scheduler.factor=2.0"],
         "scheduler.factor=2.0: torch.optim.lr_scheduler.ReduceLROnPlateau refuses it (Factor should be < 1.0)"),
    ],
)
def test_values_torch_refuses_are_refused_before_anything_runs(overrides, message):
    with pytest.raises(LosslabError, match=re.escape(message)) as error:
        validate(compose_config(overrides))
    assert str(error.value).startswith("invalid configuration: ") and "\n" not in str(error.value)


def test_a_refused_optimizer_still_lets_the_schedulers_values_be_checked():
    with pytest.raises(LosslabError) as error:
        validate(compose_config(["++optimizer.betas=[2.0,0.9]", "scheduler=plateau", "scheduler.factor=2.0"]))
    assert "optimizer.betas=[2.0, 0.9]" in str(error.value) and "scheduler.factor=2.0" in str(error.value)


def test_float16_precision_on_a_cpu_is_refused_and_bfloat16_is_not():
    with pytest.raises(LosslabError, match=re.escape(
            "trainer.precision=16-mixed needs CUDA, but trainer.device=cpu runs on the cpu here; choose "
            "trainer.precision=bf16-mixed (CUDA or CPU) or 32")):
        validate(compose_config(["trainer.precision=16-mixed", "trainer.device=cpu"]))
    assert validate(compose_config(["trainer.precision=bf16-mixed", "trainer.device=cpu"])).precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.schedule.phases=[{epochs: 1, lr_factor: -1}]"],
         "loss.schedule.phases[0].lr_factor=-1.0: expected a positive factor of the learning rate"),
        (["loss.schedule.phases=[{epochs: 1}, {epochs: 0, lr_factor: 0}]"],
         "loss.schedule.phases[1].epochs=0: expected at least 1 epoch per phase; "
         "loss.schedule.phases[1].lr_factor=0.0: expected a positive factor"),
        (["loss/cls=focal", "loss.cls.gamma=-1"], "loss.cls: loss.cls.gamma=-1.0 (focal): gamma must be >= 0"),
        (["loss.schedule.phases=[{epochs: 2, losses: {cls: {name: focal, gamma: -1}}}]"],
         "loss.schedule.phases[0].losses.cls: loss.cls.gamma=-1 (focal): gamma must be >= 0"),
    ],
)
def test_a_loss_phase_or_parameter_out_of_its_range_is_refused(overrides, message):
    with pytest.raises(LosslabError, match=re.escape(message)):
        validate(compose_config(overrides))
