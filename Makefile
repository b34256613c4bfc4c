# Quick start: `make demo` runs the main job, `make test` runs the whole test suite.
# Both create .venv and install the project (editable) with every extra it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JAX_TESTS := tests/test_builders.py tests/test_layers.py tests/test_losses.py tests/test_regularizers.py tests/test_encoders.py

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	bash scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtmm demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra
	@echo "--- builder, layer and loss tests again on the JAX backend ---"
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -ra $(JAX_TESTS)

clean:
	rm -rf $(VENV) runs build *.egg-info
