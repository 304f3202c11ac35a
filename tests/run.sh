#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine, then the suite itself.
# Installs OpenSSH's server (the tests start their own sshd daemons on loopback), sudo
# (the become tests ask it for a password) and the package with its test extras. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/sshd ] || ! command -v sudo >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq openssh-server sudo >/dev/null
fi
install -d -m 0755 /run/sshd 2>/dev/null || true

python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -q "$@"
