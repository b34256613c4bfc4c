"""Mutation score of the test suite on the losses, weighting, layers and export verifier (issue 21).

Run: `.venv/bin/python -m benchmarks.mutation [--mutants 120] [--seed 0] [--timeout 240] [--only ID,...]`

A small AST-based mutator (mutmut is not installed here, and its `mutants/` copy of the tree does not know
that `mtmm_keras.export` lives in `export/`): every mutation site of the target files is listed in a
fixed order, a seeded sample of `--mutants` of them is drawn (so a run is reproducible), and each mutant is
tested in a temporary copy of the repository (`git archive HEAD`, or the working tree's files with
`--worktree`), never in the working tree. The operators:

- `compare`: `<`↔`<=`, `>`↔`>=`, `==`↔`!=`, `is`↔`is not`, `in`↔`not in`;
- `binop`: `+`↔`-`, `*`↔`/`, `//`→`/`, `**`→`*`, `@`→`*`;
- `boolop`: `and`↔`or`;
- `number`: 0→1, 1→0, any other c→c+1 (ints and floats; `True`/`False` swapped);
- `negate`: the test of an `if`/`while`/conditional expression/`assert` → `not (...)`;
- `unary`: `not x`→`x`, `-x`→`x`;
- `return`: `return <value>` → `return None`.

Docstrings, `__all__`, annotations and `raise ...` statements are left alone. A mutant whose source does not
compile is dropped before sampling. Each mutant runs the test files mapped to its module (TensorFlow
backend, `-x -q -p no:cacheprovider`, PYTHONDONTWRITEBYTECODE so a stale .pyc can never hide it) under a
per-mutant timeout; a failing run kills the mutant, a passing run lets it survive, a run past the timeout
counts as `timeout` (a hang the suite would catch with pytest-timeout: reported apart, counted as killed in
the score as mutmut does). Before the mutants, every mapped test set runs once unmutated and must pass.

Writes benchmarks/results/mutation.json (every mutant: id, file:line, operator, diff, status, seconds) and
mutation.md (score per module, the survivors with their diffs and, where `EQUIVALENT` names them, why
each is equivalent).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import difflib
import json
import os
import platform
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("mtmm_keras/losses/*.py", "mtmm_keras/weighting/*.py", "mtmm_keras/layers/*.py", "export/verify.py")

# module (or folder prefix) -> the test files (and -k filters) that cover it; fast files only, TF backend
TESTS: dict[str, list[str]] = {
    "mtmm_keras/losses/": ["tests/test_losses.py", "tests/test_losses_contrastive.py"],
    "mtmm_keras/weighting/": ["tests/test_weighting_aggregators.py", "tests/test_weighting_arguments.py",
                              "tests/test_weighting_gradnorm_paper.py"],
    # the loss-level methods (and DWA's epoch hook) are exercised by fitting models
    **{f"mtmm_keras/weighting/{name}.py": ["tests/test_weighting_aggregators.py", "tests/test_weighting_arguments.py",
                                           "tests/test_weighting_gradnorm_paper.py", "tests/test_weighting_fit.py"]
       for name in ("_base", "dwa", "rlw", "static", "uncertainty", "gradnorm")},
    "mtmm_keras/layers/": ["tests/test_layers.py", "tests/test_modality_mask.py",
                           "tests/test_transformer_fusion_fallback.py", "tests/test_fusion_builders.py"],
    **{f"mtmm_keras/layers/{name}.py": ["tests/test_layers.py", "tests/test_expert_builders.py"]
       for name in ("experts", "gates", "cross_stitch", "stacked_dense")},
    "mtmm_keras/layers/log_mel.py": ["tests/test_layers.py", "tests/test_encoders_raw.py",
                                     "tests/reliability/test_raw_inputs.py::test_log_mel_front_end_is_the_datasets_numpy_front_end",
                                     "tests/reliability/test_raw_inputs.py::test_audio_encoder_takes_the_waveform"],
    "mtmm_keras/layers/token_ids.py": ["tests/test_layers.py", "tests/test_encoders_transformer.py",
                                       "tests/test_text_inputs.py"],
    "mtmm_keras/layers/transformer_text.py": ["tests/test_layers.py", "tests/test_encoders_transformer.py"],
    "mtmm_keras/layers/temperature.py": ["tests/test_layers.py", "tests/test_joint_embedding_clip.py"],
    "mtmm_keras/layers/standardization.py": ["tests/test_layers.py", "tests/test_encoders_raw.py"],
    # the perturbed-artifact tests export real models (a minute): the rule tests judge arrays
    "export/verify.py": ["tests/test_export_verify_rule.py", "tests/test_export_verify_rejects.py",
                         "-k", "not artifacts"],
}

# Survivors judged equivalent (no test can tell them apart from the original): "file:line:operator:old->new"
# -> why. Filled in after a run; mutation.md prints the reason beside each survivor.
EQUIVALENT: dict[str, str] = {
    "export/verify.py:54:number:False->True":
        "the default of `config.get('from_logits', False)` is read only for losses whose class name says categorical "
        "or binary cross-entropy/focal, and every such Keras loss has `from_logits` in its config; for any other "
        "loss the kind is ('continuous', False) whatever the default",
    "mtmm_keras/losses/contrastive.py:23:number:0->1":
        "`ops.shape(similarity)[0]` → `[1]`: `check_square` on the line above refuses a non-square matrix, so both "
        "are B",
    "mtmm_keras/weighting/_gramian.py:44:number:0->1":
        "`shape[0] is None` → `shape[1] is None`: line 42 has already refused any shape with shape[0] != shape[1]",
    "mtmm_keras/weighting/_gramian.py:19:number:12->13":
        "MAX_EXACT_TASKS picks between two solvers of the same quadratic programme (exact active-set enumeration "
        "up to it, the iterative fallback above it); with 13 tasks both give the same weights within the tests' "
        "tolerances, only the cost differs",
    "mtmm_keras/weighting/_gramian.py:195:number:1->0":
        "`ops.flip(ops.sort(y), axis=-1)` → `axis=0`: `project_onto_simplex` takes a vector `[T]`, whose only axis "
        "is both",
    "mtmm_keras/weighting/nash_mtl.py:165:compare:>->>=":
        "`ops.where(norm > 0, norm, 1.0)` → `norm >= 0`: the guarded division is used only where norm > max_norm "
        "> 0, so the guard's value at norm == 0 is never taken",
    "mtmm_keras/layers/experts.py:60:binop:+->-":
        "the weight's name `kernel{i + 1}` → `kernel{i - 1}`: only the variable's name changes (Keras 3 saves and "
        "loads a layer's variables by position, and no code reads the names)",
    "mtmm_keras/weighting/static.py:24:number:True->False":
        "the default of `Static.combine`'s `training` argument: Static's sum never reads it",
    "mtmm_keras/weighting/_gramian.py:53:compare:<-><=":
        "`trace < eps` → `trace <= eps` in `normalize`: the two differ only when trace(G) equals eps (1e-8 and "
        "below) to the last bit, a tie no real Gramian hits (equivalent up to that exact float tie)",
    "mtmm_keras/weighting/_base.py:104:return:input_shape->None":
        "`Weighting` is a Layer only to track its variables: the model calls its `combine`/`aggregate` methods, "
        "never the layer itself, so Keras never asks its `compute_output_shape`",
    "mtmm_keras/weighting/_gramian.py:258:binop:-->+":
        "the other root of CAGrad's quadratic aλ² + 2·half_b·λ + c = 0: half_b = v₀ᵀGv₁, and Gv₁ = μ₁·1 on the "
        "support while v₀ sums to 0 there (the KKT system's last row), so half_b is 0 up to rounding and both "
        "roots are √D/a",
}


# Survivors that are real gaps still open: key -> what a test would need.
GAPS: dict[str, str] = {
    "mtmm_keras/weighting/_gramian.py:104:number:0.0->1.0":
        "`_pick` fills non-finite candidates with 1 instead of 0: seen only when every candidate of a column is "
        "non-finite (CAGrad's exact solve when no support gives a valid λ, the 0-in-the-hull case, where the hull "
        "branch usually wins anyway); no test builds a Jacobian where that fill value reaches the output",
}


@dataclass
class Mutant:
    id: str
    file: str
    line: int
    operator: str
    old: str
    new: str
    start: int  # byte offsets into the file
    end: int
    diff: str = ""
    status: str = "pending"
    seconds: float = 0.0
    output: str = field(default="", repr=False)

    @property
    def key(self) -> str:
        return f"{self.file}:{self.line}:{self.operator}:{self.old}->{self.new}"


_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_CMP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
             ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
        ast.Pow: ast.Mult, ast.MatMult: ast.Mult}
_BIN_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
             ast.MatMult: "@"}


class _Sites(ast.NodeVisitor):
    """Collects (line, operator, start, end, old text, new text) for one file's source bytes."""

    def __init__(self, source: bytes):
        self.src = source
        self.line_starts = [0]
        for i, byte in enumerate(source):
            if byte == 10:
                self.line_starts.append(i + 1)
        self.sites: list[tuple[int, str, int, int, str, str]] = []
        self._skip: set[int] = set()  # ids of nodes not to mutate

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def text(self, start: int, end: int) -> str:
        return self.src[start:end].decode()

    def add(self, line: int, operator: str, start: int, end: int, new: str) -> None:
        old = self.text(start, end)
        if old != new:
            self.sites.append((line, operator, start, end, old, new))

    def _operator_between(self, left: ast.AST, right: ast.AST, symbols: tuple[str, ...]) -> tuple[int, int] | None:
        """The span of the operator token in the gap between two operands (parentheses and spaces around it)."""
        start, end = self.offset(left.end_lineno, left.end_col_offset), self.offset(right.lineno, right.col_offset)
        gap = self.text(start, end)
        for symbol in sorted(symbols, key=len, reverse=True):
            at = _find_token(gap, symbol)
            if at is not None:
                prefix = len(gap[:at].encode())
                return start + prefix, start + prefix + len(symbol.encode())
        return None

    # --- statements that are left alone
    def _skip_docstring(self, body: list[ast.stmt]) -> None:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            self._skip.add(id(body[0]))

    def visit_Module(self, node):
        self._skip_docstring(node.body)
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        self._skip_docstring(node.body)
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        self._skip_docstring(node.body)
        for stmt in node.body:
            self.visit(stmt)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        for decorator in node.decorator_list:
            self.visit(decorator)
        # annotations and the return annotation: not visited

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_Raise(self, node):
        return

    def visit_Assign(self, node):
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        self.generic_visit(node)

    def visit_Expr(self, node):
        if id(node) in self._skip:
            return
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        return

    # --- the operators
    def visit_Compare(self, node):
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            if type(op) in _CMP:
                span = self._operator_between(left, right, (_CMP_TEXT[type(op)],))
                if span is not None:
                    self.add(node.lineno, "compare", *span, _CMP_TEXT[_CMP[type(op)]])
            left = right
        self.generic_visit(node)

    def visit_BinOp(self, node):
        if type(node.op) in _BIN:
            span = self._operator_between(node.left, node.right, (_BIN_TEXT[type(node.op)],))
            if span is not None:
                self.add(node.lineno, "binop", *span, _BIN_TEXT[_BIN[type(node.op)]])
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if type(node.op) in _BIN:
            span = self._operator_between(node.target, node.value, (_BIN_TEXT[type(node.op)] + "=",))
            if span is not None:
                self.add(node.lineno, "binop", *span, _BIN_TEXT[_BIN[type(node.op)]] + "=")
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        for left, right in zip(node.values, node.values[1:]):
            span = self._operator_between(left, right, (old,))
            if span is not None:
                self.add(node.lineno, "boolop", *span, new)
        self.generic_visit(node)

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            self.add(node.lineno, "number", *self.span(node), str(not value))
        elif isinstance(value, (int, float)) and not isinstance(value, complex):
            new = {0: 1, 1: 0}.get(value, value + 1) if value in (0, 1) else value + 1
            if isinstance(value, float):
                new = float(new)
            self.add(node.lineno, "number", *self.span(node), repr(new))

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.Not, ast.USub)):
            start, end = self.span(node)
            operand = self.span(node.operand)
            inner = self.text(*operand)
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                pass  # -1 etc.: the constant mutation covers it
            else:
                self.add(node.lineno, "unary", start, end, inner if _is_atom(node.operand) else f"({inner})")
        self.generic_visit(node)

    def _negate(self, test: ast.AST) -> None:
        start, end = self.span(test)
        self.add(test.lineno, "negate", start, end, f"not ({self.text(start, end)})")

    def visit_If(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_Assert(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_Return(self, node):
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self.add(node.lineno, "return", *self.span(node.value), "None")
        self.generic_visit(node)


def _is_atom(node: ast.AST) -> bool:
    return isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant))


