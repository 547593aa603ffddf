"""Fast training from a whole split held on the device as uint8 images.

``fit_tensors(model, (x, y), (x_val, y_val))`` takes what ``cnncourse.data.malaria.load_tensors``
returns: images ``(N, C, S, S)`` uint8 and labels ``(N,)``. Each batch is gathered by index, converted,
augmented (:class:`Augment`: flips, 90 degree rotations, mild colour jitter, drawn per image but applied
to the whole batch at once) and converted to float in [0, 1] on the device, so no Python runs per image.

Normalisation is never implicit: the model gets images in [0, 1] unless ``mean`` and ``std`` are passed, and
``fit_tensors`` and ``predict_tensors`` refuse ``mean``/``std`` for a model that already normalises with
them (a buffer equal to ``mean``), since that would normalise twice. A model trained one way must be
predicted the same way: ``predict_tensors`` takes the same ``mean``/``std`` (or none). On CUDA it trains
in bf16 autocast with ``channels_last`` (optionally ``torch.compile``); the same code runs on CPU, where
bf16 is used too when the processor computes it natively (AMX). The learning rate follows one cycle
(or warm-up + cosine). It returns the same :class:`~cnncourse.train.History` as ``fit``.

Helpers with public names: ``channel_stats`` (mean/std per channel), ``normalize``, ``predict_tensors``
(logits of a whole split, batch by batch, in eval mode), ``normalizes_inside`` (the double-normalisation check).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from cnncourse.train.history import History

__all__ = [
    "Augment",
    "symmetry",
    "dihedral",
    "channel_stats",
    "normalize",
    "default_amp",
    "autocast",
    "normalizes_inside",
    "predict_tensors",
    "fit_tensors",
]

SCHEDULES = ("onecycle", "cosine")


@dataclass(frozen=True)
class Augment:
    """Label-preserving augmentation of a batch ``x: (N, C, H, W)`` (uint8, or float in [0, 1]), drawn per image.

    Cells have no orientation, so every element of the square's symmetry group is allowed
    (``dihedral``; needs square images): the batch is put in a random order, cut into 8 equal slices,
    and slice ``k`` gets the ``k``-th of the 8 flips/90 degree rotations; each image thus gets a uniformly
    random one, with 8 strided copies instead of per-image work or masked selects (which are slow on CPUs).
    The colour jitter multiplies, so a black background stays black: saturation ``1 +- saturation``
    (blend with the grey image), brightness ``1 +- brightness`` and a per-channel gain ``1 +- tint`` (a
    slight stain shift), each drawn per image. Images stay at their index: labels need no change.
    """

    dihedral: bool = True
    brightness: float = 0.1
    saturation: float = 0.1
    tint: float = 0.03

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (N, C, H, W) uint8 or float in [0, 1] -> float32 (N, C, H, W) in [0, 1] on the same device."""
        n, c = x.shape[:2]
        if self.dihedral:
            x = dihedral(x, generator)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float().clone()

        def uniform(*shape: int) -> torch.Tensor:  # U(-1, 1) per image
            return torch.rand(n, *shape, generator=generator, device=x.device).mul_(2).sub_(1)

        if self.saturation and c == 3:
            s = uniform(1, 1, 1).mul_(self.saturation).add_(1)
            x.mul_(s).addcmul_(x.mean(1, keepdim=True), 1 - s)
        if self.brightness or self.tint:
            x.mul_(uniform(1, 1, 1).mul_(self.brightness).add_(1) * uniform(c, 1, 1).mul_(self.tint).add_(1))
        return x.clamp_(0, 1)


def symmetry(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th (0 to 7) of the 8 flips/90 degree rotations of the square, on the last two dims (a view).

    ``k`` bit 4: transpose, bit 1: flip left-right, bit 2: flip up-down; 0 is the identity.
    """
    if k & 4:
        x = x.transpose(-1, -2)
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    return x


def dihedral(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x: (N, C, S, S)`` flipped/rotated by one of the 8 symmetries of the square, at random.

    Returns a new tensor of the same shape, dtype and device; image ``i`` of the output is a symmetry of
    image ``i`` of the input.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"90 degree rotations need square images, got {tuple(x.shape[-2:])}; resize to a square or use "
            "Augment(dihedral=False)."
        )
    order = torch.randperm(len(x), generator=generator, device=x.device)
    shuffled = x[order]
    out = torch.empty_like(shuffled)
    for k, (src, dst) in enumerate(zip(shuffled.tensor_split(8), out.tensor_split(8), strict=True)):
        dst.copy_(symmetry(src, k))
    result = torch.empty_like(x)
    result[order] = out
    return result


def channel_stats(images: torch.Tensor, batch_size: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``images: (N, C, H, W)``, in [0, 1] units.

    Computed in float64 chunks of ``batch_size`` images, so no float copy of the whole split is made.
    """
    _check_images(images, "images")
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for chunk in images.split(batch_size):
        f = chunk.to(torch.float64).div_(255)
        total += f.sum((0, 2, 3))
        squares += f.square().sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def normalize(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, channels_last: bool = False
) -> torch.Tensor:
    """uint8 (0..255) or float ([0, 1]) ``images: (N, C, H, W)`` -> a new float32 ``(x - mean) / std``.

    mean, std: (C,) in [0, 1] units, on the images' device. ``channels_last`` writes the result in NHWC
    memory order (same shape).
    """
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device, memory_format=fmt).copy_(images)
    return out.sub_(mean.view(1, -1, 1, 1) * scale).div_(std.view(1, -1, 1, 1) * scale)


