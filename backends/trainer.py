"""The training runner: a lean loop over in-memory tensors, with callbacks, checkpoints and resume."""

from __future__ import annotations

import csv
import ctypes
import fnmatch
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec import __version__
from netspec.backends import checkpoint
from netspec.backends.augment import Augmenter
from netspec.backends.losses import LossFn, balanced_class_weights, make_loss
from netspec.backends.lowering import NetModule, build_module
from netspec.backends.metrics import Metrics
from netspec.backends.weights import load_weights, named_parameters, weights
from netspec.data.pipeline import Prepared, Preprocessing, cut_tiles, prepare
from netspec.errors import DataError, NetspecError, Problem, SpecError
from netspec.fileio import write_text
from netspec.ir import Graph
from netspec.train_spec import TrainSpec

LOWER_IS_BETTER = ("loss", "mae", "rmse")


class Interrupted(NetspecError):
    """Ctrl-C during training: the last completed epoch is saved and resumable."""


# --- devices and layout ---------------------------------------------------------------------


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NetspecError(
            [Problem("--device cuda: no CUDA device is available", hint="use --device cpu")]
        )
    return torch.device(device)


def use_channels_last(graph: Graph, spec: TrainSpec) -> bool:
    """Channels-last helps convolutions on both CPU (oneDNN) and CUDA; measured in benchmarks/."""
    if spec.channels_last != "auto":
        return spec.channels_last == "on"
    return len(graph.input_shape) == 3 and any(n.kind == "conv2d" for n in graph.nodes)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc returns large freed blocks (munmap, heap trimming), so each training step
    page-faults its activations in again: a 1,024-sample epoch of mnist_cnn on 2 cores took
    0.33 s, 0.15 s of it system time for 77,000 page faults, and takes 0.24 s with no faults
    with this (benchmarks/bench_train.py). Blocks up to 32 MiB come from the heap, and freed
    memory stays with the process for the next step, as torch's caching allocator does on
    CUDA: the process keeps its peak memory (max RSS unchanged). It changes the whole process,
    once; only glibc has mallopt. True if set.
    """
    global _kept
    if _kept is None:
        _kept = False
        version = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
        if sys.platform.startswith("linux") and (version or "").startswith("glibc"):
            try:
                mallopt = ctypes.CDLL(None).mallopt
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _kept = bool(
                    mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                )
            except (OSError, AttributeError, ValueError):
                pass
    return _kept


_kept: bool | None = None


# --- the value steps of preprocessing, as tensor ops on the device -----------------------------


class Normalizer:
    """x * scale, then per-channel (x - mean) / std or per-sample standardization, then reshape."""

    def __init__(self, pre: Preprocessing, device: torch.device) -> None:
        self.pre = pre
        self.shape = tuple(pre.input_shape)
        view = (1, -1) + (1,) * (len(pre.raw_shape) - 1)
        self.mean = torch.tensor(pre.mean, device=device).view(view) if pre.mean else None
        self.std = torch.tensor(pre.std, device=device).view(view) if pre.std else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.pre.scale != 1.0:
            x = x * self.pre.scale
        if self.mean is not None:
            x = (x - self.mean) / self.std
        elif self.pre.per_sample:
            flat = x.flatten(1)
            x = ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)).view_as(
                x
            )
        return x.reshape(x.shape[0], *self.shape)


# --- losses ---------------------------------------------------------------------------------


def _loss_error(message: str, hint: str | None = None) -> SpecError:
    return SpecError([Problem(f"train.loss: {message}", hint=hint)])


def choose_loss(spec: TrainSpec, prepared: Prepared, module: NetModule) -> LossFn:
    """The spec's loss (or the task's default), checked against the data and the output layer."""
    cfg = spec.loss
    shape = tuple(module.graph.output.shape)
    task = prepared.task
    if task == "segmentation":
        default = "binary_cross_entropy" if shape[0] == 1 else "cross_entropy"
    else:
        default = {"multiclass": "cross_entropy", "binary": "binary_cross_entropy"}.get(task, "mse")
    terms = cfg.terms if cfg else (default,)
    regression = {"mse", "mae"}
    if task == "regression" and not set(terms) <= regression:
        wrong = next(t for t in terms if t not in regression)
        raise _loss_error(
            f"{wrong} needs class labels, but the data are regression targets",
            hint="use loss: mse or mae",
        )
    if task != "regression" and set(terms) & regression:
        wrong = next(t for t in terms if t in regression)
        raise _loss_error(
            f"{wrong} is for regression, but the data have classes",
            hint="use cross_entropy (or binary_cross_entropy), optionally + dice",
        )
    single = shape[0] == 1 if task == "segmentation" else math.prod(shape) == 1
    if "binary_cross_entropy" in terms and (module.head == "softmax" or not single):
        # The loss sees the logits before the head; a softmax head would then be trained as if
        # it were a sigmoid (and a softmax over one unit always outputs 1).
        unit = "map" if task == "segmentation" else "unit"
        raise _loss_error(
            f"binary_cross_entropy needs a single sigmoid output {unit}, but the network ends "
            f"in {module.head or 'no activation'} with output {shape}",
            hint="end the network with a single sigmoid output, or use a softmax over 2 "
            "classes with loss: cross_entropy",
        )
    if "cross_entropy" in terms and single and task != "regression":
        raise _loss_error(
            f"cross_entropy needs one output per class, the network's output is {shape}",
            hint="use binary_cross_entropy with a single sigmoid output",
        )
    k = len(prepared.classes) if prepared.classes else 0
    class_weights = None
    if cfg is not None and cfg.class_weights is not None:
        if cfg.class_weights == "balanced":
            class_weights = balanced_class_weights(prepared.train.y, k)
        else:
            if len(cfg.class_weights) != k:
                raise _loss_error(
                    f"{len(cfg.class_weights)} class_weights for {k} classes "
                    f"({', '.join(prepared.classes or ())}); give one per class"
                )
            class_weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    try:
        return make_loss(
            terms,
            weights=cfg.weights if cfg else None,
            class_weights=class_weights,
            label_smoothing=cfg.label_smoothing if cfg else 0.0,
        )
    except ValueError as exc:
        raise _loss_error(str(exc)) from None


def default_metrics(task: str, asked: list[str] | None) -> list[str]:
    """The metrics a run reports: those asked for that fit the task, or the task's defaults."""
    if task == "segmentation":
        return list(asked) if asked else ["iou", "dice", "pixel_accuracy"]
    if task == "regression":
        picked = [m for m in asked or () if m in ("mae", "rmse")]
        return picked or ["mae"]
    return list(asked) if asked else ["accuracy"]


