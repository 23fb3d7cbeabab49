"""The training loop: the seed's algorithm, plus what makes it safe to run for real.

One step (Ho et al. 2020, Algorithm 1), exactly what the seed's loop does:

    x0 ~ data,  eps ~ N(0, I),  t ~ Uniform{0, ..., T-1}
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps       (eq. 4: scheduler.add_noise)
    loss = mean || eps - eps_theta(x_t, t) ||^2                    (eq. 14, the "simple" loss)
    AdamW step on loss; then the EMA of the weights, which is what we sample with.

Around it: ``TrainConfig`` (every knob), ``EMA``, ``TrainingDoctor`` (NaN, loss stuck at 1,
loss not falling), a progress bar, callbacks, and checkpoints with exact resume (the file
format and the ``.safetensors`` export live in checkpoints.py, re-exported here).

Determinism: every random draw of step s (the batch, eps, t, dropout) comes from generators
seeded by (seed, s) alone. A run stopped at any step and resumed from its checkpoint
therefore ends with the same weights, bit for bit, as one that never stopped.
"""

import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from copy import deepcopy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import export_weights, load_checkpoint, load_model, load_pretrained, save_checkpoint  # noqa: F401
from .config import default_device
from .scheduler import DDPMScheduler
from .unet import autocast_context

NUM_BUCKETS = 10  # loss_by_timestep splits 0..T-1 into this many equal ranges of t


@dataclass
class TrainConfig:
    num_steps: int | None = 4000  # optimizer steps in total (None: until time_budget_s runs out)
    batch_size: int = 64  # images per step; on a CPU, more (smaller) steps per minute learn faster
    learning_rate: float = 1e-3  # AdamW peak lr (the seed uses 4e-4; warmup makes 1e-3 safe)
    warmup_steps: int = 100  # lr rises linearly from 0 over these steps, then stays constant
    weight_decay: float = 0.01  # AdamW's default, as in the seed
    grad_clip: float = 1.0  # clip the gradient norm to this (None: no clipping)
    ema_decay: float = 0.999  # EMA of the weights; the decay warms up as (1 + n) / (10 + n)
    seed: int = 0  # every random draw of step s is a function of (seed, s)
    num_train_timesteps: int = 1000  # T, as in the seed's DDPMScheduler
    beta_schedule: str = "squaredcos_cap_v2"  # the seed's schedule (cosine, Nichol & Dhariwal 2021)
    checkpoint_every: int = 500  # save a checkpoint every this many steps (needs checkpoint_path)
    checkpoint_every_s: float | None = 120.0  # ... and at least every this many seconds
    log_every: int = 50  # call the doctor and the callbacks every this many steps
    time_budget_s: float | None = None  # stop after this many seconds ("train for 10 minutes")
    device: str | None = None  # None: CUDA if present, else CPU (config.default_device)
    bf16: bool | str = "auto"  # "auto": bf16 autocast where the hardware has it; True/False force it

    def __post_init__(self):
        if self.num_steps is None and self.time_budget_s is None:
            raise ValueError("give num_steps or time_budget_s (or both), or training never stops.")
        if self.batch_size < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("batch_size, log_every and checkpoint_every must be positive ints.")


class EMA:
    """Exponential moving average of a model's parameters (what we sample with).

    After each optimizer step: ema = d * ema + (1 - d) * param, with d = ``decay`` or, with
    ``warmup=True``, min(decay, (1 + n) / (10 + n)) after n updates (TensorFlow's
    ExponentialMovingAverage with num_updates), so the average soon forgets the random init.
    """

    def __init__(self, model, decay=0.999, warmup=True):
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    def current_decay(self):
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model):
        d = self.current_decay()
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1 - d)  # d * ema + (1 - d) * p
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model):
        """Overwrite ``model``'s parameters with the averaged ones."""
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name])

    def state_dict(self):
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": dict(self.shadow)}

    def load_state_dict(self, state):
        self.decay, self.warmup, self.num_updates = state["decay"], state["warmup"], state["num_updates"]
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)


@dataclass
class TrainState:
    """Everything a run has: the live objects and its history (``train`` returns one)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    scheduler: DDPMScheduler
    config: TrainConfig
    step: int = 0  # optimizer steps done
    losses: list = field(default_factory=list)  # one float per step
    bucket_sums: list = field(default_factory=lambda: [0.0] * NUM_BUCKETS)  # decayed loss sums per t range
    bucket_counts: list = field(default_factory=lambda: [0.0] * NUM_BUCKETS)  # decayed sample counts
    images_seen: int = 0
    elapsed: float = 0.0  # seconds of training, summed over resumed runs
    interrupted: bool = False  # stopped by Ctrl-C (after finishing the step and saving)

    @property
    def loss_by_timestep(self):
        """Mean loss in each of NUM_BUCKETS ranges of t, averaged over the last ~100 steps."""
        return [s / c if c > 0 else float("nan") for s, c in zip(self.bucket_sums, self.bucket_counts)]

    @property
    def smoothed_loss(self):
        """The last point of the smoothed loss curve (over the last 500 steps at most)."""
        return smooth(self.losses[-500:])[-1] if self.losses else float("nan")

    @property
    def ema_model(self):
        """A copy of the model holding the EMA weights, in eval mode: sample with this."""
        model = deepcopy(self.model).eval()
        self.ema.copy_to(model)
        return model


def smooth(values, beta=None):
    """Bias-corrected exponential moving average of a list (as in Adam): the smoothed curve.
    ``beta=None`` averages over ~1/20 of the list (beta = 1 - 20 / len), at most 0.98."""
    if beta is None:
        beta = min(0.98, max(0.0, 1 - 20 / max(len(values), 1)))
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


class TrainingWarning(UserWarning):
    """The TrainingDoctor's warnings: training runs, but probably not the way you want."""


