"""Training: the epoch loop (explicit arguments), optimizers and schedulers, checkpoints, and the run
orchestration `run(cfg)`. Imports every layer below it (config, data, losses, modeling, evaluation,
reporting); nothing imports it but the commands and the public API."""
