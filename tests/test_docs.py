"""The documentation is tested like code.

* Every Python block of README.md and docs/**/*.md runs, as written, top to bottom per page, in a fresh process in
  an empty folder (one process per page, so each page must stand on its own). A block that is not meant to run
  is marked by an HTML comment on the line before it, `<!-- not run: <reason> -->`, or a `title="..."` on its
  fence; every unmarked block must have run (each prints a sentinel the test counts).
* `mkdocs build --strict` builds the site (broken links, unknown references and griffe's docstring warnings fail),
  and every name in the `__all__` of every module of `mk.*` has an entry in the generated API reference.
* ruff's pydocstyle rules D1 (missing docstrings) pass on mtmm_keras/, zoo/ and export/ for public names.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "reliability"))
from reliability_helpers import run_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_scripts" not in p.parts)]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)(?P<info>[^\n`]*)$")
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->")
PYTHON = {"python", "py", "python3"}
SENTINEL = "__mtmm_docs_block_done__"


def blocks(page: Path) -> list[dict]:
    """Every fenced code block of `page`: language, code (dedented), line, and why it is not run (or None)."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or not match["lang"]:
            i += 1
            continue
        indent, start = match["indent"], i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:end])
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.search(before)
        reason = marker["reason"] if marker else ("a titled snippet" if "title=" in match["info"] else None)
        found.append({"lang": match["lang"], "code": code + "\n", "line": start + 1, "not_run": reason})
        i = end + 1
    return found


def python_blocks(page: Path) -> list[dict]:
    return [b for b in blocks(page) if b["lang"] in PYTHON]


RUNNABLE = [p for p in PAGES if any(b["not_run"] is None for b in python_blocks(p))]


def test_pages_are_found_and_blocks_are_python_or_marked():
    assert (ROOT / "README.md") in PAGES and len(PAGES) > 15, PAGES
    for page in PAGES:
        for block in blocks(page):
            if block["lang"] in ("pycon", "ipython"):
                pytest.fail(f"{page.name}:{block['line']}: write examples as ```python blocks (they are run)")
            if block["lang"] in PYTHON and block["not_run"] is not None:
                assert len(block["not_run"]) > 5, f"{page.name}:{block['line']}: say why the block is not run"


def test_readme_has_the_first_screen_examples():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    code = "\n".join(b["code"] for b in python_blocks(ROOT / "README.md") if b["not_run"] is None)
    for call in ("mk.builders.hard_sharing", ".fit(", "mk.export.export_model", "mk.zoo.load", ".predict("):
        assert call in code, call
    assert "../" not in readme and "issue 1" not in readme.lower(), "README links outside the repository or plans"


def _script(page: Path) -> str:
    parts = []
    for index, block in enumerate(python_blocks(page)):
        if block["not_run"] is None:
            parts.append(f"# --- {page.name}:{block['line']}\n{block['code']}print({SENTINEL!r}, {index}, flush=True)\n")
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_page_examples_run_as_written(page, tmp_path):
    (tmp_path / "keep.txt").write_text("the user's file")
    expected = [i for i, b in enumerate(python_blocks(page)) if b["not_run"] is None]
    result = run_python(_script(page), cwd=tmp_path, timeout=800, env_extra={"PYTHONWARNINGS": "ignore"})
    ran = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith(SENTINEL)]
    assert result.returncode == 0, f"{page.name}: block {len(ran) + 1} of {len(expected)} failed\n{result.stderr[-4000:]}"
    assert ran == expected, (ran, expected)
    assert (tmp_path / "keep.txt").read_text() == "the user's file"


def _all_names() -> dict[str, list[str]]:
    import importlib

    modules = ["builders", "layers", "losses", "metrics", "retrieval", "regularizers", "weighting", "encoders",
               "data", "distribute", "models", "saving", "zoo", "export"]
    names = {m: [n for n in importlib.import_module(f"mtmm_keras.{m}").__all__ if not n.startswith("__")]
             for m in modules}
    names["tasks"] = ["Task"]
    return names


@pytest.mark.timeout(300)
def test_docs_build_strict_and_every_public_name_has_an_api_entry(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (make docs does)")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true")
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for module, names in _all_names().items():
        html = (tmp_path / "site" / "reference" / module / "index.html").read_text()
        ids = set(re.findall(r'id="(mtmm_keras\.[\w.]+)"', html))
        missing = [n for n in names if not any(i.endswith(f".{n}") for i in ids)]
        assert not missing, f"mk.{module}: no API entry for {missing}"
    for entry in (ROOT / "zoo" / "entries").iterdir():
        assert (tmp_path / "site" / "zoo" / entry.name / "index.html").is_file(), entry.name


def test_public_names_have_docstrings():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -e '.[docs]' (make docs does)")
    result = subprocess.run([ruff, "check", "--isolated", "--select", "D1", "--ignore", "D105,D107",
                             "--output-format", "concise", "mtmm_keras", "zoo", "export"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]
