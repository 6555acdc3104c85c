# The two set-up commands: `make demo` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo needs the core package only; the tests add the dev, export, tracking and OpenVINO
# extras (engine parity, NNCF int8, BoxMOT/TrackEval) on top of it.
CORE_STAMP := $(VENV)/.installed-core-stamp
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
# pytest workers (pytest-xdist, one torch thread each; whole modules per worker)
TEST_WORKERS ?= 2

.PHONY: install demo test test-all lint clean

$(CORE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,export,track,serve]'
	$(BIN)/pip install --quiet --no-deps boxmot==25.0.0 trackeval==1.3.0  # see docs/tracking.md
	touch $(STAMP)

# One pip call for everything the tests need (one resolution, not three: 12 s less from a fresh
# clone); it also stands for the demo's and install's stamps.
$(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,export,track,serve,openvino,study,cluster]'
	$(BIN)/pip install --quiet --no-deps boxmot==25.0.0 trackeval==1.3.0  # see docs/tracking.md
	touch $(CORE_STAMP) $(STAMP) $(TEST_STAMP)

install: $(STAMP)  # personkit with the tracking, export and serving extras, no demo

demo: $(CORE_STAMP)
	$(BIN)/personkit demo --out runs/demo --overwrite

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

test-all: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs build *.egg-info