class TrainingDoctor:
    """Spots the classic failures early and says what to do (called every ``log_every`` steps)."""

    def __init__(self, stuck_after=300, window=100):
        self.stuck_after, self.window, self.warned = stuck_after, window, set()

    @staticmethod
    def check_batch(clean_images):
        low, high = clean_images.min().item(), clean_images.max().item()
        if low < -1.01 or high > 1.01:
            raise ValueError(f"training images span [{low:.3g}, {high:.3g}] but must be in [-1, 1] like the "
                             "noise scale assumes; map [0, 1] images with 2 * x - 1 (data.to_model_range).")

    def __call__(self, state):
        losses, step = state.losses, state.step
        if losses and not math.isfinite(losses[-1]):
            raise FloatingPointError(
                f"loss is {losses[-1]} at step {step}. Usual causes: learning rate too high (try "
                f"{state.config.learning_rate / 10:g}, or more warmup_steps); bf16 overflow (try bf16=False); "
                "images not in [-1, 1]. Resume from the last checkpoint after fixing it.")
        w = min(self.window, len(losses) // 3)
        if step < self.stuck_after or w == 0:
            return
        first, last = np.mean(losses[:w]), np.mean(losses[-w:])
        if abs(last - 1.0) < 0.1:
            self._warn("stuck", f"loss is still {last:.3f} after {step} steps: that is what predicting zeros "
                       "scores (E[eps^2] = 1). Is the model output wired to its input and to t? Is the "
                       "learning rate too small?")
        elif last >= first:
            self._warn("flat", f"loss is not falling: mean of the last {w} steps {last:.3f} >= first {w} "
                       f"steps {first:.3f}. Try a lower learning rate or check the data.")

    def _warn(self, key, message):
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, TrainingWarning, stacklevel=3)