def _find_token(gap: str, symbol: str) -> int | None:
    """Where `symbol` stands as an operator in `gap` (text between two operands: spaces, parentheses, comments)."""
    i = 0
    while i < len(gap):
        if gap[i] == "#":
            i = gap.find("\n", i)
            if i < 0:
                return None
            continue
        if gap.startswith(symbol, i):
            before = gap[i - 1] if i else " "
            after = gap[i + len(symbol)] if i + len(symbol) < len(gap) else " "
            if symbol[0].isalpha():
                if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
                    return i
            elif before not in "*/<>=!" and after not in "*/<>=":
                return i
        i += 1
    return None


def target_files(root: Path) -> list[str]:
    files = sorted({str(p.relative_to(root)) for pattern in TARGETS for p in root.glob(pattern)})
    return [f for f in files if "__pycache__" not in f]


def all_mutants(root: Path) -> list[Mutant]:
    mutants = []
    for rel in target_files(root):
        source = (root / rel).read_bytes()
        collector = _Sites(source)
        collector.visit(ast.parse(source))
        for n, (line, operator, start, end, old, new) in enumerate(sorted(set(collector.sites))):
            mutated = source[:start] + new.encode() + source[end:]
            try:
                compile(mutated, rel, "exec")
            except SyntaxError:
                continue
            diff = "".join(difflib.unified_diff(source.decode().splitlines(True), mutated.decode().splitlines(True),
                                                f"a/{rel}", f"b/{rel}", n=1))
            mutants.append(Mutant(f"{rel}#{n}", rel, line, operator, old, new, start, end, diff))
    return mutants


