"""The trainer: a ``ModelSpec`` in, a checkpoint out (GM appendix B.3 defaults).

``train(spec, out_dir)`` builds the architecture and dataset plugins named by the spec,
trains with SGD (momentum, no weight decay by default) and a step learning-rate
schedule ``lr * gamma ** (epoch // lr_step)`` (set at the start of each epoch) or a per-batch
one-cycle schedule (``lr_schedule: onecycle``, :func:`onecycle_lr`), evaluates
test accuracy after every epoch, and writes checkpoints as described in
:mod:`simbench.train.checkpoint` under ``out_dir/<spec.key()>/``. Calling it again on the
same ``out_dir`` returns the finished checkpoint, or resumes after the last completed
epoch and ends with the same weights as an uninterrupted run.

Data path (no DataLoader, no per-image Python):

- the whole dataset is one uint8 tensor resident on the device (``(N, C, H, W)`` with
  channels-last storage, i.e. the ``(N, H, W, C)`` array the dataset plugin returns), or
  with ``train.data_placement="host"`` (``"auto"``: when it takes more than half the
  GPU's free memory) in pinned host memory, each batch gathered there and copied with
  ``non_blocking=True`` (same batches, same weights);
- each epoch draws a permutation from a ``torch.Generator`` on the device, seeded from
  ``(spec.seed, epoch)``, and each batch is gathered by index, augmented on the device
  (:mod:`simbench.train.augment`: zero-padded random crop with ``crop_padding`` then a
  horizontal flip; or, ``train.crop="random_resized"``, GM's ImageNet protocol:
  torchvision's RandomResizedCrop boxes resampled to ``crop_size`` (224) px, then the
  flip, and evaluation on the centred ``crop_pct`` square at ``crop_size``), then
  normalised to float32 with the
  per-channel mean/std of the (possibly ``max_train_images``-truncated) train split,
  computed exactly in float64 (:func:`simbench.train.augment.channel_stats`);
- the test split is evaluated without augmentation, normalised with the same train
  statistics.

Devices and precision: ``device="auto"`` is CUDA when available, else CPU. The model
and batches are channels-last on both (measured faster on the CPU too). On CUDA cuDNN
autotuning is on, ``precision`` ``auto`` or ``bf16`` runs forward and loss under bf16
autocast (weights and optimizer stay fp32), the dataset is copied to the GPU once, and
there is no per-batch host synchronisation except every ``PROGRESS_EVERY`` batches for
the progress bar; CUDA runs are not bit-reproducible (cuDNN, atomics). On the CPU,
``auto`` means fp32 (``bf16`` autocast is honoured if asked for),
``torch.use_deterministic_algorithms`` is on during training, and a run with the same
seed on the same machine and thread count is bit-reproducible. The global RNGs are
forked (the caller's state is untouched) and seeded from the spec seed; their state is
part of the resume state, so models that draw from them (dropout) resume exactly.

A final batch of a single image is dropped (BatchNorm cannot train on it); all other
images are used every epoch (no ``drop_last``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simbench.data.base import ImageData
from simbench.train.augment import (
    augment,
    center_resize,
    channel_stats,
    normalize,
    random_resized_crop,
)
from simbench.train.checkpoint import (
    MODEL_FILE,
    RESUME_FILE,
    create_plugin,
    epoch_file,
    is_complete,
    load_training_state,
    save_checkpoint,
    save_training_state,
    sidecar_path,
)
from simbench.train.config import ModelSpec, TrainConfig

log = logging.getLogger("simbench.train")

#: batches between host synchronisations for the progress bar's loss/accuracy (CUDA; on
#: the CPU the bar is updated every batch)
PROGRESS_EVERY = 20

__all__ = [
    "DeviceData",
    "EpochCallback",
    "determinism",
    "evaluate",
    "lr_at",
    "make_optimizer",
    "memory_format_for",
    "onecycle_lr",
    "prepare_data",
    "resolve_device",
    "resolve_precision",
    "run_dir",
    "seed_for",
    "train",
    "train_one_epoch",
]

EpochCallback = Callable[[int, dict[str, Any]], None]


# ----------------------------------------------------------------------------- small pieces


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → ``cuda`` if available else ``cpu``; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (``None``: plain fp32). ``auto`` is bf16 on CUDA, fp32 elsewhere."""
    if precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def memory_format_for(device: torch.device) -> torch.memory_format:
    """channels-last everywhere: tensor cores on CUDA; on the CPU oneDNN's convolutions,
    BatchNorm and max-pool are faster in NHWC (width-1/4 factorized VGG-11, batch 128:
    about 1.4x per step; benchmarks/test_training_speed.py)."""
    return torch.channels_last


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate during ``epoch`` (0-based) of the ``step`` schedule:
    ``lr * lr_gamma ** (epoch // lr_step)``; for ``onecycle``, the rate at the epoch's
    first batch (the schedule itself is per batch: :func:`onecycle_lr`)."""
    if cfg.lr_schedule == "onecycle":
        raise ValueError("lr_at needs the batches per epoch for onecycle; use onecycle_lr")
    return cfg.lr * cfg.lr_gamma ** (epoch // cfg.lr_step)


#: one-cycle shape (PyTorch OneCycleLR defaults): warm-up fraction, initial and final divisors
ONECYCLE_PCT, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def onecycle_lr(peak: float, step: int, total: int) -> float:
    """One-cycle learning rate at batch ``step`` (0-based) of ``total`` (Smith & Topor 2019;
    PyTorch ``OneCycleLR(anneal_strategy="cos")``): cosine from ``peak/25`` up to ``peak``
    over the first 30 % of the steps, then cosine down to ``peak/(25·10⁴)`` at the last."""
    if total < 1 or not 0 <= step < total:
        raise ValueError(f"step must lie in [0, {total}); got {step}")
    start, end = peak / ONECYCLE_DIV, peak / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    up = float(ONECYCLE_PCT * total) - 1
    if step <= up:
        lo, hi, t = start, peak, step / up if up > 0 else 1.0
    else:
        down = total - 1 - up
        lo, hi, t = peak, end, (step - up) / down if down > 0 else 1.0
    return hi + (lo - hi) * (1 + math.cos(math.pi * t)) / 2


def seed_for(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)`` (numpy ``SeedSequence`` mixing)."""
    words = [seed % 2**64, epoch, stream]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def run_dir(spec: ModelSpec, out_dir: str | os.PathLike) -> Path:
    """Where ``train(spec, out_dir)`` writes: ``out_dir/<spec.key()>``."""
    return Path(out_dir) / spec.key()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD over the trainable parameters (``requires_grad``; frozen ones are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
    )


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DeviceData:
    """A dataset for one compute device: uint8 ``(N, C, H, W)`` images (channels-last
    storage), int64 labels, and float32 per-channel normalisation statistics.

    The labels and statistics live on the compute device (``mean.device``); the images
    too, or — ``placement="host"`` in :func:`prepare_data` — in (pinned) host memory,
    from which each batch is gathered into one of two pinned buffers and copied with
    ``non_blocking=True`` (the copy overlaps the previous batch's compute)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    mean64: tuple[float, ...]
    std64: tuple[float, ...]
    streamed: bool = False  # images in host memory, batches copied per step


def _images(x: np.ndarray, device: torch.device, host: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)  # NCHW view of NHWC
    if host:
        return t.pin_memory() if device.type == "cuda" else t
    return t.to(device)


#: ``placement="auto"`` keeps the images on a CUDA device when they take at most this
#: fraction of its free memory (the rest is left to the model, activations, cuDNN)
DEVICE_DATA_FRACTION = 0.5


def data_fits(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of images fit on ``device`` (always on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_DATA_FRACTION * free


#: seed of the ``max_train_images`` subset: the same images for every model seed, so that
#: models of one data configuration differ only in their own seed
SUBSET_SEED = 0


def prepare_data(
    data: ImageData,
    device: torch.device,
    max_train_images: int | None = None,
    placement: Literal["auto", "device", "host"] = "auto",
) -> DeviceData:
    """Move ``data`` to ``device`` once; the train split is reduced to a class-balanced
    subset of ``max_train_images`` images when given (per class, balanced over
    ``data.strata``, drawn with ``SUBSET_SEED``, in dataset order:
    :func:`simbench.data.sampling.balanced_indices`), and normalisation uses that split.

    ``placement``: ``"device"`` puts the images on ``device``; ``"host"`` keeps them in
    host memory (pinned on CUDA) and streams batches (:class:`DeviceData`); ``"auto"``:
    the device when the images take at most half its free memory, else the host. Both
    give the same batches, augmentations and weights."""
    from simbench.data.sampling import balanced_indices

    x_train, y_train = data.x_train, data.y_train
    if max_train_images is not None and max_train_images < len(y_train):
        keep = balanced_indices(data.strata, max_train_images, SUBSET_SEED)
        x_train, y_train = x_train[keep], y_train[keep]
    if len(y_train) == 0:
        raise ValueError(f"dataset {data.name!r} has no training images")
    for split, y in (("train", y_train), ("test", data.y_test)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= data.num_classes):
            raise ValueError(
                f"dataset {data.name!r}: {split} labels must lie in [0, {data.num_classes}); "
                f"got [{int(y.min())}, {int(y.max())}]"
            )
    if placement not in ("auto", "device", "host"):
        raise ValueError(f"placement must be 'auto', 'device' or 'host'; got {placement!r}")
    if placement == "auto":
        nbytes = int(np.asarray(x_train).nbytes + np.asarray(data.x_test).nbytes)
        placement = "device" if data_fits(nbytes, device) else "host"
    host = placement == "host"
    mean, std = channel_stats(x_train)
    return DeviceData(
        x_train=_images(x_train, device, host),
        y_train=torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(device),
        x_test=_images(data.x_test, device, host),
        y_test=torch.from_numpy(np.asarray(data.y_test, dtype=np.int64)).to(device),
        mean=torch.tensor(mean, dtype=torch.float32, device=device),
        std=torch.tensor(std, dtype=torch.float32, device=device),
        mean64=tuple(float(v) for v in mean),
        std64=tuple(float(v) for v in std),
        streamed=host,
    )


class _HostBatches:
    """Batches of host-resident images gathered into two alternating (pinned on CUDA)
    buffers and copied to the device without blocking (``prepare_data(placement="host")``)."""

    def __init__(self, data: DeviceData, perm: torch.Tensor, batch_size: int, device: Any):
        self.active = data.streamed
        if not self.active:
            return
        self.device = torch.device(device)
        self.x = data.x_train.permute(0, 2, 3, 1)  # the NHWC storage, contiguous
        self.perm = perm.cpu()  # one copy per epoch, not one sync per batch
        pin = self.device.type == "cuda"
        shape = (batch_size, *self.x.shape[1:])
        self.bufs = [torch.empty(shape, dtype=self.x.dtype, pin_memory=pin) for _ in range(2)]
        self.events: list[Any] = [None, None]

    def batch(self, i: int, start: int, stop: int) -> torch.Tensor:
        """The images of ``perm[start:stop]`` on the device, ``(B, C, H, W)`` channels-last."""
        k = i % 2
        if self.events[k] is not None:
            self.events[k].synchronize()  # its previous copy to the device has finished
        buf = self.bufs[k][: stop - start]
        torch.index_select(self.x, 0, self.perm[start:stop], out=buf)
        if self.device.type == "cuda":
            xb = buf.to(self.device, non_blocking=True)
            self.events[k] = torch.cuda.Event()
            self.events[k].record()
        else:
            xb = buf.clone()  # the buffer is reused two batches later
        return xb.permute(0, 3, 1, 2)


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()  # BatchNorm cannot train on one image
    return bounds


# ----------------------------------------------------------------------------- loops


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    cfg: TrainConfig,
    *,
    seed: int,
    epoch: int,
    autocast_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    bar: Any = None,
    max_batches: int | None = None,
    batch_lr: Callable[[int], float] | None = None,
) -> tuple[float, float]:
    """One epoch of SGD at the current learning rate; ``(mean loss, accuracy)`` on the
    augmented training batches. Shuffling and augmentation draw from one generator on
    the data's device seeded with ``seed_for(seed, epoch)``. ``max_batches`` stops after
    that many batches (benchmarks). ``batch_lr(i)``, if given, sets the learning rate
    before batch ``i`` of the epoch (per-batch schedules)."""
    device = data.mean.device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed_for(seed, epoch))
    n = data.y_train.shape[0]
    perm = torch.randperm(n, generator=gen, device=device)
    stream = _HostBatches(data, perm, cfg.batch_size, device)
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for i, (start, stop) in enumerate(_batches(n, cfg.batch_size)[:max_batches]):
        idx = perm[start:stop]
        xb = stream.batch(i, start, stop) if stream.active else data.x_train[idx]
        yb = data.y_train[idx]
        if batch_lr is not None:
            lr_i = batch_lr(i)
            for group in optimizer.param_groups:
                group["lr"] = lr_i
        if cfg.crop == "random_resized":
            xb = random_resized_crop(xb, cfg.crop_size, gen, cfg.crop_scale, cfg.crop_ratio)
            if cfg.augment:
                xb = augment(xb, 0, gen)  # the flip
        elif cfg.augment:
            xb = augment(xb, cfg.crop_padding, gen)
        xb = normalize(xb, data.mean, data.std, memory_format=memory_format)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
        ):
            out = model(xb)
            loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += loss.detach().double() * (stop - start)
            correct += (out.argmax(1) == yb).sum()
        seen += stop - start
        if bar is not None:
            bar.update(1)
            if device.type == "cpu" or (i + 1) % PROGRESS_EVERY == 0:  # no sync cost on CPU
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}"
                )
    if seen == 0:
        return math.nan, math.nan
    return loss_sum.item() / seen, correct.item() / seen


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    batch_size: int = 500,
    autocast_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    resize: int | None = None,
    crop_pct: float = 0.875,
) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` in eval mode on uint8 images ``x``
    (no augmentation); ``(nan, nan)`` for an empty split. Leaves the model in eval mode."""
    n = y.shape[0]
    if n == 0:
        return math.nan, math.nan
    model.eval()
    device = mean.device  # x may live in (pinned) host memory: prepare_data(placement)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].to(device, non_blocking=True)
            if resize is not None:
                xb = center_resize(xb, resize, crop_pct)
            xb = normalize(xb, mean, std, memory_format=memory_format)
            yb = y[start : start + batch_size]
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.bfloat16,
                enabled=autocast_dtype is not None,
            ):
                out = model(xb)
            loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").double()
            correct += (out.argmax(1) == yb).sum()
    return loss_sum.item() / n, correct.item() / n


