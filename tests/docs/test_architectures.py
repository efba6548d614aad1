"""docs/architectures.md's table is the code's: every architecture a task trains is a row, with the loss
components its runs log."""

from __future__ import annotations

from pathlib import Path

from losslab import compose_config
from losslab.tasks import TASKS

TABLE = Path(__file__).parents[2] / "docs" / "architectures.md"


def _rows() -> dict[str, tuple[str, list[str]]]:
    """name -> (task, components) of the table's rows."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = (cells[0], [name.strip() for name in cells[3].split(",")])
    return rows


def test_the_architecture_table_lists_every_architecture_with_its_components():
    rows = _rows()
    assert set(rows) == {arch for task in TASKS for arch in task.archs}
    for task in TASKS:
        for arch in task.archs:
            model = compose_config([f"task={task.name}", f"model={arch}"]).model
            logged = [column.removeprefix("train/") for column in task.monitor_choices(model)
                      if column.startswith("train/") and column != "train/loss"]
            assert rows[arch] == (task.name, logged), arch
