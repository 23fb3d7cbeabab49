"""ddpm_helpers: the small package behind the course's notebooks.

One module per lesson concept, in lesson order; each imports only from the ones before it:

    digits      the embedded offline dataset: digits rendered from matplotlib's fonts
    data        datasets: the digits, hub datasets, local image folders, the DataLoader
    noising     q(x_t | x_0): one step at a time (eq. 2) and in closed form (eq. 4)
    schedules   beta schedules, alphas_cumprod, signal-to-noise ratio
    scheduler   DDPMScheduler and DDIMScheduler with diffusers' names and numbers
    dpm_solver  DPMSolverMultistepScheduler: DPM-Solver++, good samples in 10-20 steps
    unet        the noise-prediction network
    training    the training loop, EMA, checkpoints
    sampling    sampling loops written as generators
    classifier, metrics   a digit classifier; offline sample quality (KID, Frechet distance)
    plotting, widgets   figures and sliders

Heavy imports (matplotlib, ipywidgets, datasets) live only in the modules that need them,
so ``import ddpm_helpers`` is cheap.
"""

__version__ = "0.1.0"
