"""Training: the epoch loop (explicit arguments), optimizers and schedulers, checkpoints, and the run
orchestration, which takes a validated plan (losslab.config.plan) and never asks config/ for anything else.
Imports every layer below it (tasks, data, losses, modeling, evaluation, reporting, and config's plan);
nothing imports it but the commands and the public API."""
