#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine, then the suite itself.
# Installs OpenSSH's server (the tests start their own sshd daemons on loopback), sudo
# (the become tests ask it for a password), python3-venv, and Redis's and PostgreSQL's
# servers (the distributed mode's tests start their own: tests/services.py) where
# missing, then the package with its test extras into the checkout's .venv (Debian's own
# python3 refuses a pip install into itself) and runs pytest from there. Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v sudo >/dev/null || missing+=(sudo)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v redis-server >/dev/null || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
install -d -m 0755 /run/sshd 2>/dev/null || true

# Reuse the environment the README's quick start made; make it anew if it has no pip.
venv=$PWD/.venv
"$venv/bin/python" -m pip --version >/dev/null 2>&1 || python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install -q -e '.[test]'
export PATH="$venv/bin:$PATH"  # the tests run the `runner` console script
# The modules run in parallel (pytest-xdist), each whole in one process so that its module
# fixtures (workers, fault fleets) start once: most of the time a test waits on sshd, a
# worker or a timeout, so more processes than cores pay off. RUNNER_TEST_PROCESSES=0: none.
exec "$venv/bin/python" -m pytest -q -n "${RUNNER_TEST_PROCESSES:-4}" --dist loadfile --durations=25 "$@"
