"""The config layer: dataclass schemas, semantic validation, composition and Hydra's resolvers; registered
by an explicit `register()`, never on import. The only layer besides the commands and the run
orchestration that uses Hydra and OmegaConf. Imports losslab.losses.catalogue, data and modeling names."""
