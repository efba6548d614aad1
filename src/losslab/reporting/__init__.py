"""Reporting: metrics.csv and summary.json, the diagnosis, figures, drawings, experiment loggers, run
comparison and sweep summaries. Works on plain rows and files; imports losslab.losses.catalogue and errors."""
