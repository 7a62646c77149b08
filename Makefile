# dslc — set-up, tests and the main job. Everything runs inside .venv in this checkout.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1

.PHONY: setup browser test test-fast demo bench fuzz generate lint-imports clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Headless Chromium for the report test (tests/test_report.py): the Debian package, installed when
# missing and apt-get is usable (root); otherwise that test says it was skipped and why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "chromium is missing and cannot be installed here (needs root and apt-get); the browser test will be skipped"; fi

# The whole suite, slow reproductions included (what CI runs).
test: setup browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# The suite without the long reproductions.
test-fast: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"

# The main job: check a spec, train it, export it to ONNX and run it with onnxruntime.
demo: setup
	$(VENV)/bin/dslc check specs/*.dlspec
	$(VENV)/bin/dslc show specs/lstm_mnist.dlspec
	$(VENV)/bin/dslc train specs/lstm_mnist.dlspec --epochs 5 --out runs/demo --force
	$(VENV)/bin/dslc export runs/demo --out runs/demo/lstm_mnist.onnx
	$(VENV)/bin/dslc predict runs/demo/lstm_mnist.onnx runtime/data/samples/digit7.png

bench: setup
	$(PY) bench/compile.py
	$(PY) bench/train_overhead.py
	$(PY) bench/inference.py
	$(PY) bench/lsp.py
	$(PY) bench/serve.py

# Every file generated from the catalogs: docs/language.md's tables, the editor grammar and schema.
generate: setup
	$(PY) -m dslc.editor.generate

# The layering contracts (.importlinter): language -> checker/builder -> runtime -> serving -> command line.
lint-imports: setup
	$(VENV)/bin/lint-imports

fuzz: setup
	$(PY) bench/fuzz.py --count 10000

clean:
	rm -rf runs .pytest_cache .hypothesis
