"""Losses: the functions (functional), their catalogue (names, parameters, defaults), the per-head adapters,
loss schedules and `build_losses`. Imports nothing of losslab's but errors."""