def default_amp(device: torch.device) -> bool:
    """Whether bf16 autocast pays off: on CUDA when bf16 is supported, on CPU when it has AMX tiles."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch has no public test for it
        return bool(amx and amx())
    return False


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else nothing (also for devices autocast does not know)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


@torch.no_grad()
def predict_tensors(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 512,
    amp: bool | None = None,
    channels_last: bool = True,
    tta: bool = False,
) -> torch.Tensor:
    """Logits ``(N, num_classes)`` float32 of uint8 ``images: (N, C, H, W)``, in eval mode, on the images' device.

    The model gets ``images / 255`` (float in [0, 1]), or ``(images / 255 - mean) / std`` when ``mean`` and
    ``std`` (per channel, [0, 1] units) are given: pass what the model was trained with (``fit_tensors``).
    With ``tta`` (test-time augmentation; square images) the logits are averaged over the 8 flips/90 degree
    rotations of each image, for 8 times the cost: the result no longer depends on the cell's orientation.
    The model's training mode is restored afterwards.
    """
    _check_images(images, "images")
    device = images.device
    amp = default_amp(device) if amp is None else amp
    mean_t, std_t = _stats_tensors(model, mean, std, images.shape[1], device)
    was_training = model.training
    model.eval()
    try:
        out = []
        for chunk in images.split(batch_size):
            views = range(8) if tta else range(1)
            total = None
            for k in views:
                x = normalize(symmetry(chunk, k), mean_t, std_t, channels_last=channels_last)
                with autocast(device, amp):
                    logits = model(x).float()
                total = logits if total is None else total + logits
            out.append(total / len(views))
        return torch.cat(out) if out else torch.empty(0, device=device)
    finally:
        model.train(was_training)


def fit_tensors(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    schedule: str = "onecycle",
    warmup: float = 0.15,
    augment: Augment | None = Augment(),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    amp: bool | None = None,
    channels_last: bool = True,
    compile: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train ``model`` (AdamW) on a whole split held on one device; return the per-epoch :class:`History`.

    Args:
        model: a classifier mapping ``(B, C, S, S)`` float images (in [0, 1], or normalised with ``mean`` and
            ``std``) to ``(B, num_classes)`` logits.
            It is moved to the images' device (and to ``channels_last``) and trained in place.
        train: ``(images, labels)``: uint8 ``(N, C, S, S)`` and integer ``(N,)``, both on the device to
            train on (``load_tensors(split, device="cuda")``).
        val: the same for validation (evaluated after every epoch, no augmentation), or None.
        epochs, batch_size, lr, weight_decay: the usual; ``lr`` is the peak of the schedule. The last
            partial batch of an epoch is dropped (batch norm needs more than one image).
        schedule: ``"onecycle"`` (``torch.optim.lr_scheduler.OneCycleLR``) or ``"cosine"`` (linear
            warm-up, then cosine decay to zero); ``warmup`` is the fraction of steps spent warming up.
        augment: an :class:`Augment` (per-image random flips/rotations/colour jitter), or None.
        mean, std: per-channel normalisation in [0, 1] units (e.g. ``channel_stats`` of the training
            images), both or neither. Default none: the model gets float images in [0, 1] and must normalise
            them itself if it wants to (A4's ``build_model()``). Refused for a model that already normalises
            with ``mean`` (see :func:`normalizes_inside`). Predict with the same: ``predict_tensors(...,
            mean=mean, std=std)``.
        label_smoothing: passed to ``cross_entropy``.
        amp: bf16 autocast; default :func:`default_amp` (CUDA, or a CPU with AMX).
        channels_last: keep images and weights in NHWC (faster convolutions on GPUs and oneDNN).
        compile: wrap the model in ``torch.compile`` for training (first epoch is slower).
        seed: seeds the shuffling, the augmentation and the global RNG (dropout).
        progress: a tqdm bar over all batches, with loss and accuracy per epoch.

    Returns:
        ``History`` with ``train_loss``, ``train_acc`` (on the augmented batches), ``val_loss``,
        ``val_acc`` (empty without ``val``), ``lr``, ``wall_time``, and ``best_epoch`` (highest val accuracy).
    """
    x, y = train
    _check_images(x, "train images")
    _check_labels(y, x, "train")
    if val is not None:
        _check_images(val[0], "val images")
        _check_labels(val[1], val[0], "val")
        if val[0].device != x.device or val[0].shape[1:] != x.shape[1:]:
            raise ValueError(
                f"val images must match the train images' device and shape: {val[0].device}, "
                f"{tuple(val[0].shape[1:])} vs {x.device}, {tuple(x.shape[1:])}."
            )
    for name, value, low in [("epochs", epochs, 1), ("batch_size", batch_size, 2)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {warmup!r}.")

    device = x.device
    amp = default_amp(device) if amp is None else amp
    y = y.to(device=device, dtype=torch.int64)
    mean_t, std_t = _stats_tensors(model, mean, std, x.shape[1], device)

    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed) if device.type != "meta" else None
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile else model
    n = len(x)
    steps_per_epoch = n // batch_size if n > batch_size else 1
    total_steps = epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = _scheduler(optimizer, schedule, lr, total_steps, warmup)

    history = History()
    start = time.perf_counter()
    bar = tqdm(total=total_steps, unit="batch", desc="fit_tensors", disable=not progress)
    with bar:
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=generator, device=device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            for idx in order.split(batch_size)[:steps_per_epoch]:
                xb = augment(x[idx], generator) if augment is not None else x[idx]
                xb = normalize(xb, mean_t, std_t, channels_last=channels_last)
                yb = y[idx]
                with autocast(device, amp):
                    logits = step_model(xb)
                    loss = nn.functional.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * len(idx)  # summed on the device: no sync per batch
                correct += (logits.argmax(1) == yb).sum()
                seen += len(idx)
                bar.update()
            history.train_loss.append(float(loss_sum) / seen)
            history.train_acc.append(float(correct) / seen)
            history.lr.append(optimizer.param_groups[0]["lr"])
            if val is not None:
                logits = predict_tensors(model, val[0], mean=mean, std=std, amp=amp, channels_last=channels_last)
                labels = val[1].to(device=device, dtype=torch.int64)
                history.val_loss.append(float(nn.functional.cross_entropy(logits, labels)))
                history.val_acc.append(float((logits.argmax(1) == labels).float().mean()))
            history.wall_time.append(time.perf_counter() - start)
            postfix = {"loss": f"{history.train_loss[-1]:.3f}", "acc": f"{history.train_acc[-1]:.3f}"}
            if val is not None:
                postfix["val_acc"] = f"{history.val_acc[-1]:.3f}"
            bar.set_postfix(postfix)
    if history.val_acc:
        history.best_epoch = max(range(len(history.val_acc)), key=history.val_acc.__getitem__)
    return history


