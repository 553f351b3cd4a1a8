# The README's two commands. Both do all the set-up a fresh Debian/Ubuntu machine needs
# (as root): Debian packages, a virtualenv with the tool, then their job.
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv python3-pip debootstrap systemd-container systemd iproute2 \
	openssh-client openssh-server dpkg-dev curl chromium chromium-driver

.PHONY: setup test demo lint unit clean-lab

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check provision tests

test: setup lint
	$(PY) -m pytest -q tests

unit: setup
	$(PY) -m pytest -q tests/unit

# The lab's addresses (PROVISION_LAB_ID picks the lab): read when the demo runs.
LAB_GATEWAY = $(shell $(PY) -c 'from provision.lab import paths; print(paths.GATEWAY)')
LAB_HOST = $(shell $(PY) -c 'from provision.lab import paths; print(paths.host_address(1))')

demo: setup
	$(VENV)/bin/provision lab up 1 --profile a100
	$(PY) -m provision.lab.general_wheels mirror
	@# the chat page's Gradio comes from the lab's general index (port 8701); started here
	@# when no general index answers yet
	curl -sf -o /dev/null http://$(LAB_GATEWAY):8701/simple/gradio/ || \
	  (setsid $(PY) -m provision.lab.general_wheels serve >/dev/null 2>&1 & sleep 2)
	$(VENV)/bin/provision up -i "$$($(VENV)/bin/provision lab inventory)" --host gpu1 \
	  -e web_ui=true -e pip_extra_index_url=http://$(LAB_GATEWAY):8701/simple/
	@echo "--- the API server on gpu1 answers:"
	curl -sS -o /dev/null -w "GET /health -> HTTP %{http_code}\n" http://$(LAB_HOST):8180/health
	@echo "--- provision chat (one question, as a script asks it):"
	$(VENV)/bin/provision chat -i "$$($(VENV)/bin/provision lab inventory)" --host gpu1 \
	  -m "Say hello"
	@echo "--- the chat page: http://$(LAB_HOST):7860/ (the demo sets no web_password)"
	@echo; echo "--- the lab keeps running; stop it with: $(VENV)/bin/provision lab down"

clean-lab: setup
	$(VENV)/bin/provision lab down
