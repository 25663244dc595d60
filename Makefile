# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench data

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch is pinned here (a loose requirement pulls a multi-GB CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flatminima demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# `make data`: install Fashion-MNIST from Debian's package dataset-fashion-mnist (apt-get, as root or with
# passwordless sudo) into /usr/share/datasets/fashion-mnist, which the loaders search; otherwise say where to
# put the files. MNIST and CIFAR-10 are never installed automatically. Not part of test, demo or CI.
FASHION_PKG := dataset-fashion-mnist
IDX_GZ := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
data:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then APT="apt-get"; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then APT="sudo -n apt-get"; \
	else APT=""; fi; \
	if [ -n "$$APT" ]; then \
	  echo "installing Fashion-MNIST: $$APT install -y $(FASHION_PKG)"; \
	  $$APT install -y $(FASHION_PKG) || { $$APT update && $$APT install -y $(FASHION_PKG); } \
	    || echo "could not install $(FASHION_PKG) with apt-get"; \
	else \
	  echo "Fashion-MNIST is not installed automatically here (needs apt-get and root or passwordless sudo)."; \
	  echo "Put the four official files (from github.com/zalandoresearch/fashion-mnist, gzipped or not)"; \
	  echo "    $(IDX_GZ)"; \
	  echo "into one of: \$$FLATMINIMA_DATA/fashion-mnist/  ./data/fashion-mnist/  /usr/share/datasets/fashion-mnist/"; \
	fi; \
	echo "MNIST and CIFAR-10 are never installed automatically:"; \
	echo "  MNIST: the four IDX files of the same names (yann.lecun.com/exdb/mnist/) into ./data/mnist/"; \
	echo "         (or \$$FLATMINIMA_DATA/mnist/, /usr/share/datasets/mnist/)"; \
	echo "  CIFAR-10: unpack cifar-10-python.tar.gz (www.cs.toronto.edu/~kriz/cifar.html) in ./data/, so that"; \
	echo "         ./data/cifar-10-batches-py/data_batch_1 exists (or under \$$FLATMINIMA_DATA/)"; \
	echo "Every file is checked against the published checksums when it is loaded."
	@if [ -x $(PY) ]; then $(PY) -m flatminima.data fashion-mnist; \
	else for f in $(IDX_GZ); do test -f /usr/share/datasets/fashion-mnist/$$f || \
	  { echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist/$$f missing"; exit 1; }; done; \
	  echo "Fashion-MNIST: installed in /usr/share/datasets/fashion-mnist (run make venv to verify checksums)"; fi

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