def _seed_for(*keys):
    """A 63-bit seed that is a pure function of the integer keys (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32).astype(np.uint64)
               .dot([1 << 31, 1]))


@lru_cache(maxsize=2)
def _epoch_permutation(n, seed, epoch):
    return torch.randperm(n, generator=torch.Generator().manual_seed(_seed_for(seed, 1, epoch)))


def batch_indices(n, batch_size, seed, step):
    """Dataset indices of step ``step``'s batch: consecutive slices of a fresh permutation per
    epoch (each image once per epoch; the last partial batch is dropped). Pure in (seed, step)."""
    if n < batch_size:  # a tiny dataset: draw with replacement
        return torch.randint(n, (batch_size,), generator=torch.Generator().manual_seed(_seed_for(seed, 2, step)))
    epoch, i = divmod(step, n // batch_size)
    return _epoch_permutation(n, seed, epoch)[i * batch_size:(i + 1) * batch_size]


def _get_batch(dataset, indices):
    """(B, C, H, W) clean images: a slice of the pre-rendered tensor when the dataset has one."""
    if isinstance(getattr(dataset, "images", None), torch.Tensor):
        return dataset.images[indices]
    return torch.stack([dataset[i]["images"] for i in indices.tolist()])


def learning_rate_at(step, config):
    """Linear warmup from 0 to ``learning_rate`` over ``warmup_steps``, then constant."""
    return config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))


def _precision_context(config, device):
    if config.bf16 == "auto":
        return autocast_context(device)
    return torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else nullcontext()


def train_step(state, dataset, device):
    """One optimizer step of the seed's algorithm; returns the loss (a float)."""
    model, cfg, T = state.model, state.config, state.scheduler.num_train_timesteps
    generator = torch.Generator().manual_seed(_seed_for(cfg.seed, 0, state.step))
    # 1. the batch, the noise eps and one timestep per image: drawn on the CPU, same on any device
    clean_images = _get_batch(dataset, batch_indices(len(dataset), cfg.batch_size, cfg.seed, state.step))
    noise = torch.randn(clean_images.shape, generator=generator)  # (B, C, H, W)
    timesteps = torch.randint(0, T, (clean_images.shape[0],), generator=generator)  # (B,)
    clean_images, noise, timesteps = clean_images.to(device), noise.to(device), timesteps.to(device)
    # 2. forward: x_t, then the model's guess of eps; dropout draws from a seeded global RNG
    noisy_images = state.scheduler.add_noise(clean_images, noise, timesteps)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _precision_context(cfg, device):
        torch.manual_seed(_seed_for(cfg.seed, 3, state.step))
        noise_pred = model(noisy_images, timesteps, return_dict=False)[0]  # ours and diffusers' UNet2DModel
    # 3. the loss per image (for loss_by_timestep) and its mean, the seed's F.mse_loss, in fp32
    loss_per_image = (noise_pred.float() - noise).pow(2).mean(dim=(1, 2, 3))  # (B,)
    loss = loss_per_image.mean()
    # 4. backward, clip, AdamW step at this step's learning rate, EMA
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate_at(state.step, cfg)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(model)
    # 5. bookkeeping: exponentially weighted (0.99 per step) loss sums per range of t
    buckets = (timesteps * NUM_BUCKETS // T).cpu()
    sums = torch.bincount(buckets, loss_per_image.detach().cpu().double(), NUM_BUCKETS)
    counts = torch.bincount(buckets, minlength=NUM_BUCKETS)
    state.bucket_sums = [0.99 * s + x for s, x in zip(state.bucket_sums, sums.tolist())]
    state.bucket_counts = [0.99 * c + x for c, x in zip(state.bucket_counts, counts.tolist())]
    state.step += 1
    state.images_seen += clean_images.shape[0]
    state.losses.append(loss.item())
    return state.losses[-1]


@contextmanager
def _stop_on_ctrl_c():
    """Turn the first Ctrl-C into a request to stop after the current step; a second one aborts."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nCtrl-C: finishing this step and saving; press Ctrl-C again to abort at once.")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def train(model, dataset, config=None, scheduler=None, checkpoint_path=None, resume=True, callbacks=(),
          doctor=None, progress=True):
    """Train ``model`` to predict the noise in ``dataset``'s images (items ``{"images": (C, H, W)}``
    in [-1, 1]); returns a ``TrainState``. With ``checkpoint_path``, saves there every
    ``checkpoint_every`` steps / ``checkpoint_every_s`` seconds and at the end, and (``resume``)
    continues from it when it exists. Each callback ``cb(state)`` runs every ``log_every`` steps.
    Ctrl-C stops cleanly after the current step (saving first). ``doctor``: a TrainingDoctor
    (default) or any ``doctor(state)``; ``progress``: show a tqdm bar with loss and images/s."""
    config = config or TrainConfig()
    device = default_device(config.device)
    model.to(device).train()
    scheduler = scheduler or DDPMScheduler(config.num_train_timesteps, beta_schedule=config.beta_schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    state = TrainState(model, optimizer, EMA(model, config.ema_decay), scheduler, config)
    if checkpoint_path is not None and resume and Path(checkpoint_path).exists():
        _restore(state, load_checkpoint(checkpoint_path, model=model))
    doctor = doctor or TrainingDoctor()
    first_batch = batch_indices(len(dataset), config.batch_size, config.seed, state.step)
    TrainingDoctor.check_batch(_get_batch(dataset, first_batch))
    total, saved_step = config.num_steps, state.step
    start_time = last_save = time.perf_counter()
    start_elapsed, start_images = state.elapsed, state.images_seen
    bar = tqdm(total=total, initial=state.step, disable=not progress, unit="step", dynamic_ncols=True)
    with _stop_on_ctrl_c() as stop, bar:
        while (total is None or state.step < total) and not stop.is_set():
            loss = train_step(state, dataset, device)
            now = time.perf_counter()
            state.elapsed = start_elapsed + now - start_time
            images_per_s = (state.images_seen - start_images) / max(now - start_time, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{state.smoothed_loss:.4f}", img_s=f"{images_per_s:.0f}", refresh=False)
            if state.step % config.log_every == 0 or not math.isfinite(loss):
                doctor(state)
                for callback in callbacks:
                    callback(state)
            due = state.step % config.checkpoint_every == 0 or (
                config.checkpoint_every_s is not None and now - last_save >= config.checkpoint_every_s)
            if checkpoint_path is not None and due:
                save_checkpoint(checkpoint_path, state)
                saved_step, last_save = state.step, time.perf_counter()
            if config.time_budget_s is not None and now - start_time >= config.time_budget_s:
                break
        state.interrupted = stop.is_set()
    if checkpoint_path is not None and saved_step != state.step:
        save_checkpoint(checkpoint_path, state)
    return state


def _restore(state, checkpoint):
    """Put a loaded checkpoint's optimizer, EMA and history into ``state`` (weights: load_checkpoint)."""
    names = ("seed", "batch_size", "learning_rate", "warmup_steps", "beta_schedule", "ema_decay")
    changed = [name for name in names if checkpoint["train_config"].get(name) != getattr(state.config, name)]
    if changed:
        warnings.warn(f"resuming with different {changed} than the checkpoint: the run will not match an "
                      "uninterrupted one.", TrainingWarning, stacklevel=3)
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.ema.load_state_dict(checkpoint["ema"])
    for key in ("step", "images_seen", "elapsed", "losses", "bucket_sums", "bucket_counts"):
        setattr(state, key, checkpoint[key])
