#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian 12 machine and builds it. Idempotent: a second
# run only checks. Needs root (apt, the engine). Options:
#   --with-docker   also install Docker (docker.io) and start dockerd
#   --no-toolchain  skip building the default toolchain image
#   --no-start      install and build only: start no engine, build no toolchain (the test
#                   suite runs private engines of its own, scripts/private-engines.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

with_docker=0
toolchain=1
start=1
for arg in "$@"; do
  case "$arg" in
    --with-docker) with_docker=1 ;;
    --no-toolchain) toolchain=0 ;;
    --no-start) start=0; toolchain=0 ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

need=()
for pkg in podman runc mmdebstrap uidmap iptables iproute2 catatonit git gcc libc6-dev chromium fonts-dejavu-core tmux openssh-client btrfs-progs rsync runsc docker-registry; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ "$with_docker" = 1 ]; then
  for pkg in docker.io tini; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
  done
fi
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# Podman on this machine: runc (crun fails on the hybrid cgroup layout), cgroupfs (no
# systemd), and ulimits within the current hard limits (raising a hard limit is denied).
hard_nofile=$(ulimit -Hn); hard_nproc=$(ulimit -Hu)
[ "$hard_nofile" = unlimited ] && hard_nofile=65536
[ "$hard_nproc" = unlimited ] && hard_nproc=65536
nofile=$(( hard_nofile < 8192 ? hard_nofile : 8192 ))
nproc=$(( hard_nproc < 4096 ? hard_nproc : 4096 ))
mkdir -p /etc/containers/containers.conf.d
conf=/etc/containers/containers.conf.d/50-berth.conf
want=$(cat <<CONF
# Written by berth's scripts/setup.sh
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  say "configuring podman ($conf)"
  printf '%s\n' "$want" > "$conf"
fi

# Environments on one bridge are kept apart by iptables, which sees bridged traffic only
# with br_netfilter.
if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" != 1 ]; then
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || say "warning: br_netfilter is not available; berth will refuse egress networking"
fi

if [ "$with_docker" = 1 ] && [ "$start" = 1 ]; then
  bash scripts/start-docker.sh
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -f dist/src/cli/main.js ] || [ -n "$(find src bench test -newer dist/src/cli/main.js -name '*.ts' -print -quit 2>/dev/null)" ]; then
  say "building"
  npm run --silent build
fi

if [ "$toolchain" = 1 ]; then
  bash scripts/toolchain-into.sh >/dev/null
fi
say "ready"