def tests_for(rel: str) -> list[str]:
    """The test arguments mapped to a file: its own entry, else the longest folder prefix."""
    if rel in TESTS:
        return TESTS[rel]
    prefixes = [p for p in TESTS if p.endswith("/") and rel.startswith(p)]
    return TESTS[max(prefixes, key=len)]


def make_copy(dest: Path, worktree: bool) -> None:
    """A copy of the repository at `dest`: HEAD's files (git archive) or the working tree's tracked files.

    `mtmm_keras.export` and `mtmm_keras.zoo` live in export/ and zoo/; the editable install maps them to the
    working tree, so the copy links them into its own mtmm_keras/ (found first: the copy is on sys.path)."""
    if worktree:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        for rel in filter(None, files.decode().split("\0")):
            src = REPO / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for name in ("export", "zoo"):
        link = dest / "mtmm_keras" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
                "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})
    env.pop("CI", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def check_copy_is_used(copy: Path) -> None:
    code = ("import os, mtmm_keras.losses as l, mtmm_keras.weighting as w, mtmm_keras.layers as y; "
            "from mtmm_keras.export import verify as v; "
            "print('\\n'.join(os.path.realpath(m.__file__) for m in (l, w, y, v)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=_env(copy), capture_output=True, text=True,
                         timeout=300)
    paths = out.stdout.split()
    real = os.path.realpath(copy)
    if out.returncode != 0 or len(paths) != 4 or not all(p.startswith(real + os.sep) for p in paths):
        raise SystemExit(f"the copy's modules are not the ones imported: {out.stdout}{out.stderr[-2000:]}")


def run_tests(copy: Path, args: list[str], timeout: float) -> tuple[str, float, str]:
    """'passed' | 'failed' | 'timeout', seconds, the output's tail."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           f"--timeout={int(timeout)}", *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=copy, env=_env(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout + 30)
        status = "passed" if proc.returncode == 0 else "failed"
        if proc.returncode != 0 and "Timeout" in out and "+++ Timeout +++" in out:
            status = "timeout"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = "timeout"
    return status, time.monotonic() - start, out[-3000:]


def run(args: argparse.Namespace) -> dict:
    mutants = all_mutants(REPO if args.worktree else _head_tree())
    by_id = {m.id: m for m in mutants}
    previous = {}
    if args.rerun_survivors:
        # the earlier run's sample, kept; only its survivors run again (after tests were added or mapped)
        earlier = json.loads(Path(args.out).read_text())
        previous = {m["id"]: m for m in earlier["mutants"]}
        keys = {m["id"]: m["key"] for m in earlier["mutants"]}
        sample = []
        for i, key in keys.items():
            if i in by_id and by_id[i].key == key:
                sample.append(by_id[i])
                continue
            # the file changed since (another commit): the same mutation at the nearest line
            m = previous[i]
            same = [c for c in mutants if (c.file, c.operator, c.old, c.new) == (m["file"], m["operator"], m["old"], m["new"])]
            if not same:
                raise SystemExit(f"mutant {i} ({key}) no longer exists at HEAD")
            moved = min(same, key=lambda c: abs(c.line - m["line"]))
            print(f"{key} is now {moved.key} ({moved.id})")
            previous[moved.id] = {**m, "id": moved.id}
            sample.append(moved)
        for m in sample:
            m.status, m.seconds = previous[m.id]["status"], previous[m.id]["seconds"]
        args.seed, args.earlier = earlier["seed"], earlier
    elif args.only:
        sample = [by_id[i] for i in args.only.split(",")]
    else:
        sample = sorted(random.Random(args.seed).sample(mutants, min(args.mutants, len(mutants))),
                        key=lambda m: (m.file, m.line, m.id))
    print(f"{len(mutants)} mutants in {len({m.file for m in mutants})} files; testing {len(sample)} (seed {args.seed})",
          flush=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mtmm-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        copy.mkdir()
        make_copy(copy, args.worktree)
        check_copy_is_used(copy)
        baseline = {}
        todo = [m for m in sample if m.status in ("pending", "survived")]
        for test_args in sorted({tuple(tests_for(m.file)) for m in todo}):
            status, seconds, out = run_tests(copy, list(test_args), args.timeout * 3)
            baseline[" ".join(test_args)] = round(seconds, 1)
            print(f"baseline {' '.join(test_args)}: {status} in {seconds:.0f} s", flush=True)
            if status != "passed":
                raise SystemExit(f"the unmutated tests do not pass:\n{out}")
        copies = [copy]
        for k in range(1, args.jobs):  # one copy per parallel job: each mutates only its own
            extra = Path(tmp) / f"repo{k}"
            extra.mkdir()
            make_copy(extra, args.worktree)
            copies.append(extra)
        free = queue.Queue()
        for c in copies:
            free.put(c)
        done = [0]
        lock = threading.Lock()

        def test_one(mutant: Mutant) -> None:
            where = free.get()
            try:
                path = where / mutant.file
                original = path.read_bytes()
                path.write_bytes(original[:mutant.start] + mutant.new.encode() + original[mutant.end:])
                try:
                    status, seconds, out = run_tests(where, tests_for(mutant.file), args.timeout)
                finally:
                    path.write_bytes(original)
            finally:
                free.put(where)
            mutant.status = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
            mutant.seconds = round(seconds, 1)
            mutant.output = out if mutant.status != "killed" else ""
            with lock:
                done[0] += 1
                print(f"[{done[0]}/{len(todo)}] {mutant.status:8s} {seconds:5.0f} s  {mutant.file}:{mutant.line} "
                      f"{mutant.operator}: {mutant.old!r} -> {mutant.new!r}", flush=True)

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(test_one, todo))
    return report(sample, len(mutants), args, baseline, time.time() - started)


def _head_tree() -> Path:
    """HEAD's target files in a scratch folder, so the sites listed are the ones the copy will hold."""
    tmp = Path(tempfile.mkdtemp(prefix="mtmm-mutation-sites-"))
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "mtmm_keras/losses", "mtmm_keras/weighting",
                              "mtmm_keras/layers", "export/verify.py"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp


def report(sample: list[Mutant], total: int, args: argparse.Namespace, baseline: dict, seconds: float) -> dict:
    counts = {s: sum(m.status == s for m in sample) for s in ("killed", "survived", "timeout")}
    equivalent = [m for m in sample if m.status == "survived" and m.key in EQUIVALENT]
    detected = counts["killed"] + counts["timeout"]
    modules = {}
    for m in sample:
        row = modules.setdefault(m.file, {"killed": 0, "survived": 0, "timeout": 0})
        row[m.status] += 1
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    command = "python -m benchmarks.mutation " + " ".join(sys.argv[1:])
    earlier = getattr(args, "earlier", None)
    if earlier is not None:  # a rerun of the survivors: the sample's own command first
        seconds += earlier["wall_s"]
        command = earlier["command"] + "; then " + command
    return {
        "command": command,
        "date": time.strftime("%Y-%m-%d"), "commit": commit, "source": "worktree" if args.worktree else "HEAD",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seed": args.seed, "sites": total, "sampled": len(sample), "timeout_s": args.timeout,
        "wall_s": round(seconds), "baseline_s": baseline, **counts,
        "equivalent": len(equivalent),
        "score": round(detected / len(sample), 4) if sample else None,
        "score_without_equivalent": round(detected / (len(sample) - len(equivalent)), 4)
        if len(sample) > len(equivalent) else None,
        "modules": modules,
        "mutants": [{k: v for k, v in asdict(m).items() if k not in ("start", "end")}
                    | {"key": m.key, "equivalent": EQUIVALENT.get(m.key)} for m in sample],
    }


def markdown(result: dict) -> str:
    lines = [
        "# Mutation score",
        "",
        f"`{result['command']}` — {result['date']}, commit {result['commit']} ({result['source']}), "
        f"{result['machine']['cpus']} CPUs, {result['wall_s'] // 60} min.",
        "",
        f"{result['sampled']} of {result['sites']} mutants (seed {result['seed']}): **{result['killed']} killed, "
        f"{result['timeout']} timed out, {result['survived']} survived** — score {result['score']:.1%} "
        f"(killed + timed out over sampled); {result['equivalent']} survivors are equivalent, "
        f"{result['score_without_equivalent']:.1%} without them.",
        "",
        "| module | killed | timed out | survived |",
        "|---|---|---|---|",
    ]
    for module, row in sorted(result["modules"].items()):
        lines.append(f"| {module} | {row['killed']} | {row['timeout']} | {row['survived']} |")
    survivors = [m for m in result["mutants"] if m["status"] == "survived"]
    lines += ["", "## Survivors", ""] if survivors else []
    for m in survivors:
        gap = GAPS.get(m["key"], "not analysed")
        verdict = f"equivalent: {m['equivalent']}" if m["equivalent"] else f"**a test gap**: {gap}"
        lines += [f"### `{m['file']}:{m['line']}` {m['operator']}: `{m['old']}` → `{m['new']}`", "",
                  verdict, "", "```diff", m["diff"].rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", type=int, default=120, help="how many mutants to sample (default 120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=240, help="seconds per mutant's test run")
    parser.add_argument("--only", help="comma-separated mutant ids to run (instead of a sample)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once, each in its own copy")
    parser.add_argument("--worktree", action="store_true", help="copy the working tree's files, not HEAD's")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="run only the survivors of the sample in --out again and update it (same sites)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite --out and its .md from --out's results with the current EQUIVALENT table")
    parser.add_argument("--list", action="store_true", help="print the sampled mutants and exit")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mutation.json"))
    args = parser.parse_args(argv)
    if args.list:
        mutants = all_mutants(REPO if args.worktree else _head_tree())
        sample = random.Random(args.seed).sample(mutants, min(args.mutants, len(mutants)))
        for m in sorted(sample, key=lambda m: (m.file, m.line, m.id)):
            print(f"{m.id:45s} {m.file}:{m.line} {m.operator}: {m.old!r} -> {m.new!r}")
        print(f"{len(sample)} of {len(mutants)}")
        return
    if args.report_only:  # the verdicts of EQUIVALENT (edited after a run) applied to the results in --out
        result = json.loads(Path(args.out).read_text())
        for m in result["mutants"]:
            m["equivalent"] = EQUIVALENT.get(m["key"])
        survivors = [m for m in result["mutants"] if m["status"] == "survived"]
        result["equivalent"] = sum(m["equivalent"] is not None for m in survivors)
        detected = result["killed"] + result["timeout"]
        result["score_without_equivalent"] = round(detected / (result["sampled"] - result["equivalent"]), 4)
    else:
        result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"score {result['score']:.1%}: {result['killed']} killed, {result['timeout']} timed out, "
          f"{result['survived']} survived; wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
