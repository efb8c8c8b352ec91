"""The training loop: the Trainer, one epoch at a time, over device tensors or streamed splits.

Over 400 lines: setup, batching (random tiles included), one epoch and evaluation share the
Trainer's state. What stands alone lives beside it: the run's files (run_files.py), the
end-of-run reports (run_report.py), scoring without a Trainer (scoring.py), a data-parallel
run's process group, shards and sums (distributed.py).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec.data.arraydata import ArrayData
from netspec.data.pipeline import SplitOptions, prepare
from netspec.data.text import check_vocab
from netspec.data.token_ids import check_training_ids
from netspec.ir import at_data_length
from netspec.layers.activations import activation_of
from netspec.run_record import RunLayout, RunMeta, write_start
from netspec.runs import PreparedRun, TrainOptions
from netspec.train_spec import TrainSpec

from ..lowering import build_module
from ..weights import load_weights
from . import checkpoint, run_files, run_report
from .augment import Augmenter
from .callbacks import after_epoch, monitor_of
from .device import check_memory, keep_freed_memory, pick_device, use_channels_last
from .distributed import RANK_SEED, Dist, rank_rng, restore_rank_rng, wrap_data_parallel
from .examples import Examples
from .loader import Streamed, batched, feeder_of, held_bytes, rows
from .objective import choose_loss, default_loss, default_metrics, make_metrics, regularizers
from .optim import make_optimizer, make_schedule
from .report import epoch_line, per_class_line, progress_bar
from .scoring import Scorer, batch_slices, loss_sum, probabilities
from .state import Resumable, RunState, restore_state, spec_hash
from .tensorboard_log import Board
from .tiles import random_tiles, tile_cut
from .transfer import init_from


class Trainer:
    """One run: `setup()` loads the data and builds everything, `fit()` trains and saves."""

    def __init__(
        self,
        run: PreparedRun,
        options: TrainOptions | None = None,
        *,
        log: Callable[[str], None] | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        dist: Dist | None = None,
    ) -> None:
        self.graph, self.run_dir, self.spec_text, self.summary_text = run
        options = options or TrainOptions()
        assert self.graph.train is not None, "prepare_run refuses a spec without train:"
        self.spec: TrainSpec = self.graph.train
        self.layout = RunLayout(self.run_dir)
        # dist: one worker of a data-parallel run (training/distributed.py); None: the whole run.
        self.dist = dist
        self.writer = dist is None or dist.writer  # rank 0 alone writes and talks
        self.device = dist.device if dist is not None else pick_device(options.device)
        self.resume = options.resume
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.progress = sys.stderr.isatty() if options.progress is None else options.progress
        self.force = options.force
        # Called with each epoch's row once it is saved; what it raises (a tuner's prune
        # signal) ends fit() and propagates, the epoch's checkpoint already written.
        self.on_epoch = on_epoch
        if not self.writer:
            self.log, self.progress = (lambda s: None), False

    # setup
    def setup(self) -> None:
        # This order fixes the random streams (seed, data, weights, ranks, tiles, augmentation,
        # a resume's restore): resume is bit-identical only in it.
        spec, graph = self.spec, self.graph
        torch.manual_seed(spec.seed)
        act = activation_of(graph.output.layer, len(graph.output.shape))
        self.data = prepare(spec, SplitOptions.of(graph, act.fn if act is not None else None))
        if self.data.tokenizer is not None:  # its vocabulary fits the embedding's table
            check_vocab(self.data.tokenizer, graph)
        check_training_ids(graph, self.data)  # before torch meets a float or an unknown id
        for note in self.data.notes:
            self.log(f"note: {note}")
        if graph.dynamic:  # the data's length fills the time axis: checked and measured at it
            self.graph = graph = at_data_length(graph, self.data.train.x.shape[1:])
        data_bytes = sum(map(held_bytes, (self.data.train, self.data.val, self.data.test)))
        check_memory(graph, spec, self.device, data_bytes, force=self.force)
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
            loaded = init_from(self.module, spec.init, graph.file)
            self.log(f"init: loaded {len(loaded)} layers from {spec.init.from_}")
        self.loss_fn = choose_loss(
            spec, self.data.task, self.data.classes, graph, lambda: self.data.train.y
        ).to(self.device)
        # Class losses take the logits (the head is fused into the loss); regression losses
        # compare what the network outputs, its final activation included.
        self.logits = self.loss_fn.on_logits
        self._train_forward = self._forward
        # Rank r's own seed offset: its dropout, tiles and augmentation differ from the others'.
        rank_seed = 0
        if self.dist is not None:
            rank_seed = RANK_SEED * self.dist.rank
            self._train_forward = wrap_data_parallel(
                self.module, self.logits, self.dist, spec.sync_batchnorm, self.log
            )
            torch.manual_seed(spec.seed + rank_seed)
        # Streamed splits: decoded by worker processes, in the order the batches are drawn here.
        feeder = feeder_of(self.data, spec.data.workers, self.device)
        self.scorer = Scorer(
            self.module, self.data.preprocessing, self.device, self.logits,
            self.channels_last, self.bf16, feeder,
        )  # fmt: skip
        self.norm = self.scorer.norm  # one Normalizer for training and scoring
        self.x_train, self.y_train = self._tensors(self.data.train)
        self.val = self._tensors(self.data.val) if self.data.val is not None else None
        self.test = self._tensors(self.data.test) if self.data.test is not None else None
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.opt = make_optimizer(spec, self.trainable)
        # Segmentation scenes larger than the input give several random tiles each per epoch.
        self.per_scene = self.data.tiles_per_scene if self.data.random_tiles else 1
        self.crops = torch.Generator().manual_seed(spec.seed + 2 + rank_seed)
        n = self.n_train = len(self.y_train) * self.per_scene
        self.steps = (
            max(1, n // spec.batch_size)
            if n % spec.batch_size == 1
            else max(1, math.ceil(n / spec.batch_size))
        )
        self.sched, self.sched_when = make_schedule(spec, self.opt, self.steps)
        self.shuffle = torch.Generator().manual_seed(spec.seed)
        # Image input for an enabled augmenter was checked when the spec was compiled.
        self.augment = Augmenter(spec.augment, seed=spec.seed + 1 + rank_seed, device=self.device)
        self.metric_names = default_metrics(self.data.task, spec.metrics)
        self.metrics = make_metrics(self.metric_names, self.data.task, self.data.classes)
        self.reg = regularizers(self.module, spec.regularize)
        train = (self.x_train, self.y_train)
        self.examples = Examples(self.scorer, self.data, train, self.val, self.test, self.crops)
        self._start_or_resume()

    def _start_or_resume(self) -> None:
        """A fresh RunState, or the saved one with its optimizer and random streams restored."""
        spec, self.state = self.spec, RunState()
        self.hash = spec_hash(self.graph)
        if self.resume and run_files.nothing_saved(self.layout):
            # Stopped before its first checkpoint: starting over is resuming it (same seeds).
            self.log(f"note: {self.run_dir} saved no epoch: training starts at epoch 1")
        elif self.resume:
            self.state = restore_state(self._last, self._resumable(), self.hash)
            self.augment = restore_rank_rng(
                self.dist, self._last, self.crops, self.augment, spec, self.state.epoch, self.log
            )
            self.log(f"resumed {self.run_dir} after epoch {self.state.epoch}")
        self.saved_epoch = self.state.epoch  # the epoch in checkpoint/last.safetensors

    def _tensors(self, data: ArrayData) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scorer.tensors(data, self.data.task)

    def _batches(self, n: int, bs: int, perm: torch.Tensor | None, fold: int = 2):
        # A batch of one breaks batchnorm: it joins the previous batch (distributed: a last
        # batch that would leave a rank with fewer than 2 samples).
        for part in batch_slices(n, bs, fold):
            yield perm[part] if perm is not None else part

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward_logits(x) if self.logits else self.module(x)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return self.scorer.prep(x)

    def _batch(
        self, idx: torch.Tensor, raw: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch (`raw`: its samples as loaded, or samples and labels decoded
        together, tiles already cut): normalized, in the model's layout, augmented."""
        if isinstance(raw, tuple):
            xb, yb = self._prep(raw[0]), raw[1]
        elif self.data.random_tiles:
            xb, yb = random_tiles(self.x_train, self.y_train, idx, self.data.tile, self.crops)
            xb = self._prep(xb)
        else:
            xb = self._prep(raw)
            yb = self.y_train[idx]
        if self.augment.enabled:
            # Masks get the very same flips, symmetries and shifts as their images.
            xb, mask = self.augment(xb, yb if yb.ndim == 3 else None)
            yb = mask if mask is not None else yb
        return xb, yb

    def _raws(self, idxs: list[torch.Tensor]) -> Iterable[Any]:
        """What each batch is made from: its samples (decoded ahead by the workers when
        streamed), its samples and masks decoded together (streamed masks; random tiles drawn
        here, in the order `random_tiles` draws them, and cut by the workers), or its indices."""
        x, y, tile = self.x_train, self.y_train, self.data.tile
        if isinstance(x, Streamed) and isinstance(y, Streamed):
            cuts = None
            if self.data.random_tiles:
                scene = (int(x.shape[2]), int(x.shape[3]))
                cuts = [tile_cut(len(i), scene, tile, self.crops) for i in idxs]  # type: ignore[arg-type]
            return x.pairs(y, idxs, cuts)
        return batched(x, idxs) if not self.data.random_tiles else idxs

    def train_epoch(self) -> dict[str, float]:
        m = self.module
        m.train()  # frozen batchnorms keep using their running statistics (see the lowering)
        self.metrics.reset()
        perm = torch.randperm(self.n_train, generator=self.shuffle)
        if self.per_scene > 1:
            perm = perm % len(self.y_train)  # each scene per_scene times, in random order
        streamed = isinstance(self.x_train, Streamed)
        perm = perm if streamed else perm.to(self.device)  # streamed: the loader's indices
        total = torch.zeros((), device=self.device)
        seen = 0
        t0 = time.perf_counter()
        bar = self._bar()
        d = self.dist
        fold = 2 if d is None else 2 * d.world
        # Every batch drawn first (this rank's share of it under DDP): a streamed split's
        # workers decode them ahead, in this order.
        globals_ = list(self._batches(self.n_train, self.spec.batch_size, perm, fold))
        idxs = [d.shard(idx) for idx in globals_] if d is not None else globals_
        raws = self._raws(idxs)
        try:
            for step, (idx, raw) in enumerate(zip(idxs, raws)):
                n_global = globals_[step].shape[0]
                xb, yb = self._batch(idx, raw)
                with self._autocast():
                    out = self._train_forward(xb)
                    loss = self.loss_fn(out, yb)
                if self.reg:
                    loss = loss + sum(
                        (l1 * p.abs().sum() if l1 else 0) + (l2 * p.pow(2).sum() if l2 else 0)
                        for p, l1, l2 in self.reg
                    )
                self.opt.zero_grad(set_to_none=True)
                if d is not None and idx.shape[0] * d.world != n_global:
                    # DDP averages the ranks' gradients; with unequal shares (the last batch)
                    # each rank's mean is weighted by its share, so the step is the global mean's.
                    (loss * (idx.shape[0] * d.world / n_global)).backward()
                else:
                    loss.backward()
                self.opt.step()
                if self.sched is not None and self.sched_when == "batch":
                    self.sched.step()
                bs = yb.shape[0]
                total += loss.detach() * bs
                seen += bs
                self.metrics.update(self.norm.units(out.detach()), self.norm.units(yb))
                if bar is not None and (step % 5 == 0 or step == self.steps - 1):
                    bar(step + 1, float(total) / seen, seen / (time.perf_counter() - t0))
        finally:  # also on Ctrl-C, so the terminal is left clean
            if bar is not None:
                bar(None, 0, 0)
        if d is not None:  # the loss and metrics of the whole epoch, over every rank's share
            total_f, seen_f = d.sum([total, seen])
            total, seen = torch.tensor(total_f), int(seen_f)
            self.metrics.sum_across(d.all_reduce, self.device)
        loss_value = float(total) / max(seen, 1)
        if self.spec.callbacks.stop_on_nan and not math.isfinite(loss_value):
            self.state.stopped = f"the training loss is {loss_value}"
        row = {"loss": loss_value, **self.metrics.compute()}
        row["samples_per_s"] = seen / (time.perf_counter() - t0)
        return row

    @torch.inference_mode()
    def evaluate(
        self,
        x: torch.Tensor | Streamed,
        y: torch.Tensor | Streamed,
        batch_size: int | None = None,
    ) -> dict[str, float]:
        """Loss and metrics of the current weights on raw `x` (scoring.score, split by rank)."""
        # Per-pixel outputs are large: a few dozen tiles at a time keep memory flat.
        batch_size = batch_size or (32 if self.data.task == "segmentation" else 512)
        m = self.module
        m.eval()
        self.metrics.reset()
        if self.dist is not None:  # each rank scores its part; the sums make the whole set's
            self.dist.rank0_buffers(m)
            part = self.dist.span(len(y))
            x, y = rows(x, part), rows(y, part)
        total = loss_sum(self.scorer, x, y, self.loss_fn, self.metrics, batch_size)
        count = len(y)
        if self.dist is not None:
            total, count = self.dist.sum([total, count])
            self.metrics.sum_across(self.dist.all_reduce, self.device)
        return {"loss": total / max(count, 1), **self.metrics.compute()}

    def probabilities(self, data: ArrayData) -> np.ndarray:
        """Class probabilities of `data` with the current weights (scoring.probabilities)."""
        return probabilities(self.scorer, data)

    def _bar(self):
        if not self.progress:
            return None
        return progress_bar(self.state.epoch + 1, self.spec.epochs, self.steps)

    # the loop
    def fit(self) -> dict[str, Any]:
        spec = self.spec
        # First: a missing tensorboard package stops the run before it writes anything.
        board = self._board() if spec.log.tensorboard and self.writer else None
        if self.writer:
            write_start(self.layout, self._meta(), self.spec_text, self.summary_text)
        monitor = monitor_of(spec.callbacks)
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
                self._after_epoch(row)
                self._save_epoch()
                self.log(epoch_line(row, spec.epochs))
                if board is not None:
                    board.epoch(row)
                if self.on_epoch is not None:
                    self.on_epoch(row)
            if self.state.stopped:
                self.log(f"stopped: {self.state.stopped}")
        except KeyboardInterrupt:
            if board is not None:
                board.close()
            # Not state.epoch: it counts an epoch whose checkpoint may not have been written.
            raise run_files.interrupted(self.run_dir, self.saved_epoch, final=False) from None
        except BaseException:
            if board is not None:
                board.close()
            raise
        try:
            result = self._finish()
            if board is not None:  # the test scores and the hparams, once the run is done
                board.finish(result.get("test"), self.spec.model_dump(mode="json"))
            return result
        except KeyboardInterrupt:
            raise run_files.interrupted(self.run_dir, self.saved_epoch, final=True) from None
        finally:
            if board is not None:
                board.close()

    def _board(self) -> Board:
        graph = self.graph
        return Board(
            self.layout,
            epoch=self.state.epoch,
            module=self.module,
            # A dynamic time axis: traced at the data's length.
            input_shape=self.data.train.x.shape[1:] if graph.dynamic else graph.input_shape,
            device=self.device,
            spec_file=self.graph.file,
            task=self.data.task,
            classes=self.data.classes or (),
            name=self.graph.name,
            rgb=self.spec.data.rgb_bands,
            sample=self.examples.sample,
            log=self.log,
            spec_text=self.spec_text,
        )

    def _after_epoch(self, row: dict[str, float]) -> None:
        after_epoch(
            self.spec.callbacks,
            self.state,
            row,
            module=self.module,
            opt=self.opt,
            sched=self.sched,
            sched_when=self.sched_when,
            sched_monitor=self.spec.schedule.monitor if self.spec.schedule else None,
            run_dir=self.run_dir if self.writer else None,
        )

    # persistence (run_files.py) and the end-of-run reports (run_report.py)
    def _meta(self) -> RunMeta:
        return run_files.run_meta(self.graph, self.data, self.module.head, self.hash)

    @property
    def _last(self) -> Path:
        return self.layout.last

    def _resumable(self) -> Resumable:
        return Resumable(
            self.module, self.opt, self.sched, self.shuffle, self.crops, self.augment, self.device
        )

    def _save_epoch(self) -> None:
        if self.spec.callbacks.checkpoint.last:  # off: no resumable state is kept
            ranks = None
            if self.dist is not None:
                ranks = self.dist.gather_rng(rank_rng(self.crops, self.augment, self.device))
            if self.writer:
                run_files.save_checkpoint(
                    self.layout, self._resumable(), self.state, self.hash, ranks
                )
            self.saved_epoch = self.state.epoch
        if self.spec.callbacks.csv_log and self.writer:
            run_files.save_history(self.layout, self.state.history)

    def _per_class(self) -> dict[str, dict[str, float | None]]:
        return run_report.per_class(self.metrics.per_class(), self.data.classes or ())

    def _finish(self) -> dict[str, Any]:
        st, cb = self.state, self.spec.callbacks
        if self.dist is not None:
            self.dist.barrier()  # rank 0 has written best.safetensors
        if cb.early_stopping and cb.early_stopping.restore_best and self.layout.best.is_file():
            load_weights(self.module, checkpoint.load(self.layout.best)[0])
            self.log(f"restored the best weights (epoch {st.best_epoch})")
        if self.writer:
            run_files.save_model(self.layout, self.module, self._meta())
        result: dict[str, Any] = {"epochs": st.epoch}
        best_row = next((r for r in st.history if r["epoch"] == st.best_epoch), None)
        if best_row is not None:
            result["best"] = {k: v for k, v in best_row.items() if k not in ("time_s",)}
        seg = self.data.task == "segmentation"
        if self.test is not None:
            result["test"] = self.evaluate(*self.test)
            self.log("test: " + "  ".join(f"{k} {v:.4f}" for k, v in result["test"].items()))
            if seg:
                result["test_per_class"] = self._per_class()
                self.log("test per class: " + per_class_line(result["test_per_class"]))
        if seg and self.val is not None:
            self.evaluate(*self.val)
            result["val_per_class"] = self._per_class()
            self.log("val per class: " + per_class_line(result["val_per_class"]))
        result["stopped"] = st.stopped
        result["history"] = st.history
        if not self.writer:
            return result
        run_files.save_metrics(self.layout, result)
        self._reports(result)
        self.log(f"run saved in {self.run_dir}")
        return result

    def _reports(self, result: dict[str, Any]) -> None:
        spec, data = self.spec, self.data
        pics = run_report.Pictures(
            self.layout, self.graph.name, data.classes or (), spec.data.rgb_bands, self.log
        )
        output = tuple(self.graph.output.shape)
        terms = spec.loss.terms if spec.loss else (default_loss(data.task, output),)
        run_report.write(pics, spec, self.examples, self.state, run_report.loss_name(terms), result)
