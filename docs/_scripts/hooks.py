"""MkDocs hooks.

* The API reference reads the source statically (griffe), but `zoo/` and `export/` install as `mtmm_keras.zoo`
  and `mtmm_keras.export` (setup.py): `build/docs-src/mtmm_keras/` is a copy of the Python files that puts them
  where their import names say, so mkdocstrings finds every module of `mk.*` without importing anything
  (a copy, not symbolic links: griffe resolves links and would look for submodules in the real folders).
* Every zoo entry's generated page (docs/_scripts/gen_pages.py) is listed in the navigation.
"""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = ROOT / "zoo" / "entries"
SOURCE_VIEW = ROOT / "build" / "docs-src"
INSTALLED_AS = {"zoo": ROOT / "zoo", "export": ROOT / "export"}  # mtmm_keras.<name> -> folder (see setup.py)


def _source_view() -> None:
    package = SOURCE_VIEW / "mtmm_keras"
    shutil.rmtree(SOURCE_VIEW, ignore_errors=True)
    python_only = shutil.ignore_patterns("__pycache__", "entries", "resources", "*.pyc")
    shutil.copytree(ROOT / "mtmm_keras", package, ignore=python_only)
    for name, folder in INSTALLED_AS.items():
        shutil.copytree(folder, package / name, ignore=python_only)


# Made when MkDocs loads this file (while it reads mkdocs.yml), before any plugin's on_config: mkdocstrings fixes its
# search paths then, and a fresh clone has no build/docs-src yet.
_source_view()


def on_config(config):
    """Fill the "Model zoo" section of `nav` with one item per entry (the source view is made on import, above)."""
    names = sorted(p.name for p in ENTRIES.iterdir() if (p / "card.md").is_file())
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Model zoo" in item:
            item["Model zoo"] = [*item["Model zoo"], *({name: f"zoo/{name}.md"} for name in names)]
    return config
