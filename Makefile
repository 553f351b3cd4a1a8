# The README's two commands. Both do all the set-up a fresh Debian/Ubuntu machine needs
# (as root): Debian packages, a virtualenv with the tool, then their job.
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv python3-pip debootstrap systemd-container systemd iproute2 \
	openssh-client openssh-server dpkg-dev curl sudo chromium chromium-driver openssl

.PHONY: setup test demo lint unit clean-lab

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml lab/setup.cfg lab/pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -e ./lab
	touch $@

lint: setup
	$(VENV)/bin/ruff check provision lab tests

# Test files run in parallel, each worker with a lab of its own (tests/conftest.py); the
# hosts mostly wait (boots, pip, health), so more workers than the 2 CPUs still pay off.
# A file is one unit of work (tests/conftest.py groups it), taken in the order given here:
# the longest first, so the last to start is a short one.
TEST_WORKERS ?= 4
SLOW_FIRST := tests/faults/test_faults.py tests/e2e/test_fleet.py tests/e2e/test_releases.py \
	tests/e2e/test_fleet_share.py tests/e2e/test_play_examples.py tests/faults/test_hostile.py \
	tests/e2e/test_webui.py tests/lab/test_lab_vms.py tests/e2e/test_inventory_lab.py \
	tests/e2e/test_progress.py tests/e2e/test_up.py tests/e2e/test_chat.py

test: setup lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder \
	  --durations=25 $(SLOW_FIRST) tests/faults tests/e2e tests/lab tests/unit

unit: setup
	$(PY) -m pytest -q tests/unit

demo: setup
	$(VENV)/bin/provision lab up 1 --profile a100
	$(VENV)/bin/provision up -i "$$($(VENV)/bin/provision lab inventory)" --host gpu1 -e web_ui=true
	@echo "--- the API server on gpu1 answers:"
	@addr=$$($(VENV)/bin/provision lab address gpu1) && \
	curl -sS -o /dev/null -w "GET /health -> HTTP %{http_code}\n" http://$$addr:8180/health
	@echo "--- provision chat (one question, as a script asks it):"
	$(VENV)/bin/provision chat -i "$$($(VENV)/bin/provision lab inventory)" --host gpu1 \
	  -m "Say hello"
	@echo "--- the chat page: http://$$($(VENV)/bin/provision lab address gpu1):7860/ (the demo sets no web_password)"
	@echo; echo "--- the lab keeps running; stop it with: $(VENV)/bin/provision lab down"

clean-lab: setup
	$(VENV)/bin/provision lab down
