# `make demo` and `make test` do all set-up on a fresh clone: a .venv with pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"

.PHONY: demo specialize flywheel test check docs lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source the first time (about 7 minutes on 2 cores).
	# Without AMX kernels: on the Xeon machines with AMX, llama.cpp 0.3.36 crashes (SIGSEGV in
	# ggml_backend_amx_mul_mat) on any prompt of more than one token, in every process that loads
	# a model (llama_cpp.server too); -march=native still uses AVX-512/VNNI where present.
	# Every extra (each stage's packages, see pyproject.toml) and the test tools.
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip install --progress-bar off -e ".[all,dev]"
	touch $(STAMP)

# Known-good text for the quality classifier (reference mode): Debian's python3-doc.
docs:
	@[ -d /usr/share/doc/python3-doc/html/tutorial ] || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq python3-doc) || \
		echo "python3-doc not installed: recipes using @python-docs will say so"

demo: $(STAMP) docs
	$(BIN)/syllabus run recipes/python-basics.toml

# The second main job: is a fine-tuned small model enough for a team's own task, and what does
# it take? The date task's splits (re-written from their seed, checked disjoint), then the
# portfolio: untuned models, RAG, an API, SmolLM2-135M fine-tuned at three data sizes.
specialize: $(STAMP)
	$(BIN)/python -m syllabus.portfolio.dates recipes/specialize
	$(BIN)/syllabus portfolio recipes/specialize.toml -o runs/specialize

# The flywheel, one fresh round on what `make specialize` recommended: serve it, send it 300
# unseen requests, fine-tune it on the log's training part, measure both on the held-out part.
flywheel: $(STAMP)
	@[ -f runs/specialize/recommendation.json ] || $(MAKE) specialize
	rm -f runs/flywheel/route-log.jsonl runs/flywheel/labels.jsonl
	$(BIN)/python -m syllabus.portfolio.flywheel recipes/flywheel.toml \
		--unseen-by recipes/specialize --calls 300 --seed 1 -o runs/flywheel

test: $(STAMP) docs
	# The report's browser test needs Debian's chromium; install it when missing and root.
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq chromium) || \
		echo "chromium not installed: the report's browser test will be skipped"
	# The Ollama export's test runs its Modelfile TEMPLATE through Go's own text/template.
	@command -v go >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq golang-go) || \
		echo "go not installed: the Ollama TEMPLATE tests will be skipped"
	$(BIN)/python -m pytest -q

# The edit-test loop (under 2 minutes): lint, and every test not marked slow (end-to-end runs,
# training, real models). `make test` runs them all; CI runs `make test`.
check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/backend_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
