"""What the documented commands need to run as a user would type them, on tiny settings: the code blocks of the
docs (parsed by Sybil), the rewriting of each command (tiny settings, placeholders filled) and the data and runs
they refer to.

A documented command is run unchanged but for:
- `train` (and `torchrun -m losslab`): tiny settings for the keys they do not set (tiny data, one epoch, CPU), keys
  they set that only make a run longer (epochs, trials, processes, images of the built-in data; a sweep over seeds
  keeps its first two) lowered, and `resume=` runs extended by one epoch;
- placeholders: `outputs/DATE/TIME` is the newest run in the working folder, a dated run folder that is not there
  (outputs/2026-12-01/10-00-00) a finished default run kept resumable (outputs/2026-11-23/10-00-00, which is
  there; trained with trainer.keep_resume_state=true, so it stands in for a killed run too),
  `multirun/DATE/TIME[/N]` the newest sweep (its job N, or its last), `multirun/DATE/TIME-A ... -B` the newest
  sweeps, A the older, `/data/...` the tiny datasets made here
  (COCO and its YOLO twin /data/pets/data.yaml under /data/pets, Pascal VOC under /data/VOCdevkit/VOC2012, a
  VOC-format export with classes bolt and nut under /data/parts), `photos/`, `more/**/*.jpg` and `street.png`
  images made here;
- the rest of a command elided as `...`, `DIR` and `FILE.json`: `data=coco` (`data=yolo`) gets the tiny COCO
  (YOLO) data and `data=voc` the tiny VOC data for the keys elided or left unset, `/models/NAME.pth` is
  torchvision's file NAME;
- shell globs (unquoted `*`) expand in the working folder, as a shell expands them;
- COCO weights: random weights saved under torchvision's file names in a TORCH_HOME of the tiny data, made for
  the architecture a command starts from (`model.weights=coco`, `experiment=finetune`); nothing is downloaded;
- files the docs show: `./myloss.py` (a user loss, as the docs describe it), and every YAML block whose first
  line names its file (`# myconf/loss/cls/poly1.yaml`) is written there in the working folder;
- Python snippets: `compose_config([...])` gets the tiny settings, relative paths resolve in the working folder,
  where the newest run's export/ is linked.
Commands that need what a 2-core CPU machine without network cannot give carry one of CANNOT_RUN_HERE as their
comment in the docs, and are not run.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

# The explicit list of what documented commands may need that cannot be had here; each such command says so in
# its comment (a comment line above a block's commands applies to all of them).
CANNOT_RUN_HERE = ("needs a GPU", "needs a cluster", "needs sqlalchemy<2", "CI runs it")

TINY = {
    "data.num_images": "8", "data.image_size": "64", "data.max_objects": "2", "data.batch_size": "2",
    "data.num_workers": "0", "model.min_size": "64", "model.max_size": "64", "model.box_batch_size_per_image": "16",
    "trainer.max_epochs": "1", "trainer.progress": "false", "trainer.device": "cpu",
}
SHAPES_ONLY = ("data.num_images", "data.image_size", "data.max_objects")
DETECTION_ONLY = ("model.box_batch_size_per_image",)  # keys task=segmentation's models do not have
SHORTER = {"hydra.sweeper.n_trials": "2", "hydra.launcher.n_jobs": "2", "trainer.max_epochs": "1",
           "data.num_images": TINY["data.num_images"]}
RESUMABLE = ("trainer.max_epochs", "trainer.progress", "trainer.device", "data.num_workers")
ELIDED = ("...", "DIR", "FILE.json")
MODEL_FILE = re.compile(r"^/models/([\w.-]+\.pth)$")
DEFAULT_RUN = "outputs/2026-11-23/10-00-00"  # seed_folder's finished default run
RUN_FOLDER = re.compile(r"outputs/(?:DATE/TIME|\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d)")
SWEEP_FOLDER = re.compile(r"multirun/(?:DATE/TIME|\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d)(?:/(\d+))?")
LETTERED_SWEEP = re.compile(r"multirun/DATE/TIME-([A-Z])\b")  # several sweeps in one command, made in that order


@dataclass
class Block:
    """One fenced code block of a document."""

    document: Path
    line: int
    language: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def code_blocks(document: Path, languages=("bash", "python")) -> list[Block]:
    """The blocks of a document in `languages`, in the order they come."""
    blocks = [Block(document, example.line, language, str(example.parsed))
              for language in languages
              for example in Sybil(parsers=[CodeBlockParser(language=language)]).parse(document)]
    return sorted(blocks, key=lambda block: block.line)


@dataclass
class Command:
    text: str  # as documented (continuations joined)
    cannot_run_here: str | None  # the CANNOT_RUN_HERE mark it carries


def shell_commands(block: Block) -> list[Command]:
    """The commands of a bash block, with the mark each carries (its comment, or a comment line above them)."""
    commands, block_mark = [], None
    for line in block.text.replace("\\\n", " ").splitlines():
        line = line.strip()
        mark = next((m for m in CANNOT_RUN_HERE if m in line), None)
        if not line or line.startswith("#"):
            block_mark = mark or block_mark
            continue
        commands.append(Command(line, mark or block_mark))
    return commands


class World:
    """The tiny data and the folder the commands of one document run in."""

    def __init__(self, assets: Path, folder: Path):
        self.assets, self.folder = assets, folder

    def newest(self, pattern: str) -> Path | None:
        found = sorted(self.folder.glob(pattern), key=lambda path: path.stat().st_mtime)
        return found[-1] if found else None

    @property
    def torch_home(self) -> Path:
        return self.assets / "torch_home"

    def fill(self, token: str) -> str:
        """A documented argument with its placeholders filled."""
        token = token.replace("/data/", f"{self.assets}/data/")
        key, _, value = token.partition("=")
        if MODEL_FILE.match(value):
            token = f"{key}={self.coco_file(MODEL_FILE.match(value).group(1))}"
        token = RUN_FOLDER.sub(self.run_folder, token)

        def sweep(match: re.Match) -> str:
            folder = self.newest("multirun/*/*")
            jobs = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
            if match.group(1) is None:
                return str(folder)
            wanted = folder / match.group(1)
            return str(wanted if wanted.is_dir() else jobs[-1])

        return SWEEP_FOLDER.sub(sweep, token)

    def run_folder(self, match: re.Match) -> str:
        if match.group(0) == "outputs/DATE/TIME":
            return str(self.newest("outputs/*/*"))
        named = self.folder / match.group(0)
        return str(named if named.is_dir() else self.folder / DEFAULT_RUN)

    def tiny_data(self, kind: str) -> dict[str, str]:
        """The keys of the tiny dataset of `data=kind`."""
        data = self.assets / "data"
        return {"coco": {"data.images": f"{data}/pets/images", "data.annotations": f"{data}/pets/instances.json"},
                "yolo": {"data.yaml": f"{data}/pets/data.yaml"},
                "voc": {"data.root": f"{data}/VOCdevkit/VOC2012"},
                "voc_seg": {"data.root": f"{data}/VOCdevkit/VOC2012"},
                "folder": {"data.images": f"{data}/roads/images", "data.masks": f"{data}/roads/masks"}}.get(kind, {})

    def coco_file(self, name: str) -> Path:
        """torchvision's COCO weights file `name` in this world's TORCH_HOME: random weights of its architecture."""
        import torch
        from torchvision.models import detection, get_model_weights, list_models

        path = self.torch_home / "hub" / "checkpoints" / name
        if path.is_file():
            return path
        for model in list_models(module=detection):
            if any(weights.url.rsplit("/", 1)[-1] == name for weights in get_model_weights(model)):
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.manual_seed(0)
                torch.save(getattr(detection, model)(weights=None, weights_backbone=None).state_dict(), path)
                return path
        raise AssertionError(f"/models/{name}: no torchvision detection weights have that file name")

    def words(self, command: Command) -> list[str]:
        """The command's words as a shell gives them to the program: comments dropped, unquoted globs expanded in
        the working folder (a glob matching nothing stays as typed), quotes removed."""
        lexer = shlex.shlex(command.text, posix=False, punctuation_chars=False)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words = []
        for raw in lexer:
            quoted = raw[0] in "'\"" or "=" in raw and raw.split("=", 1)[1][:1] in "'\""
            matches = sorted(glob.glob(raw, root_dir=self.folder)) if "*" in raw and not quoted else []
            words += matches or shlex.split(raw)
        return words

    def argv(self, command: Command) -> list[str]:
        """The command as it runs here: placeholders filled and tiny settings for train runs."""
        letters = sorted(set(LETTERED_SWEEP.findall(command.text)))
        made = sorted(self.folder.glob("multirun/*/*"), key=lambda path: path.stat().st_mtime)
        sweeps = made[len(made) - len(letters):]
        named = dict(zip(letters, sweeps, strict=True))
        tokens = [LETTERED_SWEEP.sub(lambda m: str(named[m.group(1)]), token) if LETTERED_SWEEP.search(token)
                  else self.fill(token) for token in self.words(command) if token != "..."]
        program, args = tokens[0], tokens[1:]
        if program == "train":
            return [str(BIN / "train"), *self.tiny(args)]
        if program == "losslab":
            if args and args[0] == "train":
                return [str(BIN / "losslab"), "train", *self.tiny(args[1:])]
            return [str(BIN / "losslab"), *args]
        if program == "torchrun":
            split = args.index("-m")
            launcher = [arg if not arg.startswith("--nproc_per_node") else "--nproc_per_node=2" for arg in args[:split]]
            return [str(BIN / "torchrun"), "--standalone", *launcher, *args[split:split + 2],
                    *self.tiny(args[split + 2:])]
        if program == "python":
            return [sys.executable, *args]
        raise AssertionError(f"{command.text}: the docs harness does not know how to run {program!r}")

    def tiny(self, args: list[str]) -> list[str]:
        """Overrides of a train command made tiny: tiny settings for what it leaves unset, shorter runs."""
        if "--help" in args or any(arg.startswith("-sc") for arg in args):
            return args
        keys = {arg.split("=", 1)[0].lstrip("+~"): arg for arg in args if "=" in arg}
        if "resume" in keys:  # one epoch more than the run has, whatever the docs extend it to
            epochs = self.epochs(Path(keys["resume"].split("=", 1)[1])) + 1
            extra = {"trainer.max_epochs": str(epochs), "trainer.progress": "false", "trainer.device": "cpu"}
            kept = [arg for arg in args if arg.split("=", 1)[0] not in RESUMABLE]
            return kept + [f"{key}={value}" for key, value in extra.items()]
        shapes = "data" not in keys or keys["data"] == "data=shapes"
        kind = keys.get("data", "=shapes").split("=", 1)[1]
        data = self.tiny_data(kind)  # the elided keys of data=kind (`...`, DIR, FILE.json) and those left unset
        args = [f"{arg.split('=', 1)[0]}={data[arg.split('=', 1)[0]]}"
                if arg.split("=", 1)[0] in data and arg.split("=", 1)[1] in ELIDED else arg for arg in args]
        args += [f"{key}={value}" for key, value in data.items() if key not in keys]
        self.make_coco_weights(args)
        made = [f"{arg.split('=', 1)[0]}={SHORTER[arg.split('=', 1)[0]]}" if arg.split("=", 1)[0] in SHORTER else arg
                for arg in args]
        made = [",".join(arg.split(",")[:2]) if arg.startswith("trainer.seed=") else arg for arg in made]
        segmentation = keys.get("task") == "task=segmentation"
        made += [f"{key}={value}" for key, value in TINY.items()
                 if key not in keys and (shapes or key not in SHAPES_ONLY)
                 and not (segmentation and key in DETECTION_ONLY)]
        if "hparams_search" in keys and "hydra.sweeper.n_trials" not in keys:
            made.append(f"hydra.sweeper.n_trials={SHORTER['hydra.sweeper.n_trials']}")
        return made

    def make_coco_weights(self, args: list[str]) -> None:
        """The COCO weights file a train command starts from (model.weights=coco, task=segmentation's coco_voc), made
        in this world's TORCH_HOME."""
        if not any(arg.startswith(("model.weights=coco", "experiment=")) for arg in args):
            return
        from losslab import compose_config

        model = compose_config([arg for arg in args if not arg.startswith(("hydra", "-"))]).model
        if model.weights == "coco_voc":
            self.coco_voc_file(model.arch, model.backbone)
            return
        from losslab.modeling.torchvision_weights import coco_weights

        if model.weights == "coco":
            self.coco_file(coco_weights(model.arch, model.backbone, model.variant).url.rsplit("/", 1)[-1])

    def coco_voc_file(self, arch: str, backbone: str) -> Path:
        """torchvision's COCO-with-VOC-labels segmentation weights of `arch` on `backbone` in this world's TORCH_HOME:
        random weights of that network under the file's name."""
        import torch
        from torchvision.models import segmentation

        from losslab.modeling.segmentation_weights import coco_voc_weights

        weights = coco_voc_weights(arch, backbone)
        path = self.torch_home / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.manual_seed(0)
            network = getattr(segmentation, f"{arch}_{backbone}")(weights=None, weights_backbone=None, num_classes=21,
                                                                  **({} if arch == "lraspp" else {"aux_loss": True}))
            torch.save(network.state_dict(), path)
        return path

    @staticmethod
    def epochs(run_dir: Path) -> int:
        return int(json.loads((run_dir / "summary.json").read_text())["epochs_run"])

    def python_source(self, text: str) -> str:
        """A Python snippet with the tiny settings added to its composed configs."""
        tiny = [f"{key}={value}" for key, value in TINY.items()]
        return text.replace("compose_config([", f"compose_config({tiny!r} + [")

    def link_export(self) -> None:
        """Link the newest export/ folder of a run (written by `losslab export`) into the working folder."""
        export = self.newest("outputs/*/*/export")
        if export is not None and not (self.folder / "export").exists():
            (self.folder / "export").symlink_to(export)


def environment(world: World) -> dict[str, str]:
    return {**os.environ, "COMP_LINE": "train model=", "COMP_POINT": "12", "TORCH_HOME": str(world.torch_home)}


# ---------------------------------------------------------------------------------------------- the data


def shape_images(count: int, size: int, seed: int):
    from losslab.data.shapes import ShapesDataset

    dataset = ShapesDataset(num_images=count, image_size=size, min_objects=1, max_objects=2, seed=seed)
    for index in range(count):
        image, target = dataset[index]
        yield (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8), target


def make_assets(assets: Path) -> None:
    """Tiny COCO (with polygons) and VOC data under assets/data, as the docs' /data paths name them."""
    pets = assets / "data" / "pets"
    (pets / "images").mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    for index, (pixels, target) in enumerate(shape_images(8, 64, seed=1)):
        Image.fromarray(pixels).save(pets / "images" / f"{index}.jpg")
        coco["images"].append({"id": index + 1, "file_name": f"{index}.jpg", "width": 64, "height": 64})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            x0, y0, x1, y1 = box
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": index + 1, "category_id": 1 + label % 2,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    (pets / "instances.json").write_text(json.dumps(coco))
    write_yolo(pets, coco)
    write_voc(assets / "data" / "VOCdevkit" / "VOC2012", ("dog", "cat"), image_sets=True)
    write_voc(assets / "data" / "parts", ("bolt", "nut"), image_sets=False)
    write_segmentation(assets / "data")


def write_yolo(pets: Path, coco: dict) -> None:
    """The same pets in Ultralytics' layout beside the COCO file: labels/<stem>.txt polygons (class indices from 0),
    train.txt and val.txt lists of ./images/..., and data.yaml."""
    (pets / "labels").mkdir()
    for image in coco["images"]:
        lines = [f"{a['category_id'] - 1} " + " ".join(f"{v / 64:.6f}" for v in a["segmentation"][0])
                 for a in coco["annotations"] if a["image_id"] == image["id"]]
        (pets / "labels" / f"{Path(image['file_name']).stem}.txt").write_text("".join(f"{line}\n" for line in lines))
    names = [f"./images/{image['file_name']}" for image in coco["images"]]
    (pets / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (pets / "val.txt").write_text("\n".join(names[6:]) + "\n")
    (pets / "data.yaml").write_text("path: .\ntrain: train.txt\nval: val.txt\nnames:\n  0: cat\n  1: dog\n")


def write_segmentation(data: Path) -> None:
    """Semantic masks of the shapes: a folder of images with index PNGs (0 background, 1 car) under data/roads, and
    VOC's SegmentationClass palette PNGs (classes as in VOC, the 255 border) beside the tiny VOC's images."""
    from losslab.data.segmentation import ShapesSegmentation

    (data / "roads" / "images").mkdir(parents=True)
    (data / "roads" / "masks").mkdir()
    voc = data / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    shapes = ShapesSegmentation(num_images=8, image_size=64, min_objects=1, max_objects=2, seed=2)
    palette = [value for index in range(256) for value in (index, 255 - index, (7 * index) % 256)]
    for index in range(len(shapes)):
        image, target = shapes[index]
        pixels = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        classes = target["mask"].numpy().astype(np.uint8)
        Image.fromarray(pixels).save(data / "roads" / "images" / f"road{index}.jpg")
        Image.fromarray(np.minimum(classes, 1)).save(data / "roads" / "masks" / f"road{index}.png")
        indexed = Image.fromarray(np.where(classes > 0, classes + 6, 0).astype(np.uint8), mode="P")
        indexed.putpalette(palette)
        indexed.save(voc / "SegmentationClass" / f"img{index}.png")
    (voc / "ImageSets" / "Segmentation" / "trainval.txt").write_text("\n".join(f"img{i}" for i in range(8)) + "\n")


def write_voc(root: Path, names: tuple[str, str], image_sets: bool) -> None:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    stems = []
    for index, (pixels, target) in enumerate(shape_images(8, 64, seed=2)):
        stem = f"img{index}"
        stems.append(stem)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{stem}.jpg")
        objects = "".join(
            f"<object><name>{names[label % 2]}</name><difficult>0</difficult><bndbox><xmin>{int(x0) + 1}</xmin>"
            f"<ymin>{int(y0) + 1}</ymin><xmax>{int(x1)}</xmax><ymax>{int(y1)}</ymax></bndbox></object>"
            for (x0, y0, x1, y1), label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True))
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><size><width>64</width><height>64</height></size>{objects}</annotation>")
    if image_sets:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(stems) + "\n")


