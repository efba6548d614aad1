"""Models from plain values: torchvision detectors with loss-configurable heads and torchvision segmentation
networks with per-pixel losses, how they are run (modes, precision, devices) and reading weights files. Imports
losslab.losses and errors only."""
