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

# Debian packages ctkit itself uses (what `make install` puts on a host): LXC and its python
# binding's build deps, id mapping, btrfs and ext4 tools, gpg, archivers, ssh for migration,
# restic for off-site backups.
RUNTIME_PACKAGES := lxc lxc-dev lxcfs uidmap btrfs-progs e2fsprogs util-linux mount acl attr \
	gnupg rsync tar zstd lzop pigz gzip cstream pkg-config gcc python3-dev python3-venv \
	iproute2 procps psmisc openssh-client xz-utils bzip2 ca-certificates restic
# ...and what only the demo and the tests use: the busybox/debootstrap template builders, a
# local MTA (exim4, local delivery only) for the notification tests, rclone and openssh-server
# for the tests' own REST server and sshd (migration targets, SFTP repositories), xfsprogs for
# the tests' XFS file systems. Never on a host by `make install`: exim4 would replace the host's
# own MTA, and Debian enables the ssh service it installs. During the tests' install a
# policy-rc.d guard keeps the ssh service from starting.
TEST_PACKAGES := curl busybox-static debootstrap exim4-daemon-light bsd-mailx openssl perl \
	rclone openssh-server locales libcap2-bin strace xfsprogs
APT_PACKAGES := $(RUNTIME_PACKAGES) $(TEST_PACKAGES)

.PHONY: setup host-packages runtime-packages subids venv bytecode test demo lint bench clean install install-checks uninstall

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
	@$(call apt_install,$(APT_PACKAGES))

runtime-packages:
	@$(call apt_install,$(RUNTIME_PACKAGES))

# The missing ones of $(1), installed without starting the ssh service: Debian's policy-rc.d
# hook is asked with the service's name (`ssh`, or `ssh.service`, `ssh.socket`,
# `rescue-ssh.target` under systemd, after options), and the guard goes again however apt-get
# ends. An openssh-server installed here is disabled again where systemd runs (Debian enables
# it for the next boot): the tests start their own sshd.
define apt_install
	missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		guard=/usr/sbin/policy-rc.d; \
		if [ ! -e $$guard ]; then \
			trap 'rm -f "$$guard"' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
			printf '%s\n' '#!/bin/sh' 'while [ "$${1#-}" != "$$1" ]; do shift; done' \
				'case "$$1" in ssh|ssh.service|ssh.socket|rescue-ssh.target) exit 101;; esac' 'exit 0' > $$guard; \
			chmod 755 $$guard; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit; \
		case " $$missing " in *" openssh-server "*) [ ! -d /run/systemd/system ] || \
			systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true;; esac; \
	fi
endef

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
# PREFIX and BINDIR are plain absolute paths; neither takes the place of what is not ctkit's
# (another program's pct, a PREFIX such as /usr/local), and uninstall removes only ctkit's.
# Ctrl-C does not stop the upgrade's pip half way: the old copy would be gone, the new one not
# there yet (SIGINT is ignored by pip then; it takes seconds).
install: install-checks runtime-packages subids
	@[ -x "$(PREFIX)/bin/python" ] || { $(SYS_PYTHON) -m venv "$(PREFIX)" && touch "$(PREFIX)/.ctkit"; }
	@"$(PREFIX)/bin/python" -m pip install -q --upgrade pip setuptools wheel >/dev/null
	@src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
		tar --exclude=./.venv --exclude=./.git --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.pytest_cache \
			--exclude=./build --exclude=./dist --exclude='./*.egg-info' -cf - . | tar -xf - -C "$$src" && \
		trap '' INT && \
		"$(PREFIX)/bin/python" -m pip install -q --upgrade --upgrade-strategy only-if-needed "$$src" && \
		"$(PREFIX)/bin/python" -m pip install -q --no-deps --force-reinstall --no-cache-dir "$$src" >/dev/null
	@cd / && "$(PREFIX)/bin/python" -m shared.classcode $(PACKAGES)
	@mkdir -p "$(BINDIR)"
	@for c in $(COMMANDS); do ln -sfn "$(PREFIX)/bin/$$c" "$(BINDIR)/$$c"; done
	@echo "ctkit installed in $(PREFIX); $(COMMANDS) linked into $(BINDIR)"

# before anything is installed: nothing of the host's is taken over
install-checks:
	@$(call check_paths)
	@if [ -e "$(PREFIX)" ] && ! $(call is_ctkit,$(PREFIX)) && [ -n "$$(ls -A "$(PREFIX)")" ]; then \
		echo "refusing to install into '$(PREFIX)': it is not empty and not a ctkit installation" >&2; exit 1; fi
	@for c in $(COMMANDS); do l="$(BINDIR)/$$c"; \
		if [ -e "$$l" ] || [ -L "$$l" ]; then t=$$(readlink "$$l"); \
			if [ "$$t" != "$(PREFIX)/bin/$$c" ] && ! { [ "$${t%/bin/$$c}" != "$$t" ] && $(call is_ctkit,$${t%/bin/$$c}); }; then \
				echo "refusing to replace '$$l': it is not a link to a ctkit installation" >&2; exit 1; fi; \
		fi; done

uninstall:
	@$(call check_paths)
	@if [ -e "$(PREFIX)" ] && ! $(call is_ctkit,$(PREFIX)); then \
		echo "'$(PREFIX)' is not a ctkit installation: left as it is" >&2; exit 1; fi
	@for c in $(COMMANDS); do \
		[ "$$(readlink "$(BINDIR)/$$c")" != "$(PREFIX)/bin/$$c" ] || rm -f "$(BINDIR)/$$c"; \
	done
	@rm -rf "$(PREFIX)"
	@echo "ctkit removed from $(PREFIX) (configs under /etc/pve and backups are kept)"

# PREFIX and BINDIR: absolute, without a trailing slash or a character the shell or make would
# take apart (a space made uninstall remove the wrong directories)
define check_paths
	for v in "PREFIX=$(PREFIX)" "BINDIR=$(BINDIR)"; do \
		[[ "$${v#*=}" =~ ^(/[A-Za-z0-9._+-]+)+$$ ]] || { \
			echo "$${v%%=*} must be an absolute path of letters, digits and ._+- (got '$${v#*=}')" >&2; exit 1; }; \
	done
endef

# whether the directory $(1) is a ctkit installation: a virtual environment holding ctkit, or
# made for it (marked when made: an install stopped before pip finished is still ctkit's)
is_ctkit = { [ -f "$(1)/pyvenv.cfg" ] && { [ -e "$(1)/.ctkit" ] || compgen -G "$(1)/lib/python3*/site-packages/ctkit-*.dist-info" >/dev/null; }; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
