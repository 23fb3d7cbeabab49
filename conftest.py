"""The test environment, the same for every way of running pytest.

pytest always loads this file, because it sits in the repository root (pytest's rootdir,
where pyproject.toml is): ``pytest``, ``pytest tests``, ``pytest notebooks/05_sampling.ipynb``
and ``cd tests && pytest test_data.py`` all run with quick mode and offline mode on. (A
``tests/conftest.py`` is skipped when only notebooks are collected.) It runs before any test
module imports ddpm_helpers or datasets, and notebook kernels started by nbval inherit this
process's environment. Quick mode itself is read in one place only, ddpm_helpers/config.py.
"""

import os

TEST_ENVIRONMENT = {
    "DDPM_QUICK": "1",           # short training and sampling runs (ddpm_helpers.config.quick)
    "HF_HUB_OFFLINE": "1",       # the hub is never contacted: tests build their own local data
    "HF_DATASETS_OFFLINE": "1",
    "MPLBACKEND": "Agg",         # figures render without a display
}
for key, value in TEST_ENVIRONMENT.items():
    # DDPM_QUICK=0 pytest ... runs the notebooks in full; offline mode is not optional
    if key in ("DDPM_QUICK", "MPLBACKEND"):
        os.environ.setdefault(key, value)
    else:
        os.environ[key] = value
