# The two set-up commands: `make demo` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The tests also need the OpenVINO extra (engine parity, NNCF int8); the demo does not.
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: demo test test-all lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,export,track]'
	$(BIN)/pip install --quiet --no-deps boxmot==25.0.0 trackeval==1.3.0  # see docs/tracking.md
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,export,track,openvino]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/personkit demo --out runs/demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs build *.egg-info
