"""One epoch of a run: the loss phase in force, the training pass, the validation loss (and the reference loss),
the task's metrics when due (detection: mAP; segmentation: mIoU), and the metrics.csv row with its console line."""

from __future__ import annotations

import time

from losslab.modeling.heads import get_losses, set_losses
from losslab.reporting.comparison import loss_title
from losslab.training.grad_shares import share_columns
from losslab.training.loop import train_one_epoch, validation_loss
from losslab.training.session import Session

SHORT_NAMES = {"classification": "cls", "box_regression": "box", "objectness": "obj",
               "rpn_box_regression": "rpn_box", "mask": "mask", "centerness": "ctr", "pixel": "pixel", "aux": "aux"}


def enter_phase(session: Session, epoch: int) -> str | None:
    """At the start of `epoch`, switch losses and lr factor if a new loss phase begins; the line that says so."""
    phase = session.schedule.phase_at(epoch)
    if phase is None or phase == session.phase:
        return None
    set_losses(session.model, session.phase_losses[phase.number])
    session.schedulers.set_phase_factor(phase.lr_factor)
    session.phase = phase
    return (f"epoch {epoch}: loss phase {phase.number} ("
            + loss_title(phase.choices) + f"), lr factor {phase.lr_factor:g}")


def run_epoch(session: Session, epoch: int, seed: int, progress: bool) -> dict:
    """Train one epoch, measure the validation loss, step the epoch scheduler; the metrics.csv row."""
    start = time.monotonic()
    train_loader = session.loaders["train"]
    if hasattr(train_loader.sampler, "set_epoch"):  # DistributedSampler: a new shuffle every epoch
        train_loader.sampler.set_epoch(epoch)
    train_losses = train_one_epoch(session.trained, session.optimizer, train_loader, session.device,
                                   epoch, progress=progress, step_schedulers=[session.schedulers],
                                   grad_clip_norm=session.grad_clip_norm, skip_budget=session.skip_budget,
                                   precision=session.precision, scaler=session.scaler)
    lr = session.optimizer.param_groups[0]["lr"]  # the rate of the epoch's last step
    val_losses = validation_loss(session.model, session.loaders["val"], session.device, seed=seed,
                                 progress=progress, precision=session.precision)
    reference = val_losses
    if session.reference_losses is not None:  # the same weights scored by loss=default, for fair comparison
        trained_with = get_losses(session.model)
        set_losses(session.model, session.reference_losses)
        try:
            reference = validation_loss(session.model, session.loaders["val"], session.device, seed=seed,
                                        precision=session.precision)
        finally:
            set_losses(session.model, trained_with)
    phase = {"phase": session.phase.number} if session.phase else {}
    skipped = {"skipped_batches": session.skip_budget.skipped} if session.skip_budget else {}
    row = {"epoch": epoch, **phase, "lr": lr, **_prefixed("train", train_losses), **_prefixed("val", val_losses),
           **{f"val/ref_{name}": value for name, value in reference.items()}, **skipped,
           "time_s": round(time.monotonic() - start, 3)}
    if session.eval_every and epoch % session.eval_every == 0:
        metrics = session.task.metrics(session.model, session.loaders["val"], session.data.classes,
                                       session.eval_options, session.device, progress, session.precision)
        row |= {f"val/{name}": value for name, value in metrics.items()}
        row["time_s"] = round(time.monotonic() - start, 3)
    row |= share_columns(session.model, session.grad_probe)  # after time_s: the probe's cost is measured apart
    session.schedulers.end_epoch(row[session.monitor])
    return row


def _prefixed(split: str, losses: dict[str, float]) -> dict[str, float]:
    return {f"{split}/{name}": value for name, value in losses.items()}


def epoch_line(row: dict, max_epochs: int, improved: bool) -> str:
    """The console line of a finished epoch."""
    parts = [f"epoch {row['epoch']}/{max_epochs}" + (f" (phase {row['phase']})" if "phase" in row else ""),
             f"train {row['train/loss']:.4f}", f"val {row['val/loss']:.4f}{' *' if improved else ''}"]
    if row["val/ref_loss"] != row["val/loss"]:
        parts.append(f"ref {row['val/ref_loss']:.4f}")
    components = [name for key in row if key.startswith("val/") and (name := key[4:]) in SHORT_NAMES]
    parts.append(" ".join(f"{SHORT_NAMES[c]} {row[f'train/{c}']:.3f}/{row[f'val/{c}']:.3f}" for c in components))
    if "val/mAP" in row:
        parts.append(f"mAP {row['val/mAP']:.3f} (50: {row['val/mAP50']:.3f})"
                     + (f" mask {row['val/mask_mAP']:.3f}" if "val/mask_mAP" in row else ""))
    if "val/mIoU" in row:
        parts.append(f"mIoU {row['val/mIoU']:.3f} (pixel accuracy {row['val/pixel_accuracy']:.3f})")
    parts += [f"lr {row['lr']:.3g}", f"{row['time_s']:.1f}s"]
    return " | ".join(parts)
