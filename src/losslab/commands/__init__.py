"""One module per command-line verb: train (the Hydra app), evaluate, predict, export, plot, compare, runs,
show-augment. The top layer: may import every other."""