MYLOSS = '''"""The user loss the docs' commands name (docs/losses.md, "Your own loss")."""
import torch.nn.functional as F


def poly1_ce(logits, labels, epsilon=1.0):
    """Poly-1 cross-entropy (Leng et al. 2022): cross-entropy + epsilon * (1 - p_t), the mean over the RoIs."""
    p_t = F.softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
    return (F.cross_entropy(logits, labels, reduction="none") + epsilon * (1 - p_t)).mean()


def other_ce(logits, labels):
    return F.cross_entropy(logits, labels, label_smoothing=0.1)
'''


def seed_folder(folder: Path, run_dir: Path, sweep_dir: Path, document: Path) -> None:
    """The working folder of a document: a finished run and sweep (placeholders' fallback; the sweep's jobs also as
    runs of the same day), images to predict, and the files the docs show."""
    jobs = sorted(p for p in sweep_dir.iterdir() if p.name.isdigit())
    for source, target in ((sweep_dir, folder / "multirun" / "2026-11-23" / "10-00-00"),
                           *((job, folder / "outputs" / "2026-11-23" / f"09-00-0{job.name}") for job in jobs),
                           (run_dir, folder / DEFAULT_RUN)):
        # Checkpoints are hard links: runs replace them atomically, never in place.
        shutil.copytree(source, target, copy_function=lambda s, d: os.link(s, d) if s.endswith(".pt")
                        else shutil.copy2(s, d))
        os.utime(target)  # in this order, newest last: the placeholders' fallback is the newest
    (folder / "myloss.py").write_text(MYLOSS)
    for block in code_blocks(document, languages=("yaml",)):
        named = re.fullmatch(r"# ([\w./-]+\.yaml)\b.*", block.first_line)
        if named and not (folder / named.group(1)).exists():
            (folder / named.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (folder / named.group(1)).write_text(block.text)
    (folder / "photos").mkdir()
    (folder / "more" / "day").mkdir(parents=True)
    for index, (pixels, _) in enumerate(shape_images(3, 96, seed=3)):
        Image.fromarray(pixels).save([folder / "photos" / "a.jpg", folder / "more" / "day" / "b.jpg",
                                      folder / "street.png"][index])
