# The commands the README names. Everything runs from the repository's own .venv.
PY := .venv/bin/python
STAMP := .venv/.installed
CATALOG_DIR ?= ../shared/data/fashion-product-images-small
export CATALOG_DIR
PROFILE ?= auto
DEVICE ?= auto

.PHONY: demo test train bench venv browser serve lint clean-var

$(STAMP): requirements.txt
	@echo "==> creating .venv (torch from the local wheel cache, then the pinned requirements)"
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "==> installing Debian chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "!! could not install chromium: browser tests will be skipped"; \
	fi

demo: venv
	$(PY) manage.py prepare_demo
	$(PY) manage.py serve

test: venv browser
	$(PY) -m pytest

# Every model (cpu profile without a GPU), then what the app needs to serve them: the database and the catalog on a
# fresh clone, and a new index built with the new models (prepare_demo skips what is already done).
train: venv
	$(PY) manage.py train all --profile $(PROFILE) --device $(DEVICE)
	$(PY) manage.py prepare_demo

bench: venv
	$(PY) -m bench.run

lint: venv
	$(PY) -m ruff check .
