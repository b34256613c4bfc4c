"""Pages generated at build time (mkdocs-gen-files), never copied by hand.

* `zoo/<entry>.md` for every entry in zoo/entries/: its card.md, followed by its curves (and gates, when the
  model has experts), copied beside the page;
* `zoo/entries.md`: the list of entries with their builder and one-line description;
* `benchmarks.md`: benchmarks/README.md, the home of every measured table.
"""

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = ROOT / "zoo" / "entries"
IMAGES = {"curves.png": "Training curves (train and validation, per task)", "gates.png": "Mean gate weights on the test set"}


def entry_names() -> list[str]:
    return sorted(p.name for p in ENTRIES.iterdir() if (p / "card.md").is_file())


def entry_page(name: str) -> str:
    folder = ENTRIES / name
    card = (folder / "card.md").read_text()
    parts = [card.rstrip(), ""]
    for image, caption in IMAGES.items():
        if (folder / image).is_file():
            with mkdocs_gen_files.open(f"zoo/{name}/{image}", "wb") as out:
                out.write((folder / image).read_bytes())
            parts += [f"## {caption}", "", f"![{caption}]({name}/{image})", ""]
    parts += ["---", "", f"Generated from `zoo/entries/{name}/card.md` when the site is built. Load it with "
              f'`mk.zoo.load("{name}")`; export it with `mtmm export zoo:{name} --out DIR`.', ""]
    return "\n".join(parts)


def description(name: str) -> str:
    lines = [l.strip() for l in (ENTRIES / name / "card.md").read_text().splitlines()]
    return next((l for l in lines[1:] if l and not l.startswith(("#", "-", "|"))), "")


rows = ["# All zoo entries", "", "One page per entry, generated from its card. How to load, evaluate, retrain "
        "and export them: [the zoo](index.md).", "", "| entry | description |", "|---|---|"]
for name in entry_names():
    with mkdocs_gen_files.open(f"zoo/{name}.md", "w") as page:
        page.write(entry_page(name))
    mkdocs_gen_files.set_edit_path(f"zoo/{name}.md", f"../zoo/entries/{name}/card.md")
    rows.append(f"| [`{name}`]({name}.md) | {description(name)} |")
with mkdocs_gen_files.open("zoo/entries.md", "w") as page:
    page.write("\n".join(rows) + "\n")

with mkdocs_gen_files.open("benchmarks.md", "w") as page:
    # benchmarks/README.md links docs pages as ../docs/PAGE (right on GitHub); the site has them beside this page
    page.write((ROOT / "benchmarks" / "README.md").read_text().replace("](../docs/", "]("))


# --- API reference: one page per module of `mk.*`, one entry per name in the module's `__all__` -----------------
# Each name is documented where it is defined (the `from X import name` of the package's __init__), so a function
# named like its own submodule (`mk.builders.hard_sharing` in `builders/hard_sharing.py`) is not shadowed by it.
import ast  # noqa: E402

SOURCE = {"zoo": ROOT / "zoo", "export": ROOT / "export"}  # installed as mtmm_keras.zoo / mtmm_keras.export
MODULES = ["builders", "tasks", "layers", "losses", "metrics", "retrieval", "regularizers", "weighting", "encoders",
           "data", "distribute", "models", "saving", "zoo", "export"]


def module_source(name: str) -> Path:
    folder = SOURCE.get(name, ROOT / "mtmm_keras" / name)
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def public_names(name: str) -> list[tuple[str, str]]:
    """(public name, dotted path of its definition) for every name in the module's `__all__`."""
    tree = ast.parse(module_source(name).read_text())
    imported, names = {}, None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            names = [ast.literal_eval(e) for e in node.value.elts if not isinstance(e, ast.Starred)]
    if name == "tasks":
        names = ["Task"]
    if names is None:
        raise SystemExit(f"mtmm_keras.{name} has no __all__: the API reference lists the names in it")
    return [(n, imported.get(n, f"mtmm_keras.{name}.{n}")) for n in names if not n.startswith("__")]


for module in MODULES:
    title = "mk.Task" if module == "tasks" else f"mk.{module}"
    lines = [f"# `{title}`", ""]
    if module != "tasks":
        lines += [f"::: mtmm_keras.{module}", "    options:", "      members: false", "      show_root_heading: false", ""]
    for public, path in public_names(module):
        if not path.startswith("mtmm_keras."):
            continue  # re-exported from another library
        lines += [f"::: {path}", "    options:", "      heading_level: 2", ""]
    with mkdocs_gen_files.open(f"reference/{module}.md", "w") as page:
        page.write("\n".join(lines))
