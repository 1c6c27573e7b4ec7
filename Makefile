# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo lint test test-fast test-gimp clean

$(STAMP): pyproject.toml tests/plugin_example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray,video,bench]'
	$(BIN)/pip install --quiet ./tests/plugin_example
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/nst run examples/tubingen.jpg examples/starry_night.jpg -o demo.png --size 256 --steps 200 --seed 1
	@echo "wrote demo.png"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not gimp and not slow"

test-gimp: $(STAMP)
	$(BIN)/python -m pytest -m gimp

clean:
	rm -rf $(VENV) demo.png .pytest_cache