# ----------------------------------------------------------------------------- train


@contextlib.contextmanager
def determinism(device: torch.device) -> Iterator[None]:
    """Context: deterministic algorithms on the CPU, cuDNN autotuning on CUDA (as ``train``
    runs); the previous settings are restored on exit."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="batch", dynamic_ncols=True, leave=True)


def train(
    spec: ModelSpec,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> Path:
    """Train the model of ``spec``; return the path of its final ``model.safetensors``.

    Writes under ``run_dir(spec, out_dir)`` (layout: :mod:`simbench.train.checkpoint`).
    If the final checkpoint is already complete it is returned without training; if a
    resume state exists, training continues after its last completed epoch.
    ``on_epoch_end(epoch, record)`` is called after each epoch's state is saved, with the
    number of completed epochs and that epoch's history record.
    """
    cfg = spec.train
    key = spec.key()
    rdir = run_dir(spec, out_dir)
    final = rdir / MODEL_FILE
    if is_complete(final):
        log.info("%s: already trained", final)
        return final
    bad = sorted(e for e in cfg.save_epochs if not 0 <= e <= cfg.epochs)
    if bad:
        raise ValueError(f"train.save_epochs must lie in [0, {cfg.epochs}]; got {bad}")

    arch = create_plugin("architecture", spec.architecture.name, spec.architecture.params)
    dataset = create_plugin("dataset", spec.dataset.name, spec.dataset.params)
    image_data: ImageData = dataset.load()
    size = image_data.image_size
    if cfg.crop == "random_resized":
        size = cfg.crop_size  # the model sees the resampled crops
    if arch.input_size is not None and arch.input_size != size:
        raise ValueError(
            f"architecture {spec.architecture.name!r} expects {arch.input_size}px images; "
            f"dataset {spec.dataset.name!r} has {size}px"
        )
    device = resolve_device(cfg.device)
    amp = resolve_precision(cfg.precision, device)
    mformat = memory_format_for(device)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []

    rdir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=cuda_devices), determinism(device):
        torch.manual_seed(seed_for(spec.seed, 0, stream=1))
        model = arch.build(image_data.num_classes, seed=spec.seed)
        model = model.to(device=device, memory_format=mformat)
        optimizer = make_optimizer(model, cfg)
        data = prepare_data(image_data, device, cfg.max_train_images, cfg.data_placement)

        base_meta = {
            "spec": spec.model_dump(mode="json"),
            "key": key,
            "num_classes": image_data.num_classes,
            "classes": list(image_data.classes),
            "dataset": image_data.name or spec.dataset.name,
            "train_images": int(data.y_train.shape[0]),
            "test_images": int(data.y_test.shape[0]),
            "image_size": size,
            "normalization": {"mean": list(data.mean64), "std": list(data.std64)},
            "device": str(device),
            "precision": "bf16" if amp is not None else "fp32",
            "epochs": cfg.epochs,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }

        def meta(kind: str, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
            last = history[-1] if history else {}
            return {
                **base_meta,
                "kind": kind,
                "epoch": epoch,
                "history": history,
                "test_accuracy": last.get("test_accuracy"),
                "test_loss": last.get("test_loss"),
            }

        start_epoch, history = 0, []
        resume = rdir / RESUME_FILE
        if is_complete(resume):
            try:
                state_meta = load_training_state(resume, model, optimizer)
            except (ValueError, OSError, KeyError) as exc:
                log.warning("%s: cannot resume (%s); starting over", resume, exc)
                model = arch.build(image_data.num_classes, seed=spec.seed)
                model = model.to(device=device, memory_format=mformat)
                optimizer = make_optimizer(model, cfg)
            else:
                if state_meta.get("key") != key:
                    raise ValueError(f"{resume} belongs to spec {state_meta.get('key')}, not {key}")
                start_epoch, history = int(state_meta["epoch"]), list(state_meta["history"])
                log.info("%s: resuming after epoch %d", rdir, start_epoch)
        if start_epoch == 0 and 0 in cfg.save_epochs:
            save_checkpoint(rdir / epoch_file(0), model.state_dict(), meta("epoch", 0, []))

        batches = len(_batches(int(data.y_train.shape[0]), cfg.batch_size))
        bar = _progress_bar(progress, cfg.epochs * batches, start_epoch * batches)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                batch_lr = None
                if cfg.lr_schedule == "onecycle":

                    def batch_lr(i: int, epoch: int = epoch) -> float:
                        return onecycle_lr(cfg.lr, epoch * batches + i, cfg.epochs * batches)

                lr = batch_lr(0) if batch_lr is not None else lr_at(cfg, epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if bar is not None:
                    bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
                t0 = time.perf_counter()
                train_loss, train_acc = train_one_epoch(
                    model,
                    optimizer,
                    data,
                    cfg,
                    seed=spec.seed,
                    epoch=epoch,
                    autocast_dtype=amp,
                    memory_format=mformat,
                    bar=bar,
                    batch_lr=batch_lr,
                )
                seconds = time.perf_counter() - t0
                test_loss = test_acc = None
                if (
                    (epoch + 1) % cfg.eval_every == 0
                    or epoch + 1 == cfg.epochs
                    or epoch + 1 in cfg.save_epochs
                ):
                    test_loss, test_acc = evaluate(
                        model,
                        data.x_test,
                        data.y_test,
                        data.mean,
                        data.std,
                        batch_size=max(2 * cfg.batch_size, 256),
                        autocast_dtype=amp,
                        memory_format=mformat,
                        resize=cfg.crop_size if cfg.crop == "random_resized" else None,
                        crop_pct=cfg.crop_pct,
                    )
                record = {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train_loss": train_loss,
                    "train_accuracy": train_acc,
                    "test_loss": test_loss,
                    "test_accuracy": test_acc,
                    "seconds": seconds,
                    "images_per_second": int(data.y_train.shape[0]) / seconds,
                }
                history.append(record)
                done = epoch + 1
                tested = f" test acc {test_acc:.4f}" if test_acc is not None else ""
                msg = (
                    f"epoch {done}/{cfg.epochs}: lr {lr:.2g} loss {train_loss:.4f} "
                    f"acc {train_acc:.4f}{tested} ({record['images_per_second']:.0f} img/s)"
                )
                log.info(msg)
                if bar is not None:
                    post = {"loss": f"{train_loss:.3f}", "acc": f"{train_acc:.3f}"}
                    if test_acc is not None:
                        post["test"] = f"{test_acc:.3f}"
                    bar.set_postfix(**post)
                    bar.write(msg)
                if done in cfg.save_epochs:
                    save_checkpoint(
                        rdir / epoch_file(done), model.state_dict(), meta("epoch", done, history)
                    )
                if done < cfg.epochs:
                    save_training_state(resume, model, optimizer, meta("resume", done, history))
                else:
                    save_checkpoint(final, model.state_dict(), meta("model", done, history))
                if on_epoch_end is not None:
                    on_epoch_end(done, record)
        finally:
            if bar is not None:
                bar.close()
    for stale in (sidecar_path(resume), resume):  # sidecar first: it marks completeness
        stale.unlink(missing_ok=True)
    return final
