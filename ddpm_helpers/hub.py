"""Pretrained DDPM pipelines from the Hugging Face hub, loaded into the course's UNet and scheduler.

``load_from_hub("google/ddpm-cifar10-32")`` is ``huggingface_hub.snapshot_download`` (only the
files a DDPM pipeline needs) followed by ``pipeline.load_pipeline``: our UNet holding the hub
model's weights, and our scheduler. A repository downloaded once is read from the local cache
afterwards, with or without a network. Offline it fails at once with a one-line
``ConnectionError`` that says what to do, never a 30-second hang: with ``HF_HUB_OFFLINE=1`` it
does not try the network at all, and otherwise it gives the hub ``timeout`` seconds to answer.

Both layouts of diffusers pipeline repositories are read: ``unet/`` and ``scheduler/``
subfolders (what ``save_pretrained`` writes, e.g. Hugging Face unit 1's
``johnowhitaker/ddpm-butterflies-32px``), and the flat layout of Google's original DDPM
repositories (``config.json``, ``diffusion_pytorch_model.*`` and ``scheduler_config.json`` beside
``model_index.json``). huggingface_hub is imported only when a download is needed.
"""

from pathlib import Path

from . import _checks
from .data import hub_unreachable
from .pipeline import WEIGHTS_NAME, load_pipeline

# what a DDPM pipeline needs, in the subfolder layout and in the flat one
CONFIG_FILES = ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json",
                "config.json", "scheduler_config.json")
SAFETENSORS_FILES = (f"unet/{WEIGHTS_NAME}", WEIGHTS_NAME)
BIN_FILES = ("unet/diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin")  # older repos; read weights_only


def _check_repo_id(repo_id):
    if not isinstance(repo_id, str):
        raise TypeError(f"repo_id must be a hub repository name such as 'google/ddpm-cifar10-32', got {repo_id!r}")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or repo_id != repo_id.strip():
        raise ValueError(f"repo_id must look like 'owner/name', e.g. 'google/ddpm-cifar10-32', got {repo_id!r}; "
                         "for a folder on this computer use load_pipeline(folder)")
    return repo_id


def offline_message(repo_id, reason):
    """The one-line explanation ``load_from_hub`` raises when it cannot download ``repo_id``."""
    return (f"Cannot download {repo_id!r} from the Hugging Face hub ({reason}), so this step is skipped; "
            "online, run it again. The course's own model needs no network: load_pretrained().")


def check_hub_reachable(repo_id, timeout=3.0):
    """Raise a ConnectionError (``offline_message``) unless the hub answers within ``timeout`` seconds.

    With HF_HUB_OFFLINE=1 it raises without trying. When the hub does not answer it sets
    HF_HUB_OFFLINE=1 for this process, so later downloads fail at once instead of waiting again.
    Behind an HTTPS proxy a direct connection says nothing, so there it leaves the test to
    huggingface_hub (which waits up to its own timeout).
    """
    reason = hub_unreachable(timeout)
    if reason is not None:
        raise ConnectionError(offline_message(repo_id, reason))


def _is_complete(folder):
    """True if ``folder`` holds a model index, a UNet config, a scheduler config and weights."""
    has = lambda *names: any((folder / name).is_file() for name in names)  # noqa: E731
    return (has("model_index.json") and has("unet/config.json", "config.json")
            and has("scheduler/scheduler_config.json", "scheduler_config.json") and has(*SAFETENSORS_FILES, *BIN_FILES))


def _cached_snapshot(repo_id, cache_dir, revision):
    """The cached snapshot folder of ``repo_id`` if it holds a whole pipeline, else None (no network)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache, or only partly: every version raises its own error
        return None
    return folder if _is_complete(folder) else None


def _download(repo_id, cache_dir, revision):
    """Download the pipeline files of ``repo_id`` (safetensors weights when the repo has them)."""
    from huggingface_hub import HfApi, snapshot_download

    files = set(HfApi().list_repo_files(repo_id, revision=revision))
    weights = [name for name in SAFETENSORS_FILES if name in files] or [name for name in BIN_FILES if name in files]
    if "model_index.json" not in files or not weights:
        raise ValueError(f"{repo_id!r} is not a diffusers DDPM pipeline: it needs model_index.json and "
                         f"{WEIGHTS_NAME} (or .bin) weights; its files are {sorted(files)[:12]}")
    wanted = [name for name in CONFIG_FILES if name in files] + weights
    return Path(snapshot_download(repo_id, cache_dir=cache_dir, revision=revision, allow_patterns=wanted))


def load_from_hub(repo_id, cache_dir=None, revision=None, timeout=3.0):
    """(our UNet in eval mode, our scheduler) of the DDPM pipeline ``repo_id`` on the Hugging Face hub.

    E.g. ``load_from_hub("google/ddpm-cifar10-32")`` (Ho et al.'s CIFAR-10 model, 35.7M parameters)
    or ``load_from_hub("johnowhitaker/ddpm-butterflies-32px")`` (Hugging Face unit 1's butterflies).
    Files go to the hub cache (``cache_dir``; default ~/.cache/huggingface/hub) and are read from
    there next time without the network. ``revision``: a branch, tag or commit (default "main").
    Raises ConnectionError (one line, see ``offline_message``) when the repository is not cached
    and the hub cannot be reached, ImportError when huggingface_hub is missing.
    """
    _check_repo_id(repo_id)
    timeout = _checks.real(timeout, "timeout", low=0, low_open=True, hint="seconds to wait for the hub, e.g. 3")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise ImportError("load_from_hub needs huggingface_hub: pip install huggingface_hub "
                          "(diffusers and datasets install it too)") from None
    folder = _cached_snapshot(repo_id, cache_dir, revision)
    if folder is None:
        check_hub_reachable(repo_id, timeout)
        folder = _download(repo_id, cache_dir, revision)
    return load_pipeline(folder)
