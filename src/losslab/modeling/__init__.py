"""Detectors from plain values: torchvision models with loss-configurable heads, how they are run (modes,
precision, devices) and reading weights files. Imports losslab.losses and errors only."""
