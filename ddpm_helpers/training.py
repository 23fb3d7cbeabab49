"""The training loop: the seed's algorithm, plus what makes it safe to run for real.

One step (Ho et al. 2020, Algorithm 1), exactly what the seed's loop does:

    x0 ~ data,  eps ~ N(0, I),  t ~ Uniform{0, ..., T-1}
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps       (eq. 4: scheduler.add_noise)
    loss = mean || eps - eps_theta(x_t, t) ||^2                    (eq. 14, the "simple" loss)
    AdamW step on loss; then the EMA of the weights, which is what we sample with.

By default each image's term of the mean is weighted by min(SNR_t, 5) / SNR_t (min-SNR-gamma,
Hang et al. 2023: the nearly clean images count less), which learned faster per CPU-minute
in benchmarks/bench_quality_curve.py; ``min_snr_gamma=None`` is the seed's plain mean. And t is
drawn logit-normal rather than uniform (``draw_timesteps``: the middle noise levels more often),
which drew more clear digits from the same images; ``timestep_logit_std=None`` is the seed's uniform t.

A class-conditional model (one with ``config.num_class_embeds``: K classes + 1 "no label")
is called ``eps_theta(x_t, t, y)``; a share ``label_dropout`` of the labels y is replaced by
"no label", so the same network also learns the unconditional eps_theta(x_t, t, null) that
classifier-free guidance needs (Ho & Salimans 2022, Algorithm 1).

Around it: ``TrainConfig`` (every knob), ``EMA``, ``TrainingDoctor`` (NaN, loss stuck at 1,
loss not falling), a progress bar, callbacks, and checkpoints with exact resume (the file
format and the ``.safetensors`` export live in checkpoints.py, re-exported here). Devices,
mixed precision and several processes: parallel.py.

Determinism: every random draw of step s (the batch, eps, t, the label dropout, random flips)
comes from generators seeded by (seed, s) alone, drawn for the whole batch whatever the
number of processes. A run stopped at any step and resumed from its checkpoint therefore ends
with the same weights, bit for bit, as one that never stopped (with the same number of
processes). Only dropout inside the model depends on the process count: each process draws
the masks of its own slice of the batch.
"""

import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _train_checks, parallel
from .config import default_device
from .checkpoints import (RANDOM_STREAM, export_weights, load_checkpoint, load_model,  # noqa: F401
                          load_pretrained, save_checkpoint)
from .doctor import TrainingDoctor, TrainingWarning, smooth  # noqa: F401
from .scheduler import DDPMScheduler

NUM_BUCKETS = 10  # loss_by_timestep splits 0..T-1 into this many equal ranges of t


@dataclass
class TrainConfig:
    num_steps: int | None = 4000  # optimizer steps in total (None: until time_budget_s runs out)
    batch_size: int = 32  # images per step, all processes together; 32 learned faster per CPU-minute than 64
    # (bench_quality_curve.py: more, smaller steps at 95% of the images/s; the seed uses 64)
    learning_rate: float = 1e-3  # AdamW peak lr (the seed uses 4e-4; warmup makes 1e-3 safe)
    warmup_steps: int = 100  # lr rises linearly from 0 over these steps, then stays constant (0: no warmup)
    lr_cooldown: float | None = None  # the last share of the run, in which the lr falls linearly to 0 (None: it
    # stays constant; 1 gave clearer samples from 1,334 steps in bench_screen.py, not within 5 minutes on the curve)
    weight_decay: float = 0.01  # AdamW's default, as in the seed
    grad_clip: float | None = 1.0  # clip the gradient norm to this (None: no clipping)
    ema_decay: float = 0.999  # EMA of the weights; the decay warms up as (1 + n) / (10 + n)
    seed: int = 0  # every random draw of step s is a function of (seed, s)
    num_train_timesteps: int = 1000  # T, as in the seed's DDPMScheduler
    beta_schedule: str = "squaredcos_cap_v2"  # the seed's schedule (cosine, Nichol & Dhariwal 2021)
    label_dropout: float = 0.1  # class-conditional models: share of labels replaced by "no label"
    min_snr_gamma: float | None = 5.0  # min-SNR-gamma loss weights (see loss_weights); None: the seed's plain mean
    timestep_logit_std: float | None = 1.0  # t / T logit-normal with this spread (draw_timesteps); None: uniform
    checkpoint_every: int = 500  # save a checkpoint every this many steps (needs checkpoint_path)
    checkpoint_every_s: float | None = 120.0  # ... and at least every this many seconds
    log_every: int = 50  # call the doctor and the callbacks every this many steps
    time_budget_s: float | None = None  # stop after this many seconds ("train for 10 minutes")
    device: str | None = None  # None: CUDA if present, else Apple's MPS, else CPU (config.default_device)
    mixed_precision: str = "auto"  # "auto", "no" (float32), "bf16", "fp16" (GPU): see parallel.pick_mixed_precision
    bf16: bool | None = None  # the older spelling: True means mixed_precision="bf16", False means "no"

    def __post_init__(self):
        _train_checks.check_config(self)


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
    losses: list = field(default_factory=list)  # one float per step (the mean over the whole batch)
    bucket_sums: list = field(default_factory=lambda: [0.0] * NUM_BUCKETS)  # decayed loss sums per t range
    bucket_counts: list = field(default_factory=lambda: [0.0] * NUM_BUCKETS)  # decayed sample counts
    images_seen: int = 0
    elapsed: float = 0.0  # seconds of training, summed over resumed runs
    interrupted: bool = False  # stopped by Ctrl-C (after finishing the step and saving)
    num_processes: int = 1  # processes that trained together (torchrun / accelerate launch)
    is_main_process: bool = True  # the one process that writes checkpoints, logs and samples

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


