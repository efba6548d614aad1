"""Where an smp segmenter's weights start (`model.weights`): null (random) or the encoder's pretrained weights
(`imagenet`; smp's encoders also name others, e.g. resnet18's `ssl` and `swsl`), from the local Hugging Face cache
only.

Both libraries keep these files on the Hugging Face hub, and read them through its cache ($HF_HUB_CACHE, by default
~/.cache/huggingface/hub): smp's encoders from smp-hub/<encoder>.<weights> (model.safetensors, at the revision smp
pins), timm's models (`tu-NAME`) from the repository timm's pretrained config names (timm/<name>.<tag>). losslab
looks the file up in that cache under the library's own repository and file name and never downloads it: when it is
not there, the error names the file, the cache and the command that fetches it. The encoder's weights are loaded as
the library loads them (smp: the file is the encoder's state dict; timm: timm's own loading, which drops the
classifier), the decoder and the segmentation head stay random.
"""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from huggingface_hub import constants, try_to_load_from_cache
from safetensors.torch import load_file
from segmentation_models_pytorch.encoders import encoders
from torch import nn

from losslab.errors import LosslabError
from losslab.modeling.smp_networks import create_smp_network

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a hub repository, in its order


def weights_choices(encoder: str) -> list[str]:
    """The model.weights names the encoder has files for (besides null)."""
    if encoder.startswith("tu-"):
        return [IMAGENET]
    return list(encoders[encoder]["pretrained_settings"]) if encoder in encoders else []


def weights_problems(model: dict) -> list[str]:
    """model.weights that the encoder has no weights for, as messages naming the key; files are looked for when
    the run starts."""
    weights, encoder = model["weights"], model["encoder"]
    if weights is None or weights in weights_choices(encoder):
        return []
    choices = " | ".join(["null (random)", *weights_choices(encoder)])
    return [f"model.weights={weights}: model.encoder={encoder} has the weights {choices}"]


def source(encoder: str, weights: str) -> tuple[str, tuple[str, ...], str | None]:
    """(Hugging Face repository, file names in the order the library tries them, revision or None for main) of the
    encoder's `weights`."""
    if not encoder.startswith("tu-"):
        settings = encoders[encoder]["pretrained_settings"][weights]
        return settings["repo_id"], ("model.safetensors",), settings["revision"]
    config = timm.models.get_pretrained_cfg(encoder[3:])
    if config is None or not config.hf_hub_id:
        raise LosslabError(f"model.weights={weights}: timm keeps no pretrained weights of {encoder[3:]} on the "
                           f"Hugging Face hub; pick a model.encoder that has some (timm.list_pretrained()) or "
                           "model.weights=null.")
    return config.hf_hub_id, TIMM_FILES, None


def weights_file(model: dict) -> Path:
    """The encoder's weights file in the local Hugging Face cache; a LosslabError saying which file is needed, where
    to put it and how to get it when it is not there."""
    repo, names, revision = source(model["encoder"], model["weights"])
    for name in names:
        found = try_to_load_from_cache(repo, name, revision=revision)
        if isinstance(found, str):
            return Path(found)
    cache = Path(constants.HF_HUB_CACHE)
    folder = cache / f"models--{repo.replace('/', '--')}"
    at = f" --revision {revision}" if revision else ""
    raise LosslabError(
        f"model.weights={model['weights']} (model.encoder={model['encoder']}) needs {' or '.join(names)} of the "
        f"Hugging Face repository {repo}{f' at revision {revision}' if revision else ''}, which is not in the "
        f"local Hugging Face cache {cache} (losslab never downloads it). On a machine with internet access run "
        f"`hf download {repo} {names[0]}{at}` (or `python -c \"from huggingface_hub import hf_hub_download; "
        f"hf_hub_download('{repo}', '{names[0]}'{f', revision={revision!r}' if revision else ''})\"`) and copy "
        f"its folder {folder.name} into {cache} here (the cache is $HF_HUB_CACHE, by default "
        f"~/.cache/huggingface/hub): the file is then {folder}/snapshots/{revision or '<commit>'}/{names[0]}.")


def load_start_weights(network: nn.Module, file: Path | None, model: dict) -> dict | None:
    """Load the encoder weights in `file` (found by weights_file) into `network` (an SmpNetwork); return what was
    loaded ({"weights", "file", "tensors": {"loaded", "reinitialised"}}) or None when the run starts random."""
    if model["weights"] is None:
        return None
    file = weights_file(model) if file is None else file
    encoder = network.model.encoder
    try:
        encoder.load_state_dict(encoder_state(model, file))
    except Exception as error:  # a corrupt file, or one of another encoder: torch and timm raise many types
        raise LosslabError(f"{file} could not be loaded as the {model['weights']} weights of model.encoder="
                           f"{model['encoder']} ({error}); delete it and fetch it again as the error without it "
                           "says.") from error
    loaded = len(encoder.state_dict())
    random = len(network.state_dict()) - loaded
    log.info("start: the encoder's %s weights from %s: %d tensors loaded, %d (the decoder and head) left random",
             model["weights"], file, loaded, random)
    return {"weights": model["weights"], "file": str(file), "tensors": {"loaded": loaded, "reinitialised": random}}


def encoder_state(model: dict, file: Path) -> dict[str, torch.Tensor]:
    """The encoder's state dict from `file`, as its library reads it: smp's files hold the encoder's own state
    dict; timm's hold the whole classifier, which timm itself fits to the encoder (features only, no head)."""
    if not model["encoder"].startswith("tu-"):
        return load_file(file, device="cpu")
    pretrained = create_smp_network(model, num_classes=1, timm_file=str(file))
    return pretrained.model.encoder.state_dict()