def _scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, lr: float, total_steps: int, warmup: float
) -> torch.optim.lr_scheduler.LRScheduler:
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=max(warmup, 1e-3)
        )
    warm = round(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def normalizes_inside(model: nn.Module, mean: Sequence[float], atol: float = 1e-4) -> str | None:
    """The name of a buffer of ``model`` holding ``mean`` (``(C,)`` in [0, 1] units), or None.

    A model with such a buffer (A4's ``Normalize(MEAN, STD)``) normalises its own input; normalising the
    images before it too would do it twice.
    """
    target = torch.as_tensor(mean, dtype=torch.float64).flatten()
    for name, buffer in model.named_buffers():
        if buffer.numel() == target.numel() and buffer.is_floating_point() and buffer.device.type != "meta":
            if torch.allclose(buffer.detach().double().flatten().cpu(), target, atol=atol):
                return name
    return None


def _stats_tensors(
    model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` as ``(C,)`` tensors on ``device``; ``(0, 1)`` (images stay in [0, 1]) when both are None."""
    if (mean is None) != (std is None):
        raise ValueError(f"give both mean and std, or neither (the model then gets images in [0, 1]); got "
                         f"mean={mean!r}, std={std!r}.")  # fmt: skip
    if mean is None:
        return torch.zeros(channels, device=device), torch.ones(channels, device=device)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).flatten()
    if mean_t.numel() != channels or std_t.numel() != channels:
        raise ValueError(f"mean and std need one value per channel ({channels}), got {list(mean)} and {list(std)}.")
    if device.type != "meta" and not bool((std_t > 0).all()):
        raise ValueError(f"std must be positive, got {list(std)}.")
    inside = normalizes_inside(model, mean) if device.type != "meta" else None
    if inside is not None and not bool((mean_t == 0).all()):
        raise ValueError(
            f"the model already normalises its input (its buffer {inside!r} equals mean={list(mean)}): passing "
            "mean and std too would normalise the images twice. Leave mean and std out: the model then gets "
            "images in [0, 1], as at grading."
        )
    return mean_t, std_t


def _check_images(images: object, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.dtype != torch.uint8:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"{name} must be a uint8 tensor (N, C, H, W) as load_tensors returns, got {got}; "
            "the conversion to [0, 1] happens inside, so do not convert to float first."
        )
    if len(images) == 0:
        raise ValueError(f"{name} is empty.")


def _check_labels(labels: object, images: torch.Tensor, name: str) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"{name} labels must be an integer tensor (N,), got {labels!r:.60}.")
    if len(labels) != len(images):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels.")
