"""Colab: every notebook carries the badge and the install cell for the address written in
tools/colab_links.py, the install cell does nothing outside Colab, one command moves the
course to a new address everywhere, and that tool stays out of the runtime package."""

import ast
import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "colab_links.py"
_spec = importlib.util.spec_from_file_location("colab_links", TOOL)  # a script in tools/, not a package module
colab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NEW_URL = "https://github.com/someone-else/diffusion-course"


def _sources(path, cell_type=None):
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in nb["cells"] if cell_type in (None, cell["cell_type"])]


def _addresses(text):
    """Every repository address (both spellings) in ``text``, as "owner/repo"."""
    import re

    found = re.findall(r"git\+https://github\.com/([\w.-]+/[\w.-]+?)@", text)
    found += re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/", text)
    return found


def test_the_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opens_with_its_own_colab_badge(path):
    first_markdown = _sources(path, "markdown")[0]
    assert colab.badge_markdown(path.stem) in first_markdown, (
        f"the first markdown cell of {path.name} must carry its Colab badge; paste the output of "
        f"`python tools/colab_links.py snippets {path.stem}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_first_code_cell_installs_the_package_in_colab(path):
    first_code = _sources(path, "code")[0]
    assert colab.install_cell_source() in first_code, (
        f"the first code cell of {path.name} must be the Colab install cell; paste the output of "
        f"`python tools/colab_links.py snippets {path.stem}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_mentions_no_other_repository_address(path):
    owner, repo = colab.owner_and_repo()
    for address in _addresses("\n".join(_sources(path))):
        assert address == f"{owner}/{repo}", f"{path.name} points at {address}, colab_links.py at {owner}/{repo}"


def test_readme_has_a_badge_per_lesson():
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md does not exist yet")
    text = readme.read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert colab.badge_markdown(path.stem) in text, f"README.md lacks the Colab badge of {path.name}"
    owner, repo = colab.owner_and_repo()
    assert set(_addresses(text)) <= {f"{owner}/{repo}"}


def test_badge_and_install_cell_are_built_from_the_address():
    assert colab.badge_markdown("01_forward_noising", "https://github.com/o/r") == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/o/r/blob/main/notebooks/01_forward_noising.ipynb)"
    )
    owner, repo = colab.owner_and_repo()
    assert f"/github/{owner}/{repo}/blob/{colab.BRANCH}/notebooks/05_sampling.ipynb)" in colab.badge_markdown("05_sampling.ipynb")
    assert f'"ddpm_helpers @ git+{colab.REPO_URL}@{colab.BRANCH}"' in colab.install_cell_source()


