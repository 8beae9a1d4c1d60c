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
# both environments need into wheelhouse/; on a participant's laptop
# `make lab WHEELHOUSE=/media/usb/wheelhouse` installs from that folder only.
WHEELHOUSE ?=
WHEELHOUSE_DIR ?= wheelhouse
PIP_SRC := $(if $(WHEELHOUSE),--no-index --find-links $(abspath $(WHEELHOUSE)),$(PIP_ARGS))

# Lesson 11 and the workshop commands run in a second environment: no flwr
# release installs beside syft 0.9.5 (numpy 1.24 vs >= 1.26). It is registered
# as the Jupyter kernel "flower-lesson" of the main environment.
FLOWER_VENV ?= .venv-flower
FPY := $(FLOWER_VENV)/bin/python
FSTAMP := $(FLOWER_VENV)/.installed

.PHONY: browser-deps lab test install doctor lock bench clean-venv notebooks refresh bench-grade flower lock-flower test-flower wheelhouse

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "The course needs Python 3.11 (found %d.%d): install it, or run make PYTHON=/path/to/python3.11" % v)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --no-deps $(PIP_SRC) -r requirements.lock
	$(PY) -m pip check
	$(PY) -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

flower: $(FSTAMP)

$(FSTAMP): requirements-flower.lock pyproject.toml $(STAMP)
	$(PYTHON) -m venv $(FLOWER_VENV)
	$(FPY) -m pip install --disable-pip-version-check --no-deps $(PIP_SRC) -r requirements-flower.lock
	$(FPY) -m pip check
	$(FPY) -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(FPY) -m ipykernel install --prefix $(abspath $(VENV)) --name flower-lesson --display-name "Python 3.11 (Flower lesson)"
	touch $(FSTAMP)

# The learner works in work/ (git-ignored): copies of notebooks/ made once and
# never overwritten; `make refresh` offers new or updated lessons beside them.
# JupyterLab refuses to run as root (Docker, WSL, cloud boxes) without --allow-root: `make lab` adds it when
# `id -u` is 0. Extra JupyterLab arguments: `make lab JUPYTER_ARGS="--no-browser --port=8890"`.
JUPYTER_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
JUPYTER_LAB = $(VENV)/bin/jupyter lab --notebook-dir=work $(LAB_ROOT) $(JUPYTER_ARGS)

lab: $(STAMP) $(FSTAMP)
	$(PY) -m fedlab course workdir --dir work
	@$(if $(LAB_ROOT),echo "make lab: running as root: JupyterLab starts with --allow-root.",:)
	$(JUPYTER_LAB) $$([ -f work/00_welcome.ipynb ] && echo work/00_welcome.ipynb)

refresh: $(STAMP)
	$(PY) -m fedlab course refresh --dir work

# Lesson authors: write notebooks/ from solutions/ (and strip outputs from solutions/).
notebooks: $(STAMP)
	$(PY) -m fedlab course build

test: $(STAMP) $(FSTAMP) browser-deps
	$(PY) -m pytest -n 2 --dist loadfile -m "not flower"
	$(MAKE) test-flower

# The package's own tests again in the Flower environment (numpy 2, no syft,
# no JupyterLab): fedlab must work on numpy 1.24 and 2.
test-flower: $(FSTAMP)
	$(FPY) -m pytest -n 2 --dist loadfile --ignore=tests/browser -m "not slow and not syft and not browser and not course_env and not flower"
	$(FPY) -m pytest -n 2 --dist loadfile --ignore=tests/browser -m flower

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

lock-flower:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install $(PIP_ARGS) -r requirements-flower.in
	.venv-lock/bin/pip freeze --all --exclude pip --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' > requirements-flower.lock
	rm -rf .venv-lock

# Every wheel of requirements.lock and requirements-flower.lock (sdists built
# into wheels), plus the fedlab-workbook wheel, for this machine's platform
# (OS, CPU, Python 3.11). The two locks pin different numpy versions, so they
# are fetched one after the other; pip wheel reuses what is already there.
wheelhouse: $(STAMP)
	mkdir -p $(WHEELHOUSE_DIR)
	$(PY) -m pip wheel --disable-pip-version-check --no-deps $(PIP_ARGS) -w $(WHEELHOUSE_DIR) -r requirements.lock
	$(PY) -m pip wheel --disable-pip-version-check --no-deps $(PIP_ARGS) -w $(WHEELHOUSE_DIR) -r requirements-flower.lock
	$(PY) -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation -w $(WHEELHOUSE_DIR) .
	@du -sh $(WHEELHOUSE_DIR); ls $(WHEELHOUSE_DIR) | wc -l | sed 's/$$/ wheels/'

clean-venv:
	rm -rf $(VENV) $(FLOWER_VENV)
