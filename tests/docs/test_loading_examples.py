"""docs/commands.md's examples that load an exported file without losslab find the boxes `losslab predict` finds, on
a photo stored sideways with an EXIF orientation tag (as phones store them), each format from a folder holding only
its own export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from doc_world import ROOT, code_blocks, shape_images
from PIL import Image

from conftest import tiny_config
from losslab import cli, run

pytestmark = pytest.mark.docs

# The snippet that loads each format, found by what only it calls.
LOADS = {"torchscript": "torch.jit.load(", "onnx": "onnxruntime.InferenceSession("}
ORIENTATION = 0x0112  # EXIF's tag; 6: the stored pixels are turned 90 degrees counter-clockwise, shown upright
# Printed after a snippet: every detection torchvision's own cut (0.05) keeps, so that an untrained model has some.
BOXES = """
_array = lambda values: values.detach().numpy() if hasattr(values, "detach") else np.asarray(values)  # torch or ONNX
_scores, _boxes = _array(found["scores"]), _array(found["boxes"])
print("BOXES=" + json.dumps(_boxes[_scores >= 0.05].tolist()))
"""


@pytest.fixture(scope="module")
def exported(module_tmp_path):
    """A tiny run, each format exported into a folder of its own, and a sideways photo with its predictions."""
    run_dir = run(tiny_config(run_dir=module_tmp_path / "run")).run_dir
    for format in LOADS:
        assert cli.main(["export", str(run_dir), "--format", format, "--out", str(module_tmp_path / format)]) == 0
    pixels, _ = next(shape_images(1, 96, seed=5))
    stored = Image.fromarray(pixels[16:80])  # 96 wide, 64 high as stored: 64 wide, 96 high once turned upright
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    photo = module_tmp_path / "phone.jpg"
    stored.save(photo, exif=exif, quality=95)
    predicted = module_tmp_path / "predicted"
    assert cli.main(["predict", str(run_dir), str(photo), "--score-threshold", "0.05", "--out", str(predicted)]) == 0
    found = json.loads((predicted / "predictions.json").read_text())
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (item["bbox"] for item in found)])
    return module_tmp_path, photo, boxes


@pytest.mark.parametrize("format", list(LOADS))
def test_the_loading_example_finds_the_boxes_predict_finds_on_an_exif_rotated_photo(format, exported, tmp_path):
    folder, photo, predicted = exported
    (snippet,) = [block.text for block in code_blocks(ROOT / "docs" / "commands.md", languages=("python",))
                  if LOADS[format] in block.text]
    assert "street.png" in snippet
    (tmp_path / "export").symlink_to(folder / format)  # this format's export only: no other metadata file beside it
    source = snippet.replace("street.png", str(photo)) + BOXES
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("BOXES=")]
    boxes = np.array(json.loads(line.removeprefix("BOXES=")))
    # The upright frame, 64 wide and 96 high (x + w of predictions.json's [x, y, w, h] may round 1e-6 past the edge).
    assert len(predicted) > 0 and predicted[:, 2].max() < 64.001 and predicted[:, 3].max() > 64
    assert boxes.shape == predicted.shape
    # Every box predict found, in its order (by score), at most float32 noise away (docs/commands.md's tolerances).
    assert np.abs(boxes - predicted).max() < 0.05