# --- optimizers and schedules -----------------------------------------------------------------


def _fused(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused optimizer kernels take these parameters.

    A fused step updates each tensor in one pass instead of a dozen elementwise ops. On CPU,
    where torch's default is that op-by-op loop, Adam's step took 0.44 ms instead of 1.04 ms for
    mnist_cnn and 2.1 ms instead of 8.1 ms for cifar_cnn (2 threads), 3-4% of a training step.
    """
    return bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in params
    )


_FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def make_optimizer(spec: TrainSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    o = spec.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    if o.name in ("adam", "adamw"):
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return cls(params, lr=o.lr, weight_decay=o.weight_decay, fused=_fused(params) or None)
    return torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def make_schedule(
    spec: TrainSpec, opt: torch.optim.Optimizer, steps_per_epoch: int
) -> tuple[Any, str]:
    """The scheduler and when it steps: 'batch', 'epoch' or 'plateau'."""
    s = spec.schedule
    if s is None:
        return None, "epoch"
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma), "epoch"
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=spec.epochs, eta_min=s.min_lr
        ), "epoch"
    if s.name == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=s.max_lr or spec.optimizer.lr * 10,
            epochs=spec.epochs,
            steps_per_epoch=steps_per_epoch,
        ), "batch"
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=_mode(s.monitor), factor=s.factor, patience=s.patience, min_lr=s.min_lr
    ), "plateau"


def _mode(monitor: str) -> str:
    return "min" if monitor.removeprefix("val_") in LOWER_IS_BETTER else "max"


def _better(a: float, b: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if b is None or math.isnan(b):
        return not math.isnan(a)
    return a < b - min_delta if mode == "min" else a > b + min_delta


# --- weights by layer name --------------------------------------------------------------------


def init_from(module: NetModule, spec: TrainSpec, spec_file: str | None) -> list[str]:
    """Transfer learning: copy the tensors of layers matching `init.layers` by name and shape."""
    assert spec.init is not None
    from netspec.data.pipeline import resolve_path

    src = resolve_path(spec.init.from_, spec_file)
    if src.is_dir():
        src = src / "model.safetensors"
    tensors, _ = checkpoint.load(src)
    own = weights(module)
    picked: dict[str, torch.Tensor] = {}
    problems = []
    for key, value in tensors.items():
        layer = key.rsplit(".", 1)[0]
        if not any(fnmatch.fnmatchcase(layer, pat) for pat in spec.init.layers):
            continue
        if key not in own:
            continue
        if tuple(own[key].shape) != tuple(value.shape):
            problems.append(
                Problem(
                    f"train.init: '{key}' has shape {tuple(value.shape)} in {src} but "
                    f"{tuple(own[key].shape)} in this network",
                    hint="list only the layers that match in `init.layers`",
                )
            )
            continue
        picked[key] = value
    if problems:
        raise SpecError(problems)
    if not picked:
        raise SpecError(
            [
                Problem(
                    f"train.init: no layer of {src} matches {spec.init.layers} by name",
                    hint="layer names are those of `netspec summary`",
                )
            ]
        )
    load_weights(module, picked, strict=False)
    return sorted({k.rsplit(".", 1)[0] for k in picked})


# --- the run ----------------------------------------------------------------------------------


@dataclass
class RunState:
    """Everything that changes from epoch to epoch (saved in the checkpoint's metadata)."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    plateau_bad: int = 0
    plateau_best: float | None = None
    stopped: str | None = None


def spec_hash(graph: Graph) -> str:
    """Hash of the resolved network (not of the training settings): what the weights fit."""
    payload = json.dumps(
        [
            graph.input_shape,
            [
                (
                    n.name,
                    n.kind,
                    n.inputs,
                    {f: getattr(n.layer, f) for f in type(n.layer).model_fields},
                    n.shape,
                )
                for n in graph.nodes
            ],
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class Trainer:
    def __init__(
        self,
        graph: Graph,
        spec: TrainSpec,
        run_dir: Path,
        *,
        device: str = "auto",
        resume: bool = False,
        spec_text: str = "",
        summary_text: str = "",
        log=None,
        progress: bool | None = None,
    ) -> None:
        self.graph = graph
        self.spec = spec
        self.run_dir = run_dir
        self.device = pick_device(device)
        self.resume = resume
        self.spec_text = spec_text
        self.summary_text = summary_text
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.progress = sys.stderr.isatty() if progress is None else progress

    # setup
    def setup(self) -> None:
        spec, graph = self.spec, self.graph
        torch.manual_seed(spec.seed)
        self.data = prepare(spec, graph.input_shape, graph.output.shape, graph.file)
        for note in self.data.notes:
            self.log(f"note: {note}")
        self.module = build_module(graph).to(self.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.channels_last = use_channels_last(graph, spec)
        # bf16 mixed precision only when asked (spec or --precision): weights stay fp32.
        self.bf16 = spec.precision == "bf16"
        if self.bf16 and self.device.type == "cpu":
            self.log("note: bf16 autocast on the CPU is slow without AMX; it is meant for CUDA")
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        if spec.init is not None:
            loaded = init_from(self.module, spec, graph.file)
            self.log(f"init: loaded {len(loaded)} layers from {spec.init.from_}")
        self.loss_fn = choose_loss(spec, self.data, self.module).to(self.device)
        # Class losses take the logits (the head is fused into the loss); regression losses
        # compare what the network outputs, its final activation included.
        self.logits = self.loss_fn.on_logits
        if "cross_entropy" in self.loss_fn.terms and self.module.head == "sigmoid":
            raise SpecError(
                [
                    Problem(
                        "train.loss: cross_entropy needs a softmax output, this network ends in sigmoid"
                    )
                ]
            )
        self.norm = Normalizer(self.data.preprocessing, self.device)
        self.x_train, self.y_train = self._tensors(self.data.train)
        self.val = self._tensors(self.data.val) if self.data.val is not None else None
        self.test = self._tensors(self.data.test) if self.data.test is not None else None
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.opt = make_optimizer(spec, self.trainable)
        # Segmentation scenes larger than the input give several random tiles each per epoch.
        self.per_scene = self.data.tiles_per_scene if self.data.random_tiles else 1
        self.crops = torch.Generator().manual_seed(spec.seed + 2)
        n = self.n_train = len(self.y_train) * self.per_scene
        self.steps = (
            max(1, n // spec.batch_size)
            if n % spec.batch_size == 1
            else max(1, math.ceil(n / spec.batch_size))
        )
        self.sched, self.sched_when = make_schedule(spec, self.opt, self.steps)
        self.shuffle = torch.Generator().manual_seed(spec.seed)
        self.augment = Augmenter(spec.augment, seed=spec.seed + 1, device=self.device)
        if self.augment.enabled and len(graph.input_shape) != 3:
            raise SpecError(
                [
                    Problem(
                        "train.augment: augmentation needs image input [C, H, W]",
                        hint=f"the spec's input is {list(graph.input_shape)}",
                    )
                ]
            )
        k = len(self.data.classes) if self.data.classes else 0
        self.metric_names = default_metrics(self.data.task, spec.metrics)
        try:
            self.metrics = Metrics(self.metric_names, task=self.data.task, num_classes=max(k, 1))
        except ValueError as exc:
            raise SpecError([Problem(f"train.metrics: {exc}")]) from None
        self.reg = self._regularizers()
        self.state = RunState()
        self.hash = spec_hash(graph)
        if self.resume:
            self._restore()
        self.saved_epoch = self.state.epoch  # the epoch in checkpoint/last.safetensors

    def _tensors(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(data.x)).to(self.device)
        y = torch.from_numpy(np.ascontiguousarray(data.y))
        y = y.long() if self.data.task in ("multiclass", "segmentation") else y.float()
        return x, y.to(self.device)

    def _regularizers(self) -> list[tuple[torch.Tensor, float, float]]:
        out = []
        for rule in self.spec.regularize:
            for layer, tensor, p in named_parameters(self.module):
                if tensor != "weight" or not p.requires_grad:
                    continue  # like Keras' kernel_regularizer: weights, not biases
                if any(fnmatch.fnmatchcase(layer, pat) for pat in rule.layers):
                    out.append((p, rule.l1, rule.l2))
        return out

    # one epoch
    def _batches(self, n: int, bs: int, perm: torch.Tensor | None):
        starts = list(range(0, n, bs))
        if len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()  # a batch of one breaks batchnorm: fold it into the previous batch
        for i, s in enumerate(starts):
            e = starts[i + 1] if i + 1 < len(starts) else n
            yield (perm[s:e] if perm is not None else slice(s, e))

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward_logits(x) if self.logits else self.module(x)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch: gathered, normalized, in the model's layout, augmented."""
        if self.data.random_tiles:
            xb, yb = self._random_tiles(idx)
            xb = self._prep(xb)
        else:
            xb = self._prep(self.x_train[idx])
            yb = self.y_train[idx]
        if self.augment.enabled:
            # Masks get the very same flips, symmetries and shifts as their images.
            xb, mask = self.augment(xb, yb if yb.ndim == 3 else None)
            yb = mask if mask is not None else yb
        return xb, yb

    def _random_tiles(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random tile of the input's size from each scene `idx`, with its mask (one gather)."""
        assert self.data.tile is not None
        h, w = self.data.tile
        c, sh, sw = self.x_train.shape[1:]
        b = idx.shape[0]
        tops = torch.randint(0, sh - h + 1, (b, 1), generator=self.crops)
        lefts = torch.randint(0, sw - w + 1, (b, 1), generator=self.crops)
        rows = (tops + torch.arange(h)).to(self.device)[:, :, None]  # (B, h, 1)
        cols = (lefts + torch.arange(w)).to(self.device)[:, None, :]  # (B, 1, w)
        scene = idx[:, None, None]
        x = self.x_train[
            scene[:, None],
            torch.arange(c, device=self.device)[:, None, None],
            rows[:, None],
            cols[:, None],
        ]
        return x, self.y_train[scene, rows, cols]

    def train_epoch(self) -> dict[str, float]:
        m = self.module
        m.train()  # frozen batchnorms keep using their running statistics (see the lowering)
        self.metrics.reset()
        perm = torch.randperm(self.n_train, generator=self.shuffle)
        if self.per_scene > 1:
            perm = perm % len(self.y_train)  # each scene per_scene times, in random order
        perm = perm.to(self.device)
        total = torch.zeros((), device=self.device)
        seen = 0
        t0 = time.perf_counter()
        bar = self._bar()
        try:
            for step, idx in enumerate(self._batches(self.n_train, self.spec.batch_size, perm)):
                xb, yb = self._batch(idx)
                with self._autocast():
                    out = self._forward(xb)
                    loss = self.loss_fn(out, yb)
                if self.reg:
                    loss = loss + sum(
                        (l1 * p.abs().sum() if l1 else 0) + (l2 * p.pow(2).sum() if l2 else 0)
                        for p, l1, l2 in self.reg
                    )
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                if self.sched is not None and self.sched_when == "batch":
                    self.sched.step()
                bs = yb.shape[0]
                total += loss.detach() * bs
                seen += bs
                self.metrics.update(out.detach(), yb)
                if bar is not None and (step % 5 == 0 or step == self.steps - 1):
                    bar(step + 1, float(total) / seen, seen / (time.perf_counter() - t0))
        finally:  # also on Ctrl-C, so the terminal is left clean
            if bar is not None:
                bar(None, 0, 0)
        loss_value = float(total) / max(seen, 1)
        if self.spec.callbacks.stop_on_nan and not math.isfinite(loss_value):
            self.state.stopped = f"the training loss is {loss_value}"
        row = {"loss": loss_value, **self.metrics.compute()}
        row["samples_per_s"] = seen / (time.perf_counter() - t0)
        return row

    @torch.inference_mode()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
    ) -> dict[str, float]:
        # Per-pixel outputs are large: a few dozen tiles at a time keep memory flat.
        batch_size = batch_size or (32 if self.data.task == "segmentation" else 512)
        m = self.module
        m.eval()
        self.metrics.reset()
        total = 0.0
        for idx in self._batches(len(y), batch_size, None):
            with self._autocast():
                out = self._forward(self._prep(x[idx])).float()
            total += float(self.loss_fn(out, y[idx])) * y[idx].shape[0]
            self.metrics.update(out, y[idx])
        return {"loss": total / max(len(y), 1), **self.metrics.compute()}

    def _bar(self):
        if not self.progress:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        epoch = self.state.epoch + 1
        progress = Progress(
            TextColumn(f"epoch {epoch}/{self.spec.epochs}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=True,
        )
        task = progress.add_task("train", total=self.steps, info="")
        progress.start()

        def update(step: int | None, loss: float, speed: float) -> None:
            if step is None:
                progress.stop()
                return
            progress.update(task, completed=step, info=f"loss {loss:.4f}  {speed:,.0f} samples/s")

        return update

    # the loop
    def fit(self) -> dict[str, Any]:
        spec = self.spec
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_static()
        monitor = self._monitor()
        if self.val is None and monitor.startswith("val_"):
            self.log(
                f"note: no validation split; callbacks monitor '{monitor.removeprefix('val_')}' instead"
            )
        try:
            while self.state.epoch < spec.epochs and self.state.stopped is None:
                t0 = time.perf_counter()
                row = {"epoch": self.state.epoch + 1, **self.train_epoch()}
                if self.val is not None:
                    row.update({f"val_{k}": v for k, v in self.evaluate(*self.val).items()})
                row["lr"] = self.opt.param_groups[0]["lr"]
                row["time_s"] = time.perf_counter() - t0
                self.state.history.append(row)
                self.state.epoch += 1
                self._callbacks(row)
                self._save_epoch()
                self.log(self._line(row))
        except KeyboardInterrupt:
            # Not state.epoch: it counts an epoch whose checkpoint may not have been written.
            saved = self.saved_epoch
            raise Interrupted(
                [
                    Problem(
                        f"interrupted during epoch {saved + 1}; "
                        + (
                            f"epoch {saved} is saved in {self.run_dir}"
                            if saved
                            else "no epoch was completed"
                        ),
                        hint=f"continue with: netspec train SPEC --out {self.run_dir} --resume"
                        if saved
                        else "start the run again",
                    )
                ]
            ) from None
        if self.state.stopped:
            self.log(f"stopped: {self.state.stopped}")
        try:
            return self._finish()
        except KeyboardInterrupt:
            raise Interrupted(
                [
                    Problem(
                        f"interrupted while writing the final model; epoch {self.saved_epoch} "
                        f"is saved in {self.run_dir}",
                        hint=f"finish with: netspec train SPEC --out {self.run_dir} --resume",
                    )
                ]
            ) from None

    def _value(self, row: dict[str, float], monitor: str) -> float:
        if monitor in row:
            return row[monitor]
        bare = monitor.removeprefix("val_")
        if bare in row:
            return row[bare]
        raise SpecError(
            [
                Problem(
                    f"train.callbacks: cannot monitor '{monitor}': the run records {', '.join(k for k in row if k not in ('epoch', 'time_s', 'samples_per_s'))}"
                )
            ]
        )

    def _monitor(self) -> str:
        cb = self.spec.callbacks
        return cb.early_stopping.monitor if cb.early_stopping else cb.checkpoint.monitor

    def _callbacks(self, row: dict[str, float]) -> None:
        cb, st = self.spec.callbacks, self.state
        monitor = self._monitor()
        value = self._value(row, monitor)
        es = cb.early_stopping
        min_delta = es.min_delta if es else 0.0
        if _better(value, st.best, _mode(monitor), min_delta):
            st.best, st.best_epoch, st.bad_epochs = value, st.epoch, 0
            if cb.checkpoint.best or (es and es.restore_best):
                checkpoint.save(
                    self.run_dir / "checkpoint" / "best.safetensors",
                    weights(self.module),
                    {"epoch": st.epoch, monitor: value},
                )
        else:
            st.bad_epochs += 1
        if es is not None and st.bad_epochs >= es.patience:
            st.stopped = (
                f"early stopping: {monitor} did not improve for {es.patience} epochs "
                f"(best {st.best:.4f} at epoch {st.best_epoch})"
            )
        rl = cb.reduce_lr_on_plateau
        if rl is not None:
            v = self._value(row, rl.monitor)
            if _better(v, st.plateau_best, _mode(rl.monitor)):
                st.plateau_best, st.plateau_bad = v, 0
            else:
                st.plateau_bad += 1
                if st.plateau_bad >= rl.patience:
                    for g in self.opt.param_groups:
                        g["lr"] = max(g["lr"] * rl.factor, rl.min_lr)
                    st.plateau_bad = 0
        if self.sched is not None:
            if self.sched_when == "epoch":
                self.sched.step()
            elif self.sched_when == "plateau":
                self.sched.step(self._value(row, self.spec.schedule.monitor))

    def _line(self, row: dict[str, float]) -> str:
        parts = [f"epoch {int(row['epoch'])}/{self.spec.epochs}"]
        for k, v in row.items():
            if k in ("epoch", "time_s", "samples_per_s", "lr"):
                continue
            parts.append(f"{k} {v:.4f}")
        parts.append(f"lr {row['lr']:.2e}")
        parts.append(f"{row['time_s']:.1f}s ({row['samples_per_s']:,.0f} samples/s)")
        return "  ".join(parts)

    # persistence
    def _meta(self) -> dict[str, Any]:
        """What an app needs to use the weights (also exported to ONNX metadata later)."""
        return {
            "name": self.graph.name,
            "netspec_version": __version__,
            "spec_sha256": self.hash,
            "task": self.data.task,
            "classes": list(self.data.classes) if self.data.classes else None,
            "input_shape": list(self.graph.input_shape),
            "output_shape": list(self.graph.output.shape),
            "head": self.module.head,
            "preprocessing": self.data.preprocessing.to_dict(),
        }

    def _write_static(self) -> None:
        write_text(self.run_dir / "spec.yaml", self.spec_text)
        write_text(self.run_dir / "summary.txt", self.summary_text)
        write_text(self.run_dir / "model.json", json.dumps(self._meta(), indent=2))

    def _save_epoch(self) -> None:
        st = self.state
        tensors = {f"model/{k}": v for k, v in weights(self.module).items()}
        opt_tensors, opt_rest = checkpoint.optimizer_state(self.opt)
        tensors.update(opt_tensors)
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/shuffle"] = self.shuffle.get_state()
        tensors["rng/crops"] = self.crops.get_state()
        tensors.update({f"rng/augment/{k}": v for k, v in self.augment.state_dict().items()})
        if self.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "run": st.__dict__,
            "optimizer": opt_rest,
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "spec_sha256": self.hash,
        }
        if self.spec.callbacks.checkpoint.last:  # off: no resumable state is kept
            checkpoint.save(
                self.run_dir / "checkpoint" / "last.safetensors",
                tensors,
                {checkpoint.STATE_KEY: json.dumps(state, default=_jsonable)},
            )
            self.saved_epoch = st.epoch
        if self.spec.callbacks.csv_log:
            self._write_csv()

    def _restore(self) -> None:
        path = self.run_dir / "checkpoint" / "last.safetensors"
        if not path.is_file():
            raise DataError(
                [
                    Problem(
                        f"--resume: no checkpoint in {self.run_dir}",
                        hint="train without --resume, or point --out at an earlier run",
                    )
                ]
            )
        tensors, meta = checkpoint.load(path)
        state = json.loads(meta[checkpoint.STATE_KEY])
        if state["spec_sha256"] != self.hash:
            raise SpecError(
                [
                    Problem(
                        f"--resume: the network in the spec differs from the one in {path}",
                        hint="resume with the spec the run was started with (its spec.yaml)",
                    )
                ]
            )
        load_weights(self.module, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        # Another optimizer, or other trainable (frozen) layers than the run's, would not fit.
        saved_groups = [sorted(g) for g in state["optimizer"]["param_groups"]]
        same_kind = saved_groups == [sorted(g) for g in self.opt.state_dict()["param_groups"]]
        try:
            if not same_kind:
                raise ValueError("it was made by another optimizer")
            checkpoint.load_optimizer_state(self.opt, tensors, state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise SpecError(
                [
                    Problem(
                        f"--resume: the optimizer state in {path} does not fit this spec's "
                        f"optimizer and trainable layers: {exc}",
                        hint="resume with the spec the run was started with (its spec.yaml)",
                    )
                ]
            ) from None
        if self.sched is not None and state["scheduler"] is not None:
            self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors["rng/torch"])
        self.shuffle.set_state(tensors["rng/shuffle"])
        if "rng/crops" in tensors:
            self.crops.set_state(tensors["rng/crops"])
        self.augment.load_state_dict(
            {
                k[len("rng/augment/") :]: v
                for k, v in tensors.items()
                if k.startswith("rng/augment/")
            }
        )
        if self.device.type == "cuda" and "rng/cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng/cuda"], self.device)
        self.state = RunState(**state["run"])
        self.log(f"resumed {self.run_dir} after epoch {self.state.epoch}")

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.state.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.state.history)
        write_text(self.run_dir / "metrics.csv", buf.getvalue())

    def _per_class(self) -> dict[str, dict[str, float | None]]:
        """IoU and Dice of each class from the last evaluation, by class name."""
        table = self.metrics.per_class()
        names = self.data.classes or ()
        return {
            name: {metric: values[i] for metric, values in table.items()}
            for i, name in enumerate(names)
        }

    @torch.inference_mode()
    def _plot_predictions(self, n: int = 6) -> None:
        """predictions.png: input, true mask and predicted mask of a few validation tiles."""
        from netspec.backends.plots import plot_predictions

        x, y = self.val if self.val is not None else self.test or (None, None)
        if x is None:  # no held-out tiles: show training tiles (labelled so in the title)
            idx = torch.arange(min(n, len(self.y_train)), device=self.device)
            x, y = (
                self._random_tiles(idx)
                if self.data.random_tiles
                else (
                    self.x_train[idx],
                    self.y_train[idx],
                )
            )
            split = "training"
        else:
            split = "validation" if self.val is not None else "test"
        # Spread over the set: consecutive tiles often come from one scene.
        pick = torch.linspace(0, len(y) - 1, min(n, len(y))).round().long().to(self.device)
        xb, yb = x[pick], y[pick]
        self.module.eval()
        with self._autocast():
            out = self.module.forward_logits(self._prep(xb)).float()
        pred = out.argmax(1) if out.shape[1] > 1 else (out[:, 0] > 0).long()
        plot_predictions(
            xb.float().cpu().numpy(),
            yb.cpu().numpy(),
            pred.cpu().numpy(),
            self.run_dir / "predictions.png",
            classes=list(self.data.classes or ()),
            title=f"{self.graph.name}: {split} tiles",
        )

    def _finish(self) -> dict[str, Any]:
        st, cb = self.state, self.spec.callbacks
        best_path = self.run_dir / "checkpoint" / "best.safetensors"
        if cb.early_stopping and cb.early_stopping.restore_best and best_path.is_file():
            load_weights(self.module, checkpoint.load(best_path)[0])
            self.log(f"restored the best weights (epoch {st.best_epoch})")
        checkpoint.save(
            self.run_dir / "model.safetensors",
            weights(self.module),
            {"netspec": json.dumps(self._meta())},
        )
        result: dict[str, Any] = {"epochs": st.epoch}
        best_row = next((r for r in st.history if r["epoch"] == st.best_epoch), None)
        if best_row is not None:
            result["best"] = {k: v for k, v in best_row.items() if k not in ("time_s",)}
        if self.test is not None:
            result["test"] = self.evaluate(*self.test)
            self.log("test: " + "  ".join(f"{k} {v:.4f}" for k, v in result["test"].items()))
            if self.data.task == "segmentation":
                result["test_per_class"] = self._per_class()
                self.log("test per class: " + _per_class_line(result["test_per_class"]))
        if self.data.task == "segmentation" and self.val is not None:
            self.evaluate(*self.val)
            result["val_per_class"] = self._per_class()
            self.log("val per class: " + _per_class_line(result["val_per_class"]))
        result["stopped"] = st.stopped
        result["history"] = st.history
        write_text(
            self.run_dir / "metrics.json", json.dumps(_finite(result), indent=2, default=_jsonable)
        )
        try:
            from netspec.backends.plots import plot_history

            plot_history(st.history, self.run_dir / "history.png", title=self.graph.name)
            if self.data.task == "segmentation":
                self._plot_predictions()
        except ImportError:
            self.log("note: matplotlib is not installed; history.png was not drawn")
        self.log(f"run saved in {self.run_dir}")
        return result


def _per_class_line(table: dict[str, dict[str, float | None]]) -> str:
    return "  ".join(
        f"{name} iou {_num(v.get('iou'))} dice {_num(v.get('dice'))}" for name, v in table.items()
    )


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _finite(v: Any) -> Any:
    """NaN and infinities become null: metrics.json stays strict JSON after a diverged run."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if torch.is_tensor(v):
        return v.tolist()
    raise TypeError(f"cannot store {type(v).__name__} in a checkpoint")


def _few(names: tuple[str, ...] | None) -> str:
    if not names:
        return "none"
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


def evaluate_run(
    run_dir: Path, *, data: Path | None = None, device: str = "auto"
) -> dict[str, Any]:
    """Metrics of a run's final weights on its test split, or on all of `data`."""
    from netspec.compiler import compile_source
    from netspec.source import apply_overrides, read

    run_dir = Path(run_dir)
    spec_path = run_dir / "spec.yaml"
    if not spec_path.is_file():
        raise DataError([Problem("not a run directory (no spec.yaml)", str(run_dir))])
    # The weights are the run's own: a transfer source named by `init` is not needed (or read).
    source = apply_overrides(read(spec_path), ["train.init=null"])
    train = source.data.get("train") if isinstance(source.data, dict) else None
    data_cfg = train.get("data") if isinstance(train, dict) else None
    kind = data_cfg.get("source") if isinstance(data_cfg, dict) else None
    if data is not None and kind == "builtin":
        raise DataError(
            [
                Problem(
                    f"--data: the run was trained on a built-in dataset, which has no path to "
                    f"replace with {data}",
                    hint="evaluate it without --data (on its test split)",
                )
            ]
        )
    if data is not None:
        source = apply_overrides(
            source,
            [
                f"train.data.path={Path(data).resolve()}",
                "train.data.val=0.0",
                "train.data.test=0.0",
                "train.data.test_path=null",
                "train.data.limit=null",
            ],
        )
    graph = compile_source(source)
    t = Trainer(graph, graph.train, run_dir, device=device, log=lambda s: None, progress=False)
    t.setup()
    tensors, _ = checkpoint.load(run_dir / "model.safetensors")
    load_weights(t.module, tensors)
    meta = json.loads((run_dir / "model.json").read_text())
    # The training split's statistics, exactly as recorded, not recomputed on new data.
    t.norm = Normalizer(Preprocessing.from_dict(meta["preprocessing"]), t.device)
    if data is not None:
        classes = tuple(meta["classes"]) if meta.get("classes") else None
        if classes != t.data.classes:
            raise DataError(
                [
                    Problem(
                        f"--data: the classes of {data} ({_few(t.data.classes)}) are not those "
                        f"the run was trained on ({_few(classes)})",
                        str(data),
                    )
                ]
            )
        if t.data.task == "segmentation" and t.data.tile is not None:
            x, y = t._tensors(cut_tiles(t.data.train, t.data.tile))  # every pixel, once
        else:
            x, y = t.x_train, t.y_train
        split = str(data)
    elif t.test is not None:
        x, y = t.test
        split = "test"
    else:
        raise DataError([Problem(f"{run_dir}: the run has no test split", hint="pass --data")])
    return {"split": split, "samples": len(y), **t.evaluate(x, y)}
