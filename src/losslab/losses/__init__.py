"""Losses: the functions (functional, mask_losses, segmentation), their catalogue (names, parameters, defaults),
one component-loss builder for every task (components), the per-head adapters and what each task's models call
(build, segmentation_build), loss schedules and users' own losses. Imports nothing of losslab's but errors."""