@pytest.mark.parametrize("bad", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a", "https://github.com/a/b/tree/main"])
def test_only_github_repository_addresses_are_accepted(bad):
    with pytest.raises(ValueError, match="GitHub repository"):
        colab.owner_and_repo(bad)


def test_replace_address_leaves_longer_names_and_other_repositories_alone():
    old = "https://github.com/ddpm-course/ddpm-from-scratch"
    text = f"{old}. {old}-old {old}.git https://github.com/huggingface/diffusers {old}/issues"
    assert colab.replace_address(text, old, NEW_URL) == (
        f"{NEW_URL}. {old}-old {NEW_URL}.git https://github.com/huggingface/diffusers {NEW_URL}/issues"
    )


# --- the install cell outside Colab, and inside a pretend Colab ---------------------------

_RUN_CELL = textwrap.dedent(
    """
    import importlib.util, json, sys, types
    from IPython.core.interactiveshell import InteractiveShell

    if sys.argv[1] == "colab":
        sys.modules["google"] = types.ModuleType("google")
        sys.modules["google.colab"] = types.ModuleType("google.colab")
    else:
        try:
            assert importlib.util.find_spec("google.colab") is None
        except ModuleNotFoundError:
            pass
    shell = InteractiveShell.instance()
    calls = []
    # stands in for the real %pip: nothing is ever installed by this test
    shell.register_magic_function(calls.append, magic_kind="line", magic_name="pip")
    result = shell.run_cell(sys.stdin.read())
    print(json.dumps({"ok": result.success, "pip_calls": calls}))
    """
)


def _run_install_cell(where):
    done = subprocess.run(
        [sys.executable, "-c", _RUN_CELL, where], input=colab.install_cell_source(),
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_install_cell_does_nothing_outside_colab():
    assert _run_install_cell("local") == {"ok": True, "pip_calls": []}


def test_install_cell_installs_the_package_from_the_repository_in_colab():
    result = _run_install_cell("colab")
    assert result["ok"] and len(result["pip_calls"]) == 1
    args = shlex.split(result["pip_calls"][0])
    assert args[:2] == ["install", "-q"] and len(args) == 3
    requirement = Requirement(args[2])
    assert requirement.name == "ddpm_helpers"
    assert requirement.url == f"git+{colab.REPO_URL}@{colab.BRANCH}"


# --- set-url on a copy of the repository ---------------------------------------------------


@pytest.fixture
def repo_copy(tmp_path):
    """notebooks/*.ipynb, README.md and tools/colab_links.py copied to tmp_path, each notebook
    given the badge and install cell (so this test does not depend on them being pasted yet)."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "tools").mkdir()
    shutil.copy(TOOL, tmp_path / "tools" / "colab_links.py")
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if colab.badge_markdown(path.stem) not in "".join(nb["cells"][0]["source"]):
            nb["cells"].insert(0, {"cell_type": "markdown", "metadata": {},
                                   "source": colab.badge_markdown(path.stem).splitlines(True)})
        first_code = next(i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code")
        if colab.install_cell_source() not in "".join(nb["cells"][first_code]["source"]):
            nb["cells"].insert(first_code, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                            "source": colab.install_cell_source().splitlines(True)})
        (tmp_path / "notebooks" / path.name).write_text(colab._write_notebook_text(nb), encoding="utf-8")
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else "# Lessons\n"
    for path in NOTEBOOKS:
        if colab.badge_markdown(path.stem) not in text:
            text += f"\n- {path.stem} {colab.badge_markdown(path.stem)}\n"
    # decoys that must survive: another repository, a longer name with the same start
    text += f"\nSee https://github.com/huggingface/diffusers and {colab.REPO_URL}-archive.\n"
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    return tmp_path


def _set_url(root, url):
    return subprocess.run(
        [sys.executable, str(TOOL), "set-url", url, "--root", str(root)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def test_set_url_rewrites_the_tool_every_notebook_and_the_readme(repo_copy):
    before = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in (repo_copy / "notebooks").glob("*.ipynb")}
    old_owner, old_repo = colab.owner_and_repo()
    done = _set_url(repo_copy, NEW_URL)
    assert done.returncode == 0, done.stderr
    assert "updated tools/colab_links.py" in done.stdout and "updated README.md" in done.stdout

    # the copy's tools/colab_links.py now defines the new address
    namespace = {}
    exec(compile((repo_copy / "tools" / "colab_links.py").read_text(), "colab_links.py", "exec"), namespace)
    assert namespace["REPO_URL"] == NEW_URL

    for path in (repo_copy / "notebooks").glob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        assert text == colab._write_notebook_text(nb), f"{path.name} not written as nbformat writes it"
        nbformat.validate(nbformat.reads(text, as_version=4))
        sources = "\n".join("".join(cell["source"]) for cell in nb["cells"])
        assert colab.badge_markdown(path.stem, NEW_URL) in sources
        assert colab.install_cell_source(NEW_URL) in sources
        assert f"{old_owner}/{old_repo}" not in sources
        assert set(_addresses(sources)) == {"someone-else/diffusion-course"}
        # only sources changed: outputs, metadata, ids are untouched
        old = before[path.name]
        assert nb["metadata"] == old["metadata"] and len(nb["cells"]) == len(old["cells"])
        for cell, old_cell in zip(nb["cells"], old["cells"]):
            assert {k: v for k, v in cell.items() if k != "source"} == {k: v for k, v in old_cell.items() if k != "source"}

    readme = (repo_copy / "README.md").read_text(encoding="utf-8")
    assert f"{old_owner}/{old_repo}/" not in readme and colab.badge_markdown("01_forward_noising", NEW_URL) in readme
    assert "https://github.com/huggingface/diffusers" in readme and f"{colab.REPO_URL}-archive" in readme

    # a second run from the new address back restores every file byte for byte
    done = _set_url(repo_copy, colab.REPO_URL)
    assert done.returncode == 0, done.stderr
    assert (repo_copy / "tools" / "colab_links.py").read_text() == TOOL.read_text()
    for path in (repo_copy / "notebooks").glob("*.ipynb"):
        assert json.loads(path.read_text(encoding="utf-8")) == before[path.name]


def test_set_url_refuses_a_non_github_address_and_changes_nothing(repo_copy):
    snapshot = {p: p.read_bytes() for p in repo_copy.rglob("*") if p.is_file()}
    done = _set_url(repo_copy, "https://gitlab.com/someone/course")
    assert done.returncode == 2 and "GitHub repository" in done.stderr
    assert {p: p.read_bytes() for p in repo_copy.rglob("*") if p.is_file()} == snapshot


# --- tooling stays out of the runtime package ----------------------------------------------


def _imported_modules(source):
    tree = ast.parse(source)
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):  # "from a import b" imports a and maybe a.b
            names |= {node.module or ""} | {f"{node.module or ''}.{alias.name}" for alias in node.names}
    return names


def test_the_tool_uses_the_standard_library_only():
    assert {name.split(".")[0] for name in _imported_modules(TOOL.read_text())} <= set(sys.stdlib_module_names)


def test_nothing_in_the_package_or_the_notebooks_imports_the_tool():
    assert not (ROOT / "ddpm_helpers" / "colab.py").exists()
    sources = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in (ROOT / "ddpm_helpers").rglob("*.py")}
    for path in NOTEBOOKS:
        for i, cell in enumerate(_sources(path, "code")):
            # IPython magics (%pip, !cmd) are not Python: a `pass` at the same indent keeps the cell parseable
            lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
                     for line in cell.splitlines()]
            sources[f"{path.name}, code cell {i}"] = "\n".join(lines)
    for where, source in sources.items():
        imported = _imported_modules(source)
        assert not {m for m in imported if "colab_links" in m or m.split(".")[0] == "tools"
                    or m.startswith(("ddpm_helpers.colab", ".colab"))}, where
        assert "colab_links" not in source and "ddpm_helpers.colab" not in source, where
