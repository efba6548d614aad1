"""The config layer: dataclass schemas, composition and Hydra's resolvers (registered by an explicit `register()`,
never on import), and validation, which checks a composed config once and decides the run's plan
(losslab.config.plan: plain values and the task object). Training, evaluation and modeling import only the plan's
types from here. Imports losses, data, modeling, tasks, evaluation and reporting names; with the commands and the run
orchestration, the only code that uses Hydra and OmegaConf."""
