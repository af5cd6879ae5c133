#!/usr/bin/env bash
# Installs what the broker benchmark compares spoolmq against, only where it is missing:
#   Debian packages: redis-server, nats-server, rabbitmq-server, wrk
#   Python clients into the project's venv: redis (+hiredis, the parser redis-py recommends
#   for throughput), nats-py, aio-pika, matplotlib, psutil
# Idempotent: a second run installs nothing. The benchmark starts every peer itself on
# loopback with private data dirs, so the packages' own system services are kept from
# starting at install time (policy-rc.d) and are not used.
#
# Usage: bench/setup_peers.sh [VENV_DIR]   (default: .venv beside this repo's pyproject)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${1:-$repo/.venv}"

sudo_cmd=()
if [[ "$(id -u)" != 0 ]]; then
    sudo_cmd=(sudo)
fi

# Debian package -> a file it installs; the package is installed only if the file is absent.
declare -A debs=(
    [redis-server]=/usr/bin/redis-server
    [nats-server]=/usr/sbin/nats-server
    [rabbitmq-server]=/usr/lib/rabbitmq/bin/rabbitmq-server
    [wrk]=/usr/bin/wrk
)
missing=()
for pkg in "${!debs[@]}"; do
    if [[ ! -x "${debs[$pkg]}" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    echo "setup_peers: installing Debian packages: ${missing[*]}"
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Keep apt from starting system-wide redis/rabbitmq services on their default ports.
        printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    cleanup() {
        if ((made_policy)); then
            "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
        fi
    }
    trap cleanup EXIT
    # Other installs may hold the dpkg lock on a shared machine: wait for it, bounded.
    lock=(-o DPkg::Lock::Timeout=600)
    "${sudo_cmd[@]}" apt-get "${lock[@]}" update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get "${lock[@]}" install -y -q \
        --no-install-recommends \
        "${missing[@]}"
else
    echo "setup_peers: Debian packages already present"
fi

for pkg in redis-server nats-server rabbitmq-server wrk; do
    printf 'setup_peers: %-16s %s\n' "$pkg" \
        "$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo 'not installed')"
done

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup_peers: no venv at $venv (create it first, e.g. python3 -m venv .venv)" >&2
    exit 1
fi

# import name -> pip requirement (kept in step with the `bench` extra in pyproject.toml).
declare -A pyreqs=(
    [redis]="redis>=5.0"
    [hiredis]="hiredis>=2.3"
    [nats]="nats-py>=2.7"
    [aio_pika]="aio-pika>=9.4"
    [matplotlib]="matplotlib>=3.8"
    [psutil]="psutil>=5.9"
)
pymissing=()
for mod in "${!pyreqs[@]}"; do
    if ! "$venv/bin/python" -c "import $mod" 2>/dev/null; then
        pymissing+=("${pyreqs[$mod]}")
    fi
done
if ((${#pymissing[@]})); then
    echo "setup_peers: installing Python clients: ${pymissing[*]}"
    "$venv/bin/python" -m pip install -q "${pymissing[@]}"
else
    echo "setup_peers: Python clients already present"
fi
"$venv/bin/python" - <<'EOF'
from importlib.metadata import version
for dist in ("redis", "hiredis", "nats-py", "aio-pika", "matplotlib", "psutil"):
    print(f"setup_peers: {dist:16s} {version(dist)}")
EOF
