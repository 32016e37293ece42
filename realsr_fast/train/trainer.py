"""`Trainer`: RealSR's ESRGAN training loop (docs/METHOD.md §7) on one device or many (torchrun + DDP).

Each iteration, as ESRGAN's `SRGAN_model.optimize_parameters`:
1. the loader's uint8 HR crops with their blur margin go to the device and the :class:`PairMaker`
   makes `(hr, lr)` there in the official order (blur, crop, flip both, real noise; `(b, 3, P/s,
   P/s)` float LR); from an offline dataset (`data.paired`) the loader brings the LR crops too and
   only the noise is added;
2. G step (D frozen): SR = G(LR); pixel + perceptual + RaGAN(D(HR) detached, D(SR));
3. D step: RaGAN_D(D(HR), D(SR detached));
4. both MultiStepLR schedulers step.
The PSNR mode has no D and no VGG: step 2 with the pixel loss alone.

Precision: fp32 as the official; `run.precision=bf16` (or `auto`: bf16 where the GPU supports it)
autocasts G, D and the VGG features (docs/OFFICIAL_RECIPE.md gives its measured effect on the
losses). CUDA: channels_last, optional torch.compile of G. Checkpoints every `run.checkpoint_every`
iterations, at the end, and when SIGINT/SIGTERM arrives (the step in flight finishes first);
`resume` continues exactly where one was written.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from realsr_fast import metrics
from realsr_fast.data.training_pairs import PairMaker, kernel_context
from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write
from realsr_fast.models.discriminators import build_discriminator
from realsr_fast.models.formats import check_state_dict
from realsr_fast.models.loading import load_model
from realsr_fast.models.rrdbnet import RRDBNet
from realsr_fast.models.vgg import build_vgg
from realsr_fast.train import checkpoint as ckpt
from realsr_fast.train.batches import (
    StreamSampler,
    ValidationImage,
    build_degrader,
    crop_dataset,
    crop_stream,
    paired_validation_set,
    validation_set,
)
from realsr_fast.train.config import TrainConfig, to_yaml
from realsr_fast.train.distributed import DistContext, any_rank, rank_seed, wrap
from realsr_fast.train.losses import LossWeights, PerceptualLoss, generator_losses, ragan_discriminator_loss

_STEP_SEED_STRIDE = 1 << 32


@dataclass
class TrainResult:
    """What a run did: the last iteration, its checkpoint, the logged losses and validations."""

    iteration: int
    checkpoint: ckpt.CheckpointFiles | None
    history: list[dict[str, float]] = field(default_factory=list)
    validations: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False


class Trainer:
    """Builds everything from a :class:`TrainConfig` (failing before any training on missing weights
    or data), optionally resumes, and trains with :meth:`train`.

    Args:
        config: the checked configuration.
        context: this process's rank and device (:func:`distributed.init_distributed`).
        resume: a run folder, its `checkpoints/` or a `state_N.pt` to continue from; None starts anew.
    """

    def __init__(self, config: TrainConfig, context: DistContext, resume: str | Path | None = None) -> None:
        self.config, self.context, self.device = config, context, context.device
        self.out = Path(config.run.out)
        self.gan = config.loss.mode == "gan"
        if config.data.batch % context.world_size:
            raise RealSRError(f"data.batch ({config.data.batch}) must be a multiple of the number of processes "
                              f"({context.world_size})")
        self.batch = config.data.batch // context.world_size
        self.amp_dtype = self._autocast_dtype()
        self.channels_last = config.run.channels_last
        torch.manual_seed(config.run.seed)
        np.random.seed(config.run.seed)
        # The order of the stages below is the order of their draws from the seeded RNGs.
        self._build_losses()
        self._build_data()
        self.validation = self._build_validation()
        self.generator = self._build_generator()
        self.discriminator = self._build_discriminator() if self.gan else None
        self._build_optimisers()
        self.iteration = 0
        if resume is not None:
            self._resume(ckpt.find_checkpoint(resume))

        compiled = torch.compile(self.generator) if config.run.compile else self.generator
        self.g_train = wrap(compiled, context)
        # Each rank keeps its own BatchNorm statistics: D runs several times per step, and DDP's
        # buffer broadcast would rewrite them in place between those calls.
        self.d_train = wrap(self.discriminator, context, broadcast_buffers=False) if self.discriminator is not None else None
        self._writer = None
        self._said_no_lpips = False

    # -- building ------------------------------------------------------------------------------
    def _build_losses(self) -> None:
        """`perceptual` (the VGG19 features, GAN mode) and the loss `weights`."""
        loss = self.config.loss
        perceptual_net = None
        if self.gan and loss.perceptual_weight > 0:  # first: a missing VGG file stops us before anything else
            perceptual_net = build_vgg(loss.vgg_weights, loss.vgg_random_init_test_only)
            if loss.vgg_random_init_test_only and self.context.is_main:
                warnings.warn("the perceptual loss uses a RANDOMLY INITIALISED VGG19 (loss.vgg_random_init_test_only): "
                              "for tests and smoke runs only, the results mean nothing", stacklevel=3)
        self.perceptual = PerceptualLoss(perceptual_net).to(self.device) if perceptual_net is not None else None
        self.weights = LossWeights(loss.pixel_weight, loss.perceptual_weight, loss.gan_weight)

    def _build_data(self) -> None:
        """The `degrader` (with its reseeded `degrade_generator`), the `crops` and, on the fly, the
        `pairs` maker."""
        data, scale = self.config.data, self.config.generator.scale
        self.degrade_generator = torch.Generator(device=self.device)
        self.degrader = build_degrader(data, scale, self.degrade_generator).to(self.device)
        self.pairs: PairMaker | None = None
        if data.paired is None:
            margin = kernel_context(self.degrader.kernels.shape[-1], scale)
            self.crops = crop_dataset(data, scale, margin)
            # per_image: the kernels `realsr dataset --seed {run.seed}` would give the same images
            self.pairs = PairMaker(self.degrader, data.kernel_draw, self.crops.count, self.config.run.seed).to(self.device)
        else:
            self.crops = crop_dataset(data, scale)

    def _build_validation(self) -> list[ValidationImage]:
        """The held-out pairs (on the main process, when `val.hr` and `val.every` are set)."""
        config = self.config
        if config.val.hr is None or not config.val.every or not self.context.is_main:
            return []
        if config.data.paired is not None:
            return paired_validation_set(config.val.hr, config.generator.scale, config.val.max_images, config.val.crop,
                                         self.device)
        fixed = torch.Generator(device=self.device).manual_seed(config.run.seed)
        val_degrader = build_degrader(config.data, config.generator.scale, fixed).to(self.device)
        return validation_set(config.val.hr, val_degrader, config.val.max_images, config.val.crop, self.device)

    def _autocast_dtype(self) -> torch.dtype | None:
        precision = self.config.run.precision
        if precision == "auto":
            cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            return torch.bfloat16 if cuda_bf16 else None
        return torch.bfloat16 if precision == "bf16" else None

    def _to_device(self, module: nn.Module) -> nn.Module:
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        return module.to(self.device, memory_format=memory_format)

    def _build_generator(self) -> RRDBNet:
        g = self.config.generator
        generator = RRDBNet(3, 3, g.nf, g.nb, g.gc, g.scale)
        if g.init is not None:
            state = load_model(g.init).state_dict()
            generator.load_state_dict(check_state_dict(state, generator.config(), g.init))
        return self._to_device(generator)

    def _build_discriminator(self) -> nn.Module:
        d = self.config.discriminator
        return self._to_device(build_discriminator(d.arch, d.ndf, d.n_layers))

    def _build_optimisers(self) -> None:
        """Adam and MultiStepLR for G, and for D in GAN mode."""
        optim = self.config.optim
        betas = tuple(optim.betas)
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=optim.lr_g, betas=betas)
        self.scheduler_g = torch.optim.lr_scheduler.MultiStepLR(self.optimizer_g, optim.milestones, optim.gamma)
        self.optimizer_d = self.scheduler_d = None
        if self.discriminator is not None:
            self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=optim.lr_d, betas=betas)
            self.scheduler_d = torch.optim.lr_scheduler.MultiStepLR(self.optimizer_d, optim.milestones, optim.gamma)

    def _resume(self, files: ckpt.CheckpointFiles) -> None:
        state = ckpt.load_state(files)
        weights = load_model(files.generator).state_dict()
        self.generator.load_state_dict(check_state_dict(weights, self.generator.config(), files.generator))
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        if self.discriminator is not None:
            if state.get("optimizer_d") is None:
                raise RealSRError(f"{files.state} comes from a PSNR-mode run (no discriminator); start the GAN "
                                  f"stage anew with generator.init={files.generator}")
            ckpt.load_module(files.discriminator, self.discriminator)
            self.optimizer_d.load_state_dict(state["optimizer_d"])
            self.scheduler_d.load_state_dict(state["scheduler_d"])
        ckpt.restore_rng_states(state["rng"])
        self.iteration = int(state["iteration"])

    # -- one step --------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def degrade(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader batch -> `(hr, lr)` float on the device, `(b, 3, P, P)` and `(b, 3, P/s, P/s)`.

        On the fly the batch is `(crops with margin, image index)` and the :class:`PairMaker` makes
        the pairs; from an offline dataset it is an `(hr, lr)` uint8 pair whose LR the Degrader
        (scale 1 then) only adds noise to. The Degrader's generator is re-seeded from (seed, rank,
        iteration), so a resumed run draws what the uninterrupted one drew at the same iteration.
        """
        first, second = (t.to(self.device, non_blocking=True) for t in batch)
        self.degrade_generator.manual_seed(rank_seed(self.config.run.seed, self.context.rank) * _STEP_SEED_STRIDE + self.iteration)
        with torch.no_grad():
            hr_u8, lr = self.pairs(first, second) if self.pairs is not None else (first, self.degrader(second))
        return self._layout(hr_u8.float().div_(255)), self._layout(lr)

    def optimise(self, hr: torch.Tensor, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """One G step and (GAN mode) one D step on a pair batch; returns detached 0-d losses."""
        d_raw = self.discriminator
        if d_raw is not None:
            d_raw.requires_grad_(False)
        self.optimizer_g.zero_grad(set_to_none=True)
        with self._autocast():
            sr = self.g_train(lr)
            real = fake = None
            if d_raw is not None:
                fake = d_raw(sr)
                real = d_raw(hr).detach()
            losses = generator_losses(sr, hr, self.weights, self.perceptual, real, fake)
        losses["total"].backward()
        self.optimizer_g.step()
        self.scheduler_g.step()
        if d_raw is not None:
            d_raw.requires_grad_(True)
            self.optimizer_d.zero_grad(set_to_none=True)
            with self._autocast():
                real, fake = self.d_train(hr), self.d_train(sr.detach())
            losses["d"] = ragan_discriminator_loss(real, fake)
            losses["d"].backward()
            self.optimizer_d.step()
            self.scheduler_d.step()
            losses["d_real"], losses["d_fake"] = real.float().mean(), fake.float().mean()
        return {name: value.detach() for name, value in losses.items()}

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Make the pairs of a loader batch on the device (:meth:`degrade`), then :meth:`optimise`."""
        hr, lr = self.degrade(batch)
        return self.optimise(hr, lr)

    # -- the loop --------------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's loader batches from where the run stands (see `train.batches`)."""
        sampler = StreamSampler(len(self.crops), self.config.run.seed, self.context.rank, self.context.world_size,
                                self.iteration * self.batch)
        return iter(crop_stream(self.crops, sampler, self.batch, self.config.data.workers, self.device.type == "cuda"))

    def train(self) -> TrainResult:
        """Train up to `optim.iterations`; returns after the final (or the interrupting) checkpoint."""
        total, run = self.config.optim.iterations, self.config.run
        result = TrainResult(self.iteration, None)
        if self.iteration >= total:
            return result
        main = self.context.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.out / "config.yaml", "w") as f:
                f.write(to_yaml(self.config))
        batches = self.batches()
        started = time.perf_counter()
        with _StopRequests() as stop, tqdm(total=total, initial=self.iteration, disable=not (main and run.progress),
                                           desc="train", unit="it", dynamic_ncols=True) as bar:
            while self.iteration < total:
                losses = self.train_step(next(batches))
                self.iteration += 1
                bar.update(1)
                saved = False
                if self.iteration % run.log_every == 0 or self.iteration == total:
                    result.history.append(self._log(losses, bar))
                if self.iteration % run.checkpoint_every == 0 or self.iteration == total:
                    result.checkpoint, saved = self.save(), True
                if self.validation and self.iteration % self.config.val.every == 0:
                    result.validations.append(self.validate())
                if any_rank(stop.requested, self.context):
                    result.checkpoint = result.checkpoint if saved else self.save()
                    result.interrupted = True
                    if main:
                        tqdm.write(f"stopped at iteration {self.iteration}; resume with --resume")
                    break
        if self._writer is not None:
            self._writer.close()
        result.iteration = self.iteration
        if main and self.iteration > 0:
            seconds = time.perf_counter() - started
            tqdm.write(f"trained to iteration {self.iteration} in {seconds:.1f} s; checkpoints in {self.out / ckpt.CHECKPOINT_DIR}")
        return result

    def save(self) -> ckpt.CheckpointFiles | None:
        """Write a checkpoint of the current iteration (rank 0 only; others return None)."""
        if not self.context.is_main:
            return None
        state = {
            "optimizer_g": self.optimizer_g.state_dict(), "scheduler_g": self.scheduler_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict() if self.optimizer_d else None,
            "scheduler_d": self.scheduler_d.state_dict() if self.scheduler_d else None,
            "config": self.config.to_dict(),
        }
        return ckpt.save_checkpoint(self.out, self.iteration, self.generator, self.discriminator, state,
                                    self.config.run.keep_checkpoints)

    # -- reporting -------------------------------------------------------------------------------
    def _log(self, losses: dict[str, torch.Tensor], bar: tqdm) -> dict[str, float]:
        values = {name: float(value) for name, value in losses.items()}
        values["lr_g"] = self.optimizer_g.param_groups[0]["lr"]
        if self.context.is_main:
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("pixel", "perceptual", "gan", "d")})
            writer = self._tensorboard()
            if writer is not None:
                for name, value in values.items():
                    writer.add_scalar(f"train/{name}", value, self.iteration)
        return {"iteration": self.iteration, **values}

    def _tensorboard(self):
        if self._writer is None and self.config.run.tensorboard and self.context.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed, so no TensorBoard logs are written "
                              "(pip install 'realsr_fast[train]', or set run.tensorboard=false)", stacklevel=3)
                self.config.run.tensorboard = False
                return None
            self._writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
        return self._writer

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR / SSIM (Y channel, border = scale) and LPIPS when available, averaged over the held-out set."""
        scale, scores = self.config.generator.scale, {"psnr": [], "ssim": [], "lpips": []}
        writer = self._tensorboard()
        for index, pair in enumerate(self.validation):
            with self._autocast():
                sr = self.generator(self._layout(pair.lr)).float()
            sr_u8 = sr.clamp(0, 1).mul(255).round().to(torch.uint8)
            sr_image, hr_image = (x[0].permute(1, 2, 0).cpu().numpy() for x in (sr_u8, pair.hr))
            scores["psnr"].append(metrics.psnr(sr_image, hr_image, crop_border=scale))
            scores["ssim"].append(metrics.ssim(sr_image, hr_image, crop_border=scale))
            distance = metrics.lpips_distance(sr_image, hr_image, crop_border=scale, device=str(self.device))
            if distance is not None:
                scores["lpips"].append(distance)
            if writer is not None and index == 0:
                lr_big = F.interpolate(pair.lr.float().clamp(0, 1), scale_factor=scale, mode="nearest")
                row = torch.cat([lr_big, sr_u8.float() / 255, pair.hr.float() / 255], dim=3)[0]
                writer.add_image(f"val/{pair.name} (LR | SR | HR)", row.cpu(), self.iteration)
        if not scores["lpips"] and not self._said_no_lpips:
            self._said_no_lpips = True
            tqdm.write(f"validation without LPIPS: {metrics.lpips_unavailable_reason()}")
        means = {name: float(np.mean(values)) for name, values in scores.items() if values}
        if writer is not None:
            for name, value in means.items():
                writer.add_scalar(f"val/{name}", value, self.iteration)
        tqdm.write(f"iteration {self.iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return {"iteration": self.iteration, **means}


class _StopRequests:
    """Within the block, SIGINT and SIGTERM only set `requested` (the loop saves and stops); a second
    Ctrl-C interrupts at once. Outside the main thread no handler is installed."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write(f"{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
                   "(Ctrl-C again to stop at once)", file=sys.stderr)

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
