# Every target creates or refreshes .venv first; torch is pinned to the CPU build (see requirements.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint bench bench-classify bench-tag bench-refine bench-rl bench-infer bench-edit bench-augment bench-serve bench-monitor bench-search clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stepwise demo

lint: $(STAMP)
	$(BIN)/ruff check stepwise tests bench

test: $(STAMP) lint
	$(BIN)/pytest -q

bench: bench-classify bench-tag bench-refine bench-rl bench-infer bench-edit bench-augment bench-serve bench-monitor bench-search

bench-search: $(STAMP)
	cd bench && ../$(BIN)/python search.py

bench-monitor: $(STAMP)
	cd bench && ../$(BIN)/python monitor.py

bench-serve: $(STAMP)
	cd bench && ../$(BIN)/python serve.py

bench-augment: $(STAMP)
	cd bench && ../$(BIN)/python augment.py

bench-edit: $(STAMP)
	cd bench && ../$(BIN)/python edit.py

bench-infer: $(STAMP)
	cd bench && ../$(BIN)/python infer.py

bench-rl: $(STAMP)
	cd bench && ../$(BIN)/python rl.py

bench-refine: $(STAMP)
	cd bench && ../$(BIN)/python refine.py

bench-tag: $(STAMP)
	cd bench && ../$(BIN)/python tag.py

bench-classify: $(STAMP)
	cd bench && ../$(BIN)/python classify.py

clean:
	rm -rf $(VENV) runs .pytest_cache
