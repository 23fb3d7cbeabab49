"""Repository tooling for Google Colab: the repository's address, written once.

Every notebook starts with an "Open in Colab" badge and a setup cell that installs
``ddpm_helpers`` when (and only when) it runs in Colab. Both contain the repository's
address literally: the setup cell runs before ``ddpm_helpers`` exists, so it cannot import
it. This file is the one place the address is defined; ``badge_markdown`` and
``install_cell_source`` produce the text the notebooks carry, and one command moves the
course to a new address everywhere (this file, every notebook, the README)::

    python tools/colab_links.py set-url https://github.com/NEW_OWNER/NEW_REPO
    python tools/colab_links.py snippets 01_forward_noising   # the badge and install cell to paste

It rewrites the repository, so it lives in tools/, outside the package the notebooks import
(nothing in ddpm_helpers or the notebooks imports it). Standard library only: it must work
before anything heavy is installed.
"""

import argparse
import json
import re
import sys
from pathlib import Path

REPO_URL = "https://github.com/ddpm-course/ddpm-from-scratch"
BRANCH = "main"  # the badges and the install cell follow this branch
NOTEBOOK_DIR = "notebooks"

_COLAB = "https://colab.research.google.com/github/"
_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_GITHUB_REPO = re.compile(r"^https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)(?:\.git)?/?$")


def owner_and_repo(repo_url=None):
    """("owner", "repo") of a GitHub address such as https://github.com/owner/repo."""
    repo_url = REPO_URL if repo_url is None else repo_url
    match = _GITHUB_REPO.match(repo_url.strip())
    if not match:
        raise ValueError(
            f"{repo_url!r} is not a GitHub repository address: Colab opens notebooks only from "
            "GitHub, so give one like https://github.com/OWNER/REPO (no branch, no path)."
        )
    return match.group(1), match.group(2)


def _canonical(repo_url):
    owner, repo = owner_and_repo(repo_url)
    return f"https://github.com/{owner}/{repo}"


def colab_url(notebook_name, repo_url=None):
    """The address that opens ``notebooks/<notebook_name>`` from GitHub in Colab."""
    owner, repo = owner_and_repo(repo_url)
    name = Path(notebook_name).name
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    return f"{_COLAB}{owner}/{repo}/blob/{BRANCH}/{NOTEBOOK_DIR}/{name}"


def badge_markdown(notebook_name, repo_url=None):
    """The "Open in Colab" badge (Markdown) for one notebook, e.g. "01_forward_noising"."""
    return f"[![Open In Colab]({_BADGE_IMAGE})]({colab_url(notebook_name, repo_url)})"


def install_cell_source(repo_url=None):
    """The first code cell of every notebook: installs ``ddpm_helpers`` in Colab only.

    Locally the package is already installed (``pip install -e .``), so the cell does
    nothing. In Colab, pip keeps the preinstalled torch and ipywidgets 7 (our version
    floors are below them), so no runtime restart is needed.
    """
    return (
        "# In Google Colab, install the course's helper package first. On your own computer\n"
        "# it is already installed (see the README), and this cell does nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "ddpm_helpers @ git+{_canonical(repo_url)}@{BRANCH}"'
    )


# --- moving the course to a new address ------------------------------------------------


def _address_forms(repo_url):
    """The two spellings of a repository address that the notebooks and README contain."""
    owner, repo = owner_and_repo(repo_url)
    return [f"https://github.com/{owner}/{repo}", f"{_COLAB}{owner}/{repo}"]


def replace_address(text, old_url, new_url):
    """``text`` with every spelling of ``old_url`` replaced by that of ``new_url``.

    A longer name that merely starts like the old one (``.../repo-old``) is left alone.
    """
    for old, new in zip(_address_forms(old_url), _address_forms(new_url)):
        # not followed by more of the name ("-old", ".v2"); a ".git" suffix is fine
        pattern = re.escape(old) + r"(?![\w-]|\.(?!git\b)[\w-])"
        text = re.sub(pattern, lambda _: new, text)
    return text


def _write_notebook_text(nb):
    # byte for byte what nbformat writes, so a rewrite changes only the edited lines
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def rewrite_notebook(path, old_url, new_url):
    """Replace the address in every cell's source of one .ipynb; return True if it changed."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        lines = [source] if isinstance(source, str) else source
        new_lines = [replace_address(line, old_url, new_url) for line in lines]
        if new_lines != lines:
            cell["source"] = new_lines[0] if isinstance(source, str) else new_lines
            changed = True
    if changed:
        path.write_text(_write_notebook_text(nb), encoding="utf-8")
    return changed


_CONSTANT = re.compile(r'^REPO_URL = "([^"]*)"$', flags=re.M)


def _read_module_constant(path):
    found = _CONSTANT.findall(path.read_text(encoding="utf-8"))
    if len(found) != 1:
        raise ValueError(f"expected exactly one 'REPO_URL = \"...\"' line in {path}, found {len(found)}.")
    return found[0]


def _rewrite_module_constant(path, new_url):
    _read_module_constant(path)  # exactly one, or a ValueError
    text = path.read_text(encoding="utf-8")
    path.write_text(_CONSTANT.sub(f'REPO_URL = "{new_url}"', text), encoding="utf-8")


THIS_FILE = "tools/colab_links.py"  # where REPO_URL is written, relative to the repository root


def set_url(new_url, root=None, old_url=None):
    """Move the course to ``new_url``: rewrite REPO_URL in this file's source, and every
    badge and install address in ``root/notebooks/*.ipynb`` and ``root/README.md``.
    Returns the list of files changed (paths relative to ``root``).
    """
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    module = root / THIS_FILE
    if not module.is_file():
        raise ValueError(f"{root} is not the course repository: {module} does not exist.")
    new_url = _canonical(new_url)
    # the address the files carry now is the one written in *that* checkout's copy of this file
    old_url = _canonical(old_url if old_url is not None else _read_module_constant(module))
    changed = []
    for notebook in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")):
        if rewrite_notebook(notebook, old_url, new_url):
            changed.append(notebook.relative_to(root).as_posix())
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        new_text = replace_address(text, old_url, new_url)
        if new_text != text:
            readme.write_text(new_text, encoding="utf-8")
            changed.append("README.md")
    if old_url != new_url:
        _rewrite_module_constant(module, new_url)
        changed.append(THIS_FILE)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/colab_links.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    move = commands.add_parser("set-url", help="rewrite the repository address everywhere")
    move.add_argument("url", help="the new address, e.g. https://github.com/OWNER/REPO")
    move.add_argument("--root", default=None, help="repository root (default: this checkout)")
    show = commands.add_parser("snippets", help="print the badge and the install cell for a notebook")
    show.add_argument("notebook", help="notebook name, e.g. 01_forward_noising")
    args = parser.parse_args(argv)

    if args.command == "snippets":
        print(badge_markdown(args.notebook), install_cell_source(), sep="\n\n")
        return 0
    try:
        changed = set_url(args.url, root=args.root)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(f"updated {path}" for path in changed) or "nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
