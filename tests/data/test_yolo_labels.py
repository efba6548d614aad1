"""data=yolo's label files read a chunk at a time: the numpy reading of good chunks gives exactly what the
line-by-line reading gives (which names every bad line), across chunk edges and with files without lines."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import numpy as np
import pytest

from losslab.data import yolo_labels
from losslab.data.yolo_labels import read_labels
from losslab.data.yolo_layout import found_labels, in_path_order
from losslab.errors import LosslabError

TEXTS = [
    "0 0.5 0.5 0.2 0.2\n\n1 0.1 0.1 0.5 0.1 0.5 0.5\r\n",  # an empty line; a polygon; a CRLF ending
    "",
    "  \n\n",  # blank lines only
    "2 -0.0 0 1 1\n0 1e-1 0.5 0.2 0.2 \n",  # a -0.0 kept as it is; exponents and trailing spaces
    "1 -0.005 0.5 1.004 0.3 0.2 0.2\n1 0.5 0.5 0.2 0.2",  # clipped into [0, 1]; no final newline
    "0 0.5 0.5 0 0\n",
]


def write_labels(folder, texts: list[str | None]) -> list[str | None]:
    paths = []
    for number, text in enumerate(texts):
        path = folder / f"{number:03d}.txt"
        if text is not None:
            path.write_text(text)
        paths.append(str(path) if text is not None else None)
    return paths


def as_lists(labels) -> list:
    return [labels.counts.tolist(), labels.classes.tolist(), labels.lengths.tolist(),
            labels.coordinates.tobytes(), labels.lines.tolist(), labels.clipped_lines]


@pytest.mark.parametrize("chunk", [1, 2, 4, 512])
def test_good_chunks_read_at_once_give_what_the_line_by_line_reading_gives(tmp_path, monkeypatch, chunk):
    paths = write_labels(tmp_path, [*TEXTS, None, *TEXTS, "", None])
    monkeypatch.setattr(yolo_labels, "CHUNK", chunk)
    assert yolo_labels._parsed(TEXTS, 3) is not None  # these lines are read at once
    fast = read_labels(paths, 3)
    monkeypatch.setattr(yolo_labels, "_parsed", lambda *args: None)  # every chunk read line by line
    slow = read_labels(paths, 3)
    assert as_lists(fast) == as_lists(slow)
    assert fast.counts.tolist() == [2, 0, 0, 2, 2, 1, 0, 2, 0, 0, 2, 2, 1, 0, 0]
    assert fast.lines.tolist()[:7] == [1, 3, 1, 2, 1, 2, 1]
    assert fast.lengths.tolist()[:7] == [4, 6, 4, 4, 6, 4, 4] and fast.clipped_lines == 2
    assert fast.coordinates[18:24].tolist() == [0.0, 0.5, 1.0, 0.3, 0.2, 0.2]
    assert np.signbit(fast.coordinates[10]) and fast.where(np.array([5, 8])) == [f"{paths[4]}:2", f"{paths[7]}:3"]


def test_the_numpy_reading_leaves_every_bad_line_to_the_line_by_line_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(yolo_labels, "CHUNK", 2)
    paths = write_labels(tmp_path, ["0 0.5 0.5 0.2 0.2\n", "0 1_0 0.5 0.2 0.2\n0 0x1 0.5 0.2 0.2\n",
                                    "0 0.5 0.5 0.2 0.2\n", "1.5 0.5 0.5 0.2 0.2\n4 0.5 0.5 0.2 0.2\n"])
    with pytest.raises(LosslabError, match=r"^2 label lines that cannot be read: .*001.txt:2 \('0 0x1 0.5 0.2 0.2'\), "
                                           r".*003.txt:1 \('1.5 0.5 0.5 0.2 0.2'\)\.$"):
        read_labels(paths, 3)  # float() reads 1_0 as 10: a coordinate far outside, reported after unreadable lines
    (tmp_path / "more").mkdir()
    paths = write_labels(tmp_path / "more", ["0 0.5 0.5 0.2 0.2\n", "", "", "0 0.5 0.5 0.2 0.2\n4 0.5 0.5 0.2 0.2\n"])
    with pytest.raises(LosslabError, match=r"^1 class indices outside .*003.txt:2 \(class 4\)\.$"):
        read_labels(paths, 3)


def test_label_files_are_found_and_strays_listed_by_one_listing_per_folder(tmp_path):
    (tmp_path / "labels").mkdir()
    for name in ("a.txt", "b.txt", "stray.txt", "notes.md"):
        (tmp_path / "labels" / name).write_text("")
    (tmp_path / "labels" / "c.txt").mkdir()  # a folder is no label file
    wanted = [str(tmp_path / "labels" / name) for name in ("a.txt", "c.txt", "d.txt")] + [str(tmp_path / "x" / "e.txt")]
    found, stray = found_labels(wanted)
    assert found == {str(tmp_path / "labels" / "a.txt")}
    assert stray == [str(tmp_path / "labels" / "b.txt"), str(tmp_path / "labels" / "stray.txt")]


def test_path_strings_sort_as_paths_do_roots_and_relative_ones_mixed():
    names = ["a", "b", "a b", "a-b", "A", "a.png", "-x", ".h", "x.png.png", "!", "~", "é", "0"]
    rng = np.random.default_rng(0)
    texts = {os.path.normpath(["", "/", "//"][rng.integers(3)] + "/".join(rng.choice(names, rng.integers(1, 5))))
             for _ in range(3000)}
    assert in_path_order(texts) == [str(path) for path in sorted(map(PurePosixPath, texts))]
    assert in_path_order(texts)[:3] == sorted(texts, key=lambda text: PurePosixPath(text).parts)[:3]
