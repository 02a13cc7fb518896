# ctkit — the two entry points are `make demo` and `make test` (see README.md).
# Both set up everything they need on a fresh Debian 12 host (run as root) and are idempotent.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SYS_PYTHON ?= /usr/bin/python3
PYTEST_ARGS ?=
# The suite runs in parallel (pytest-xdist): most of its time is spent waiting on containers,
# loop devices and servers, so four workers pay off even on two cores. A test module stays
# on one worker (--dist loadfile): its module-level fixtures and shared files stay together.
PYTEST_WORKERS ?= 4
# `make install`: ctkit in its own virtual environment under PREFIX (not this checkout), the
# three commands linked into BINDIR.
PREFIX ?= /opt/ctkit
BINDIR ?= /usr/local/bin
COMMANDS := pct vzdump pveam
PACKAGES := shared index pveam vzdump pct

# openssh-server is only for the tests' own sshd (migration, SFTP repositories): the system's
# ssh service is kept from starting by a policy-rc.d guard during the install.
# Debian packages ctkit and its tests use: LXC and its python binding's build deps, id mapping,
# btrfs and ext4 tools, gpg, archivers, the busybox/debootstrap template builders, and a local MTA
# (exim4, local delivery only) for the notification tests; openssh-server only for the tests'
# own sshd (migration targets; never enabled or started as a system service by ctkit).
APT_PACKAGES := lxc lxc-dev lxcfs uidmap btrfs-progs e2fsprogs util-linux mount acl attr \
	gnupg rsync tar zstd lzop pigz gzip cstream curl busybox-static debootstrap \
	pkg-config gcc python3-dev python3-venv exim4-daemon-light bsd-mailx iproute2 procps psmisc \
	openssl openssh-client perl xz-utils bzip2 ca-certificates \
	restic rclone openssh-server locales libcap2-bin strace

.PHONY: setup host-packages subids venv bytecode test demo lint bench clean install uninstall

setup: host-packages subids venv bytecode

# The commands run from this checkout (editable install). Where PYTHONDONTWRITEBYTECODE is set,
# Python would compile every module from source on every run; compiled once here, each run
# reads the cached bytecode (stale files are recompiled here, and Python checks their mtimes).
# The methods the dataclasses generate and the regular expressions the imports compile are kept
# compiled beside it (shared/classcode.py, shared/regexcode.py).
bytecode: venv
	@$(PY) -m compileall -q -j 0 $(PACKAGES) bench >/dev/null
	@$(PY) -m shared.classcode $(PACKAGES)

host-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		guard=/usr/sbin/policy-rc.d; made=""; \
		if [ ! -e $$guard ]; then \
			printf '#!/bin/sh\n[ "$$1" = ssh ] && exit 101\nexit 0\n' > $$guard; chmod 755 $$guard; made=1; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		rc=$$?; [ -z "$$made" ] || rm -f $$guard; exit $$rc; \
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
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup
	@$(PY) -m shared.demo

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench: setup
	@$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench.run

# A real installation: a copy of this tree installed (not editable) into PREFIX, so that the
# systemd units written by the `... timer install` commands (and the autostart unit)
# run PREFIX/bin/<command> and survive the checkout. Running it again
# upgrades in place; `make uninstall` removes the links and PREFIX (configs and backups stay).
install: host-packages subids
	@[ -x $(PREFIX)/bin/python ] || $(SYS_PYTHON) -m venv $(PREFIX)
	@$(PREFIX)/bin/python -m pip install -q --upgrade pip setuptools wheel >/dev/null
	@src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
		tar --exclude=./.venv --exclude=./.git --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.pytest_cache -cf - . | tar -xf - -C "$$src" && \
		$(PREFIX)/bin/python -m pip install -q --upgrade --upgrade-strategy only-if-needed "$$src" && \
		$(PREFIX)/bin/python -m pip install -q --no-deps --force-reinstall --no-cache-dir "$$src" >/dev/null
	@cd / && $(PREFIX)/bin/python -m shared.classcode $(PACKAGES)
	@mkdir -p $(BINDIR)
	@for c in $(COMMANDS); do ln -sfn $(PREFIX)/bin/$$c $(BINDIR)/$$c; done
	@echo "ctkit installed in $(PREFIX); $(COMMANDS) linked into $(BINDIR)"

uninstall:
	@for c in $(COMMANDS); do \
		[ "$$(readlink $(BINDIR)/$$c)" != "$(PREFIX)/bin/$$c" ] || rm -f $(BINDIR)/$$c; \
	done
	@rm -rf $(PREFIX)
	@echo "ctkit removed from $(PREFIX) (configs under /etc/pve and backups are kept)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
