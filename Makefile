# Quick start: `make demo` runs the main job, `make test` runs the whole test suite.
# Both create .venv and install the project (editable) with every extra it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
JAX_TESTS := tests/test_builders.py tests/test_layers.py tests/test_losses.py tests/test_regularizers.py tests/test_encoders.py tests/test_expert_builders.py tests/test_weighting_aggregators.py tests/test_weighting_fit.py tests/test_missing_labels.py tests/test_losses_contrastive.py tests/test_joint_embedding_clip.py tests/test_fusion_builders.py tests/test_modality_mask.py tests/test_encoders_transformer.py tests/test_encoders_raw.py tests/test_retrieval_metrics.py tests/test_transformer_fusion_fallback.py tests/test_builder_api.py tests/test_weighting_arguments.py tests/test_weighting_gradnorm_paper.py tests/test_l2_normalization.py tests/test_wide_and_ensemble.py

# The backend-agnostic reliability checks (bad inputs, saving, reload in a new process) and the keras-hub encoders,
# on JAX and PyTorch as well (the TensorFlow run has every file)
RELIABILITY_TESTS := tests/reliability/test_bad_inputs.py tests/reliability/test_inputs_data.py tests/reliability/test_inputs_saving.py tests/reliability/test_output_folder.py tests/reliability/test_weighting_reload.py tests/reliability/test_reload_new_process.py tests/reliability/test_cross_backend_load.py tests/test_encoders_backbone.py

# The same files on PyTorch, plus its own (one thread per worker: torch's default threads crowd two cores, 2 min vs 44 s)
TORCH_TESTS := $(JAX_TESTS) $(RELIABILITY_TESTS) tests/test_torch_backend.py

.PHONY: demo test install clean docs

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	bash scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt open_clip_torch==3.3.0  # test oracle (CLIP/SigLIP losses); --no-deps: its torchvision cannot sit beside this torch
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtmm demo

# Three pytest-xdist workers on two cores, one test file each at a time (module fixtures stay per file); the
# controller builds the zoo's datasets first (tests/conftest.py). Tests wait on subprocess start-ups, imports and
# killed workers, which left 12 % of two cores idle with two workers: a third fills it (the export, builder and
# distribute files: 250 s with three workers against 276 s with two, measured side by side on 2 cores).
# --timeout: a hung test fails after 15 minutes instead of stalling CI (the longest ones set their own bound).
# The docs build and docstring checks run inside the suite (tests/test_docs.py), so `test` needs only their tools.
# XLA at LLVM optimisation level 0 (JAX, and TensorFlow's jit_compile): the suite's models are tiny, so compiling
# them costs far more than running them. Builder, fusion and weighting files on JAX: 87 s instead of 125 s, the same
# tests passing; users' runs keep XLA's default level.
# File order: pytest-xdist's default (--loadscope-reorder: the files with the most tests first). Starting the longest
# files first instead (--no-loadscope-reorder and a hand list) ran the TensorFlow pass in 1,092 s against 1,011 s:
# the multi-process distribute, export and installed-wheel files then ran side by side and each took longer
# (the CLI export of every zoo entry 99 s instead of 56 s), measured on 2 cores on 2026-12-07.
PYTEST := XLA_FLAGS="$$XLA_FLAGS --xla_backend_optimization_level=0" $(BIN)/python -m pytest -q -ra -n 3 --dist loadfile --durations=15 --timeout=900

# JAX's persistent compilation cache, in a fresh folder for each run (removed at its end): the suite compiles the same
# small programs in many tests and processes, and a hit skips XLA. The JAX pass took 230 s instead of 259 s from an
# empty cache, the same tests passing (measured side by side on 2 cores); entries are keyed by the program, the
# compile options and the jax/jaxlib versions, so a hit is the program XLA would have built.
JAX_CACHE_ENV := JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

test: $(STAMP) $(DOCS_STAMP)
	@cache=$$(mktemp -d -t mtmm-jax-cache.XXXXXX) && trap 'rm -rf "$$cache"' EXIT && \
	export JAX_COMPILATION_CACHE_DIR="$$cache" $(JAX_CACHE_ENV) && \
	echo "--- every test on the TensorFlow backend ---" && $(PYTEST) && \
	echo "--- builder, layer, loss and reliability tests again on the JAX backend ---" && \
	KERAS_BACKEND=jax $(PYTEST) $(JAX_TESTS) $(RELIABILITY_TESTS) && \
	echo "--- the same tests on the PyTorch backend ---" && \
	OMP_NUM_THREADS=1 KERAS_BACKEND=torch $(PYTEST) $(TORCH_TESTS)

# The documentation site (docs/, mkdocs.yml) into site/. --strict: a broken link or reference, or a docstring griffe
# cannot parse, fails the build; ruff's D1 rules fail on a public name without a docstring. A .venv made before the
# docs extra existed gets it here. (tests/test_docs.py runs the pages' Python examples.)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -c "import mkdocs, material, mkdocstrings_handlers.python, mkdocs_gen_files" 2>/dev/null && test -x $(BIN)/ruff \
		|| $(BIN)/python -m pip install -q -c constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/ruff check --isolated --select D1 --ignore D105,D107 mtmm_keras zoo export
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs build site *.egg-info