def _seed_for(*keys):
    """A 63-bit seed that is a pure function of the non-negative integer keys: numpy's SeedSequence
    mixes them into 64 random bits, of which we keep the top 63 (exact integer arithmetic)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]) >> 1


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


def _get_batch(dataset, indices, seed, step, first=0):
    """(images (b, C, H, W), labels (b,) or None) of ``dataset[indices]``; a slice of the
    pre-rendered tensors when the dataset has them. Random transforms (a flip) draw from
    generators seeded by (seed, step, position in the batch; ``first`` is indices[0]'s)."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor):
        return images[indices], labels[indices] if isinstance(labels, torch.Tensor) else None
    items = []
    with torch.random.fork_rng(devices=[]):
        for j, i in enumerate(indices.tolist()):
            torch.manual_seed(_seed_for(seed, 4, step, first + j))
            items.append(dataset[i])
    if not all(isinstance(item, dict) and isinstance(item.get("images"), torch.Tensor) for item in items):
        raise TypeError(f"dataset items must be dicts {{'images': (C, H, W) tensor, 'labels': int}} like "
                        f"data.load_dataset's; got {type(items[0]).__name__}")
    labels = [item.get("labels") for item in items]
    labels = None if any(y is None for y in labels) else torch.stack([torch.as_tensor(y) for y in labels]).long()
    return torch.stack([item["images"] for item in items]), labels


def learning_rate_at(step, config, elapsed=0.0):
    """The lr of step ``step`` (0, 1, ...) taken ``elapsed`` seconds into this ``train()`` call: it rises
    linearly from 0 to ``learning_rate`` over ``warmup_steps``, then stays there; with ``lr_cooldown``
    = c it falls linearly to 0 over the last share c of the run (a "warmup-stable-decay" schedule,
    Hägele et al. 2024, arXiv 2405.18392), the run's length being ``num_steps`` or this call's
    ``time_budget_s``, whichever ends it first: lr * min(1, (1 - done) / c), done the share of it
    that is over."""
    lr = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.lr_cooldown is None:
        return lr
    done = max(step / config.num_steps if config.num_steps else 0.0,
               elapsed / config.time_budget_s if config.time_budget_s else 0.0)
    return lr * min(1.0, max(0.0, 1.0 - done) / config.lr_cooldown)


@dataclass
class _Run:
    """What one ``train()`` call sets up around the TrainState (see parallel.py)."""

    accelerator: object
    model: torch.nn.Module  # the model as prepared by accelerate (DDP-wrapped with several processes)
    optimizer: object  # accelerate's wrapper of state.optimizer (it steps the fp16 gradient scaler)
    device: torch.device
    call_kwargs: dict  # return_dict=False where the model takes it (diffusers' call signature)
    null_label: int | None  # "no label" (num_class_embeds - 1) of a class-conditional model, else None
    start_elapsed: float = 0.0  # state.elapsed when this call began (time_budget_s counts from there)

    @property
    def rank(self):
        return self.accelerator.process_index

    @property
    def world(self):
        return self.accelerator.num_processes


def draw_timesteps(batch_size, T, config, generator):
    """Each image's t, (batch_size,). With ``config.timestep_logit_std`` = s (1 by default, as Esser et al.)
    t = floor(T * sigmoid(s * z)), z ~ N(0, 1): t / T is logit-normal (Esser et al. 2024, arXiv
    2403.03206, section 3.1), so the middle noise levels are practised more often and the nearly
    clean and nearly pure-noise ends less; from the same images more samples were clear digits
    (benchmarks/bench_screen.py). With ``timestep_logit_std=None``: uniform over 0..T-1, the seed's
    t ~ Uniform{0, ..., T-1}."""
    if config.timestep_logit_std is None:
        return torch.randint(0, T, (batch_size,), generator=generator)
    z = torch.randn(batch_size, generator=generator)
    return (torch.sigmoid(config.timestep_logit_std * z) * T).long().clamp(max=T - 1)


def loss_weights(timesteps, scheduler, config):
    """Each image's weight in the loss, (b,): with ``config.min_snr_gamma`` = gamma (5 by
    default) the min-SNR-gamma weight of a model that predicts eps (Hang et al. 2023, arXiv
    2303.09556): min(SNR_t, gamma) / SNR_t, SNR_t = alpha_bar_t / (1 - alpha_bar_t). Images at
    SNR_t <= gamma (large t) keep weight 1; the nearly clean ones (small t) count less. With
    ``min_snr_gamma=None``: 1 for every image, the seed's plain mean."""
    if config.min_snr_gamma is None:
        return torch.ones(len(timesteps))
    alpha_bar = scheduler.alphas_cumprod[timesteps].double()
    snr = alpha_bar / (1 - alpha_bar)
    return (snr.clamp(max=config.min_snr_gamma) / snr).float()  # (b,)


def train_step(state, dataset, run):
    """One optimizer step of the seed's algorithm; returns the loss (a float, over the whole batch)."""
    cfg, T, rank, world = state.config, state.scheduler.num_train_timesteps, run.rank, run.world
    generator = torch.Generator().manual_seed(_seed_for(cfg.seed, 0, state.step))
    # 1. this process's slice of the batch; eps, t and the label dropout are drawn on the CPU for the
    #    whole batch (same numbers on any device and any process count), then sliced
    b = cfg.batch_size // world
    mine = slice(rank * b, (rank + 1) * b)
    indices = batch_indices(len(dataset), cfg.batch_size, cfg.seed, state.step)[mine]
    clean_images, labels = _get_batch(dataset, indices, cfg.seed, state.step, first=rank * b)  # (b, C, H, W)
    noise = torch.randn((cfg.batch_size, *clean_images.shape[1:]), generator=generator)[mine]  # (b, C, H, W)
    timesteps = draw_timesteps(cfg.batch_size, T, cfg, generator)[mine]  # (b,)
    kwargs = dict(run.call_kwargs)
    if run.null_label is not None:
        # Ho & Salimans 2022, Algorithm 1, line 3: with probability p_uncond, c <- null
        dropped = torch.rand(cfg.batch_size, generator=generator)[mine] < cfg.label_dropout  # (b,)
        kwargs["class_labels"] = torch.where(dropped, run.null_label, labels).to(run.device)
    clean_images, noise, timesteps = clean_images.to(run.device), noise.to(run.device), timesteps.to(run.device)
    # 2. forward: x_t, then the model's guess of eps; dropout draws from a seeded global RNG
    noisy_images = state.scheduler.add_noise(clean_images, noise, timesteps)
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        torch.manual_seed(_seed_for(cfg.seed, 3, state.step, *([rank] if world > 1 else [])))
        noise_pred = run.model(noisy_images, timesteps, **kwargs)
    noise_pred = noise_pred if isinstance(noise_pred, torch.Tensor) else noise_pred[0]
    # 3. the loss per image (for loss_by_timestep) and its mean, the seed's F.mse_loss, in fp32
    loss_per_image = (noise_pred.float() - noise).pow(2).mean(dim=(1, 2, 3))  # (b,)
    # 4. backward of the (min-SNR weighted) mean (gradients averaged over the processes), clip,
    #    AdamW step at this step's lr, EMA
    weights = loss_weights(timesteps.cpu(), state.scheduler, cfg).to(run.device)  # (b,); all 1 without min-SNR
    run.accelerator.backward((loss_per_image * weights).mean())
    if cfg.grad_clip is not None:
        run.accelerator.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate_at(state.step, cfg, state.elapsed - run.start_elapsed)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if not run.accelerator.optimizer_step_was_skipped:  # fp16: the scaler skips steps whose gradients overflowed
        state.ema.update(state.model)
    # 5. bookkeeping over the whole batch: exponentially weighted (0.99 per step) loss sums per range of t
    per_image = torch.stack([loss_per_image.detach(), timesteps.float()], dim=1)  # (b, 2)
    per_image = (run.accelerator.gather(per_image) if world > 1 else per_image).cpu()  # (B, 2)
    buckets = (per_image[:, 1].long() * NUM_BUCKETS // T)
    sums = torch.bincount(buckets, per_image[:, 0].double(), NUM_BUCKETS)
    counts = torch.bincount(buckets, minlength=NUM_BUCKETS)
    state.bucket_sums = [0.99 * s + x for s, x in zip(state.bucket_sums, sums.tolist())]
    state.bucket_counts = [0.99 * c + x for c, x in zip(state.bucket_counts, counts.tolist())]
    state.step += 1
    state.images_seen += cfg.batch_size
    state.losses.append(per_image[:, 0].mean().item())
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
    in [-1, 1], plus ``"labels"`` for a class-conditional model); returns a ``TrainState``.

    ``model``: our UNet, diffusers' UNet2DModel or any module called like them,
    ``model(x_t, t, return_dict=False)[0]`` (or ``model(x_t, t)`` returning a tensor); a model
    whose ``config.num_class_embeds`` is set is class-conditional and also gets
    ``class_labels=``. With ``checkpoint_path``, saves there every ``checkpoint_every`` steps /
    ``checkpoint_every_s`` seconds and at the end, and (``resume``) continues from it when it
    exists. Each callback ``cb(state)`` runs every ``log_every`` steps. Ctrl-C stops cleanly
    after the current step (saving first). ``doctor``: a TrainingDoctor (default) or any
    ``doctor(state)``; ``progress``: a tqdm bar with loss and images/s.

    Several processes (``torchrun``, ``accelerate launch``): every process runs this same call
    and trains on batch_size / N images of each batch; only the main process saves, shows the
    bar and runs the callbacks (``state.is_main_process`` tells which one you are). Resume with
    the same number of processes to continue bit for bit; another number continues the same
    run up to float rounding (and the model's dropout masks, which each process draws for its
    slice). A checkpoint_path must be on a file system that every process sees.
    """
    config = TrainConfig() if config is None else config
    _train_checks.check_arguments(model, dataset, config, checkpoint_path, callbacks)
    device = default_device(config.device, "config.device")
    precision = parallel.pick_mixed_precision(config.mixed_precision, device)
    accelerator, device = parallel.make_accelerator(device, precision)
    if config.batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes "
                         f"({accelerator.num_processes}): each trains on batch_size / {accelerator.num_processes} "
                         "images per step")
    model.to(device).train()
    if device.type == "cpu" and precision == "no":
        # float32 on a CPU: oneDNN's convolutions run faster on channels-last weights (the
        # activations follow); same numbers up to rounding (benchmarks/bench_unet.py)
        model.to(memory_format=torch.channels_last)
    scheduler = scheduler or DDPMScheduler(config.num_train_timesteps, beta_schedule=config.beta_schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    checkpoint = None
    if checkpoint_path is not None and resume and Path(checkpoint_path).exists():
        checkpoint = load_checkpoint(checkpoint_path, model=model)
        optimizer.load_state_dict(checkpoint["optimizer"])
    run = _Run(accelerator, None, None, device, _train_checks.call_kwargs(model), _train_checks.null_label(model))
    _check_first_batch(dataset, config, run, checkpoint["step"] if checkpoint else 0)
    run.model, run.optimizer, before = parallel.prepare(accelerator, model, optimizer)  # DDP: rank 0's weights
    try:
        state = TrainState(model, optimizer, EMA(model, config.ema_decay), scheduler, config,
                           num_processes=accelerator.num_processes, is_main_process=accelerator.is_main_process)
        if checkpoint is not None:
            _restore(state, checkpoint)
        _loop(state, dataset, run, checkpoint_path, callbacks, doctor or TrainingDoctor(), progress)
    finally:
        parallel.release(model, before)
    return state


def _loop(state, dataset, run, checkpoint_path, callbacks, doctor, progress):
    config, main = state.config, state.is_main_process
    total, saved_step = config.num_steps, state.step
    start_time = last_save = time.perf_counter()
    start_elapsed, start_images = state.elapsed, state.images_seen
    run.start_elapsed = start_elapsed
    bar = tqdm(total=total, initial=state.step, disable=not (progress and main), unit="step", dynamic_ncols=True)
    with _stop_on_ctrl_c() as stop, bar:
        while total is None or state.step < total:
            loss = train_step(state, dataset, run)
            now = time.perf_counter()
            state.elapsed = start_elapsed + now - start_time
            images_per_s = (state.images_seen - start_images) / max(now - start_time, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{state.smoothed_loss:.4f}", img_s=f"{images_per_s:.0f}", refresh=False)
            if state.step % config.log_every == 0 or not math.isfinite(loss):
                with warnings.catch_warnings():
                    if not main:  # the losses are the same everywhere: warn once, from the main process
                        warnings.simplefilter("ignore", TrainingWarning)
                    doctor(state)
                for callback in callbacks if main else ():
                    callback(state)
            due = state.step % config.checkpoint_every == 0 or (
                config.checkpoint_every_s is not None and now - last_save >= config.checkpoint_every_s)
            if checkpoint_path is not None and due and main:
                save_checkpoint(checkpoint_path, state)
                saved_step, last_save = state.step, time.perf_counter()
            out_of_time = config.time_budget_s is not None and now - start_time >= config.time_budget_s
            interrupted, out_of_time = _on_any_process(run, stop.is_set(), out_of_time)  # all stop together
            if interrupted:
                stop.set()
            if interrupted or out_of_time:
                break
        state.interrupted = stop.is_set()
    if checkpoint_path is not None and saved_step != state.step and main:
        save_checkpoint(checkpoint_path, state)
    run.accelerator.wait_for_everyone()  # when train() returns, the checkpoint is there for every process


def _on_any_process(run, *flags):
    """Each flag True on every process when it is True on any (one all-reduce with several processes)."""
    if run.world == 1:
        return flags
    counts = run.accelerator.reduce(torch.tensor([float(f) for f in flags], device=run.device), "sum")
    return tuple(bool(count > 0) for count in counts.tolist())


def _check_first_batch(dataset, config, run, step):
    """Fail before the first step on images outside [-1, 1] or missing / out-of-range labels."""
    indices = batch_indices(len(dataset), config.batch_size, config.seed, step)[:config.batch_size // run.world]
    images, labels = _get_batch(dataset, indices, config.seed, step)
    TrainingDoctor.check_batch(images)
    if run.null_label is not None:
        all_labels = getattr(dataset, "labels", None)  # the whole dataset's, when it has them at hand
        _train_checks.check_labels(all_labels if isinstance(all_labels, torch.Tensor) else labels, run.null_label)


# What a run saved before an option existed trained with: the seed's plain mean, uniform t, a constant lr.
OLDER_RUNS = {"min_snr_gamma": None, "timestep_logit_std": None, "lr_cooldown": None}


def _restore(state, checkpoint):
    """Put a loaded checkpoint's EMA and history into ``state`` (weights and optimizer: train())."""
    names = ("seed", "batch_size", "learning_rate", "warmup_steps", "beta_schedule", "ema_decay", "label_dropout",
             "min_snr_gamma", "timestep_logit_std", "lr_cooldown")
    saved = {name: checkpoint["train_config"].get(name, OLDER_RUNS.get(name, getattr(state.config, name)))
             for name in names}
    changed = [name for name in names if saved[name] != getattr(state.config, name)]
    if changed:
        warnings.warn(f"resuming with different {changed} than the checkpoint: the run will not match an "
                      "uninterrupted one.", TrainingWarning, stacklevel=3)
    if checkpoint.get("random_stream") != RANDOM_STREAM:
        warnings.warn("this checkpoint was written by an older ddpm_helpers, which drew its random numbers "
                      "differently: the resumed run is a sound run, but not bit for bit the old one continued.",
                      TrainingWarning, stacklevel=3)
    elif checkpoint.get("num_processes", 1) != state.num_processes:
        warnings.warn(f"resuming with {state.num_processes} process(es) a run saved by "
                      f"{checkpoint.get('num_processes', 1)}: it continues up to float rounding, not bit for bit.",
                      TrainingWarning, stacklevel=3)
    state.ema.load_state_dict(checkpoint["ema"])
    for key in ("step", "images_seen", "elapsed", "losses", "bucket_sums", "bucket_counts"):
        setattr(state, key, checkpoint[key])
