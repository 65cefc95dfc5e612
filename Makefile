# Two commands on a fresh machine: `make run` and `make test`.
# torch is pinned and installed first: the pinned CPU wheel is local here,
# while an unpinned torch would pull several GB of CUDA packages.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	command -v chromium >/dev/null || ((apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || true)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ttft-profile --len 2048

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --quiet profiler analyzers
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) *.egg-info
