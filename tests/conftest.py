"""Test-wide settings. Set before anything imports ddpm_helpers or datasets.

Notebook kernels started by nbval inherit this process's environment, so quick mode and
offline mode reach them too.
"""

import os

os.environ.setdefault("DDPM_QUICK", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
