# Two entry points: `make demo` (the main job) and `make test`. Each sets up what it needs itself.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test

.PHONY: demo test test-fast bench dot clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[plot,progress,fast]'
	touch $@

$(TSTAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,parity,plot,progress,fast,distributed,onnx]'
	touch $@

dot:
	@bash scripts/ensure_dot.sh

demo: $(STAMP) dot
	$(BIN)/python examples/rnn_lstm/char_rnn.py --out out/char_rnn

test: $(TSTAMP) dot
	GRAPHNET_REQUIRE_TORCH=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(TSTAMP)
	$(BIN)/python -m pytest -q -m "not slow" -x $(PYTEST_ARGS)

bench: $(TSTAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/lstm.py --write-readme
	$(BIN)/python benchmarks/char_rnn.py

clean:
	rm -rf $(VENV) out build *.egg-info
