# ctkit — the two entry points are `make demo` and `make test` (see README.md).
# Both set up everything they need on a fresh Debian 12 host (run as root) and are idempotent.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SYS_PYTHON ?= /usr/bin/python3
PYTEST_ARGS ?=

# Debian packages ctkit and its tests use: LXC and its python binding's build deps, id mapping,
# btrfs and ext4 tools, gpg, archivers, the busybox/debootstrap template builders, and a local MTA
# (exim4, local delivery only) for the notification tests.
APT_PACKAGES := lxc lxc-dev lxcfs uidmap btrfs-progs e2fsprogs util-linux mount acl attr \
	gnupg rsync tar zstd lzop pigz gzip cstream curl busybox-static debootstrap \
	pkg-config gcc python3-dev python3-venv exim4-daemon-light bsd-mailx iproute2 procps psmisc \
	openssl openssh-client perl xz-utils bzip2 ca-certificates

.PHONY: setup host-packages subids venv test demo lint bench clean

setup: host-packages subids venv

host-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Unprivileged containers need root's subordinate id range (Proxmox's default map).
subids:
	@for f in /etc/subuid /etc/subgid; do \
		touch $$f; grep -q '^root:100000:65536$$' $$f || echo 'root:100000:65536' >> $$f; \
	done

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(SYS_PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip setuptools wheel >/dev/null
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	@$(PY) -m shared.demo

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench: setup
	@$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
