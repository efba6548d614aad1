"""segmentation_models_pytorch's architectures under task=segmentation: each default config is smp's own model, trains
a step with each per-pixel loss swapped in, and is refused clearly when its keys are wrong; ImageNet encoder weights
come from the local Hugging Face cache only."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from huggingface_hub import constants
from omegaconf import OmegaConf
from safetensors.torch import save_file
from segmentation_models_pytorch.encoders import encoders

from losslab import compose_config
from losslab.config.compose import config_dir
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.losses.components import component_loss
from losslab.losses.segmentation_build import build_segmentation_losses
from losslab.modeling.heads import set_losses
from losslab.modeling.segmenters import batch_targets, build_segmenter
from losslab.modeling.smp_networks import ARCHS
from losslab.modeling.smp_weights import load_start_weights, weights_file

CLASSES = 3


def model_section(arch: str, *overrides: str, size: int = 64) -> dict:
    """The composed, resolved `model` section of model=`arch` at `size` px."""
    cfg = compose_config(["task=segmentation", f"model={arch}", f"model.min_size={size}", f"model.max_size={size}",
                          *overrides])
    return OmegaConf.to_container(cfg.model, resolve=True)


def segmenter(model: dict, loss: str = "default"):
    torch.manual_seed(0)
    return build_segmenter(model, build_segmentation_losses({"pixel": {"name": loss}}, {"pixel": 1.0}, False),
                           CLASSES)


def test_every_smp_architecture_has_a_config_and_each_default_is_resnet18_at_128_px():
    assert {path.stem for path in (config_dir() / "model").glob("*.yaml")} >= set(ARCHS)
    for arch in ARCHS:
        model = OmegaConf.to_container(compose_config(["task=segmentation", f"model={arch}"]).model, resolve=True)
        assert model == {"arch": arch, "encoder": "resnet18", "backbone": "resnet18", "encoder_depth": None,
                         "options": {}, "weights": None, "min_size": 128, "max_size": 128}


@pytest.mark.parametrize("arch", ARCHS)
def test_the_default_build_is_smps_own_model(arch):
    built = segmenter(model_section(arch)).eval()
    torch.manual_seed(0)
    own = getattr(smp, ARCHS[arch])(encoder_name="resnet18", encoder_weights=None, classes=CLASSES).eval()
    ours = built.network.model.state_dict()
    assert list(ours) == list(own.state_dict())
    assert all(torch.equal(value, own.state_dict()[key]) for key, value in ours.items())
    batch = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(built.network(batch)["out"], own(batch))


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_trains_a_step_with_each_per_pixel_loss_swapped_in(arch):
    """Tiny images of two sizes, batch 2: the loss the model returns is the chosen loss of its own logits, and one
    SGD step moves the encoder and the segmentation head."""
    built = segmenter(model_section(arch, size=32)).train()
    images = [torch.rand(3, 32, 32), torch.rand(3, 24, 32)]
    masks = [torch.randint(0, CLASSES, image.shape[-2:]) for image in images]
    optimizer = torch.optim.SGD(built.parameters(), lr=0.1)
    for name in ("ce", "dice", "lovasz"):
        set_losses(built, build_segmentation_losses({"pixel": {"name": name}}, {"pixel": 1.0}, False))
        before = {key: value.detach().clone() for key, value in built.named_parameters()}
        torch.manual_seed(2)  # the same draws in both calls: the transform's size choice, then dropout's masks
        with torch.no_grad():
            batch, _ = built.transform(images)
            target = batch_targets(masks, batch.image_sizes, batch.tensors.shape[-2:])
            expected = component_loss("pixel", {"name": name}, "segmenter")(built.network(batch.tensors)["out"],
                                                                             target)
        torch.manual_seed(2)
        losses = built(images, [{"mask": mask} for mask in masks])
        assert set(losses) == {"pixel"}
        assert losses["pixel"].item() == pytest.approx(expected.item(), rel=1e-4) and expected > 0
        optimizer.zero_grad()
        losses["pixel"].backward()
        optimizer.step()
        moved = {key for key, value in built.named_parameters() if not torch.equal(value, before[key])}
        assert any(key.startswith("network.model.encoder.") for key in moved), name
        assert any(key.startswith("network.model.segmentation_head.") for key in moved), name


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.encoder=resnet19"], r"model.encoder=resnet19: expected one of segmentation_models_pytorch's encoders"
                                 r".*did you mean resnet18"),
    (["model.encoder=tu-fbnetv3_x"], r"model.encoder=tu-fbnetv3_x: timm has no model fbnetv3_x.*tu-fbnetv3_b"),
    (["+model.options.decoder_chanels=[8]"], r"model.options.decoder_chanels: segmentation_models_pytorch's Unet "
                                             r"\(model=unet\) takes .*decoder_channels"),
    (["+model.options.classes=5"], r"model.options.classes: losslab sets it"),
    (["model.encoder_depth=3"], r"model=unet \(model.encoder=resnet18, model.encoder_depth=3, model.options=\{\}\): "
                                r"segmentation_models_pytorch's Unet refuses them: Model depth is 3, but you provide "
                                r"`decoder_channels` for 5 blocks"),
    (["model.encoder_depth=7"], r"model.encoder_depth=7: expected 1 to 5"),
    (["model.backbone=resnet50"], r"model.backbone=resnet50: smp's models take their encoder as model.encoder "
                                  r"\(now resnet18\)"),
    (["model.weights=coco"], r"model.weights=coco: model.encoder=resnet18 has the weights null \(random\) \| "
                             r"imagenet \| ssl \| swsl"),
])
def test_bad_smp_keys_are_refused_naming_the_key_and_what_was_expected(overrides, message):
    with pytest.raises(LosslabError, match=message):
        validate(compose_config(["task=segmentation", "model=unet", *overrides]))


def test_decoder_options_timm_encoders_and_depths_that_fit_build_and_predict_at_each_images_size():
    for arch, overrides in (("unet", ["model.encoder_depth=3", "+model.options.decoder_channels=[32,16,8]"]),
                            ("fpn", ["model.encoder=tu-resnet10t", "+model.options.decoder_pyramid_channels=32"]),
                            ("pan", ["model.encoder=mobilenet_v2"])):
        model = model_section(arch, *overrides)
        validate(compose_config(["task=segmentation", f"model={arch}", *overrides]))
        outputs = segmenter(model).eval()([torch.rand(3, 40, 60), torch.rand(3, 64, 50)])
        assert [output["mask"].shape for output in outputs] == [(40, 60), (64, 50)], arch


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (what $HF_HUB_CACHE names) in a temporary folder."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_imagenet_encoder_weights_load_from_the_hugging_face_cache_only(hub_cache):
    model = {**model_section("unet"), "weights": "imagenet"}
    settings = encoders["resnet18"]["pretrained_settings"]["imagenet"]
    place = hub_cache / "models--smp-hub--resnet18.imagenet" / "snapshots" / settings["revision"]
    with pytest.raises(LosslabError, match=rf"needs model.safetensors of the Hugging Face repository "
                                           rf"smp-hub/resnet18.imagenet at revision {settings['revision']}.*never "
                                           rf"downloads.*file is then {place}/model.safetensors"):
        weights_file(model)
    torch.manual_seed(5)
    state = {key: torch.randn_like(value) if value.is_floating_point() else value
             for key, value in segmenter(model).network.model.encoder.state_dict().items()}
    place.mkdir(parents=True)
    save_file(state, str(place / "model.safetensors"))
    built = segmenter(model)
    decoder = {key: value.clone() for key, value in built.network.model.decoder.state_dict().items()}
    loaded = load_start_weights(built.network, weights_file(model), model)
    assert loaded["file"] == str(place / "model.safetensors") and loaded["tensors"]["loaded"] == len(state)
    assert all(torch.equal(value, state[key]) for key, value in built.network.model.encoder.state_dict().items())
    assert all(torch.equal(value, decoder[key]) for key, value in built.network.model.decoder.state_dict().items())


def test_a_timm_encoders_weights_load_from_timms_repository_in_the_cache(hub_cache):
    model = {**model_section("fpn", "model.encoder=tu-resnet10t"), "weights": "imagenet"}
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    with pytest.raises(LosslabError, match=rf"model.safetensors or pytorch_model.bin of the Hugging Face "
                                           rf"repository {repo}, which is not in the local Hugging Face cache"):
        weights_file(model)
    folder = hub_cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("a" * 40)
    (folder / "snapshots" / ("a" * 40)).mkdir(parents=True)
    torch.manual_seed(6)
    classifier = timm.create_model("resnet10t")  # timm's file is the whole classifier; timm keeps its features
    save_file(classifier.state_dict(), str(folder / "snapshots" / ("a" * 40) / "model.safetensors"))
    built = segmenter(model)
    load_start_weights(built.network, weights_file(model), model)
    assert torch.equal(built.network.model.encoder.model.conv1[0].weight, classifier.conv1[0].weight)
    assert torch.equal(built.network.model.encoder.model.layer4[0].conv2.weight, classifier.layer4[0].conv2.weight)
