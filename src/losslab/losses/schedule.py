"""Loss schedules: phases of epochs, each with its own component losses and learning-rate factor."""

from __future__ import annotations

from dataclasses import dataclass

from losslab.errors import LosslabError


@dataclass(frozen=True)
class Phase:
    """One phase: its 1-based number, its length, the full loss choices in force and the lr factor."""

    number: int
    epochs: int
    choices: dict[str, dict]
    lr_factor: float


class LossSchedule:
    """Phases run in order for their number of epochs; with `cycle` the sequence repeats, without
    it the last phase lasts to the end of training. A phase overrides only the components it names
    (a name and, optionally, parameters); the others keep the run's base choices."""

    def __init__(self, base_choices: dict[str, dict], phases: list[dict], cycle: bool = False):
        self.cycle = cycle
        self.phases = [self._phase(i + 1, base_choices, phase) for i, phase in enumerate(phases)]

    @staticmethod
    def _phase(number: int, base_choices: dict[str, dict], phase: dict) -> Phase:
        where = f"loss.schedule.phases[{number - 1}]"
        if phase.get("epochs", 0) < 1:
            raise LosslabError(f"{where}.epochs={phase.get('epochs')}: expected at least 1 epoch per phase.")
        overrides = phase.get("losses") or {}
        unknown = sorted(set(overrides) - set(base_choices))  # the task's keys: cls, box, ... or pixel
        if unknown:
            raise LosslabError(f"{where}.losses names {unknown}; expected component keys among {list(base_choices)}.")
        if any("name" not in choice for choice in overrides.values()):
            raise LosslabError(f"{where}.losses: every component needs a name, e.g. {{cls: {{name: weighted_ce}}}}.")
        choices = {**base_choices, **{key: dict(choice) for key, choice in overrides.items()}}
        return Phase(number, int(phase["epochs"]), choices, float(phase.get("lr_factor", 1.0)))

    def phase_at(self, epoch: int) -> Phase | None:
        """The phase in force at `epoch` (1-based), or None without phases."""
        if not self.phases:
            return None
        position = epoch - 1
        if self.cycle:
            position %= sum(phase.epochs for phase in self.phases)
        for phase in self.phases:
            if position < phase.epochs:
                return phase
            position -= phase.epochs
        return self.phases[-1]
