# The workbook's commands. The two a newcomer needs:
#   make lab    set up .venv and open the course in JupyterLab
#   make test   set up .venv and run the whole test suite
# On Linux laptops add TORCH_INDEX=https://download.pytorch.org/whl/cpu to get
# the small CPU-only torch (see README, Install).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_INDEX ?=
PIP_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
STAMP := $(VENV)/.installed

# A room without internet: `make wheelhouse` (with internet) writes every wheel
# the course needs into wheelhouse/; on a participant's laptop
# `make lab WHEELHOUSE=/media/usb/wheelhouse` installs from that folder only.
WHEELHOUSE ?=
WHEELHOUSE_DIR ?= wheelhouse
PIP_SRC := $(if $(WHEELHOUSE),--no-index --find-links $(abspath $(WHEELHOUSE)),$(PIP_ARGS))

# One environment for the whole course (lessons 00-11, the workshop): syft 0.10
# and flwr 1.42 install side by side on numpy 2. Lesson 06's jobs run on this
# same interpreter; `make install` also fills their wheel folder
# ($(VENV)/fedlab-jobs: syft's wheels for uv, and a warm uv cache) so that no
# job downloads anything at run time (README, "Lesson 06's jobs").
JOBS_DIR := $(VENV)/fedlab-jobs
JOBS_SRC := $(if $(WHEELHOUSE),--no-index --find-links $(abspath $(WHEELHOUSE)),$(PIP_ARGS))

.PHONY: browser-deps sandbox-deps lab test install doctor lock bench clean-venv notebooks refresh bench-grade wheelhouse

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "The course needs Python 3.11 (found %d.%d): install it, or run make PYTHON=/path/to/python3.11" % v)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --no-deps $(PIP_SRC) -r requirements.lock
	$(PY) -m pip check
	$(PY) -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip download --disable-pip-version-check -q --only-binary=:all: $(JOBS_SRC) -c requirements.lock -d $(JOBS_DIR)/wheels syft==0.10.0
	FEDLAB_JOBS_DIR=$(abspath $(JOBS_DIR)) $(PY) -m fedlab jobs warm
	touch $(STAMP)

# The learner works in work/ (git-ignored): copies of notebooks/ made once and
# never overwritten; `make refresh` offers new or updated lessons beside them.
# JupyterLab refuses to run as root (Docker, WSL, cloud boxes) without --allow-root: `make lab` adds it when
# `id -u` is 0. Extra JupyterLab arguments: `make lab JUPYTER_ARGS="--no-browser --port=8890"`.
JUPYTER_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
JUPYTER_LAB = $(VENV)/bin/jupyter lab --notebook-dir=work $(LAB_ROOT) $(JUPYTER_ARGS)

lab: $(STAMP)
	$(PY) -m fedlab course workdir --dir work
	@$(if $(LAB_ROOT),echo "make lab: running as root: JupyterLab starts with --allow-root.",:)
	$(JUPYTER_LAB) $$([ -f work/00_welcome.ipynb ] && echo work/00_welcome.ipynb)

refresh: $(STAMP)
	$(PY) -m fedlab course refresh --dir work

# Lesson authors: write notebooks/ from solutions/ (and strip outputs from solutions/).
notebooks: $(STAMP)
	$(PY) -m fedlab course build

# The whole suite, in the one environment (the Flower tests included).
test: $(STAMP) browser-deps sandbox-deps
	$(PY) -m pytest -n 2 --dist loadfile

# Browser tests drive JupyterLab in Debian's Chromium (never `playwright install`,
# which downloads a browser). Installing it needs root (CI runs as root); on a
# laptop: sudo apt-get install chromium, or set CHROMIUM=/path/to/chromium.
browser-deps:
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium: found"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing: the browser tests need it (sudo apt-get install chromium, or CHROMIUM=/path)"; exit 1; \
	fi

# The grader runs each submission's kernel in a bubblewrap sandbox (fedlab/sandbox.py): no network, read-only
# course, its own folder, memory and process limits. Installing it needs root (CI runs as root); on a Linux
# laptop: sudo apt-get install bubblewrap. Other systems have no sandbox: the grader says so, loudly.
sandbox-deps:
	@if [ "$$(uname -s)" != "Linux" ]; then \
		echo "bubblewrap: not on $$(uname -s); the grader grades without a sandbox (sandbox=none)"; \
	elif command -v bwrap >/dev/null 2>&1; then \
		echo "bubblewrap: found"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	else \
		echo "bubblewrap is missing: the sandbox tests need it (sudo apt-get install bubblewrap)"; exit 1; \
	fi

doctor: $(STAMP)
	$(PY) -m fedlab doctor

bench: $(STAMP)
	$(PY) benchmarks/fedavg_engine.py

bench-grade: $(STAMP)
	$(PY) benchmarks/grade_room.py --lesson 02

# Re-resolve the whole course set in one go (needs the package index), then
# regenerate environment.yml from the new lock.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install $(PIP_ARGS) -r requirements.in
	.venv-lock/bin/pip freeze --all --exclude pip --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' > requirements.lock
	rm -rf .venv-lock
	$(PY) -m fedlab lock-env

# Every wheel of requirements.lock (sdists built into wheels), plus the
# fedlab-workbook wheel, for this machine's platform (OS, CPU, Python 3.11).
# Lesson 06's job wheels are a subset of the lock, so `make install
# WHEELHOUSE=...` fills the jobs' folder from here too.
wheelhouse: $(STAMP)
	mkdir -p $(WHEELHOUSE_DIR)
	$(PY) -m pip wheel --disable-pip-version-check --no-deps $(PIP_ARGS) -w $(WHEELHOUSE_DIR) -r requirements.lock
	$(PY) -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation -w $(WHEELHOUSE_DIR) .
	@du -sh $(WHEELHOUSE_DIR); ls $(WHEELHOUSE_DIR) | wc -l | sed 's/$$/ wheels/'

clean-venv:
	rm -rf $(VENV)
