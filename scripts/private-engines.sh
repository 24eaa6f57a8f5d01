#!/usr/bin/env bash
# Private engines for the test suite: a Podman service and a dockerd whose storage, sockets,
# state and networks live in one directory that nothing else has touched, on a file system of
# their own (ext4 with its journal, on a sparse loop file). Nothing the machine's own engines
# hold (an image left from earlier work) can make a test pass.
#
#   scripts/private-engines.sh up DIR     start both; writes DIR/env.sh (source it)
#   scripts/private-engines.sh down DIR   stop both, unmount, remove DIR
#
# DIR/env.sh exports BERTH_PODMAN_SOCKET and BERTH_DOCKER_SOCKET (berth's discovery honours
# them), and CONTAINERS_CONF and CONTAINERS_STORAGE_CONF (so the podman CLI sees the same
# storage as the service).
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
say() { printf '\033[1mengines:\033[0m %s\n' "$*" >&2; }

down() {
  [ -d "$dir" ] || return 0
  if [ -f "$dir/env.sh" ]; then
    # shellcheck disable=SC1091
    . "$dir/env.sh"
    podman rm -fa -t 0 >/dev/null 2>&1 || true
  fi
  for pidfile in "$dir/podman.pid" "$dir/docker.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # Whatever the engines mounted under the directory (overlays, netns, shm), deepest first.
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  [ -n "$(ls -A "$dir/root" 2>/dev/null)" ] && umount -l "$dir/root" 2>/dev/null || true
  rm -rf "$dir"
}

if [ "$cmd" = down ]; then down; exit 0; fi
[ "$cmd" = up ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }

# User namespaces: root in an environment is the subordinate range of the user `berth`, on
# both engines (berth asks Podman for it per container; dockerd remaps every container).
# shellcheck source=userns-range.sh
. "$(dirname "$0")/userns-range.sh"
ensure_userns_range

mkdir -p "$dir/root"
# dockerd with userns-remap needs every directory on the way to its data root searchable by the
# remapped root (o+x); mktemp -d makes the directory 0700.
chmod 711 "$dir"
# A file system of its own: the root file system here is ext4 without a journal, where a mass
# delete slows file creation for minutes; unmounting this one deletes nothing.
if ! mountpoint -q "$dir/root"; then
  truncate -s "${BERTH_ENGINES_GB:-40}G" "$dir/root.img"
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$dir/root.img"
  mount -o loop "$dir/root.img" "$dir/root"
fi
r=$dir/root
mkdir -p "$r/podman/storage" "$r/podman/run" "$r/podman/tmp" "$r/podman/networks" "$r/docker/data" "$r/docker/exec"

hard_nofile=$(ulimit -Hn); [ "$hard_nofile" = unlimited ] && hard_nofile=65536
hard_nproc=$(ulimit -Hu); [ "$hard_nproc" = unlimited ] && hard_nproc=65536
nofile=$(( hard_nofile < 8192 ? hard_nofile : 8192 ))
nproc=$(( hard_nproc < 4096 ? hard_nproc : 4096 ))

# gVisor (`--isolation gvisor`), when runsc is installed: both engines know it as `runsc`. It
# runs with --network=host, which here means the container's own network namespace (the engine
# made it; the node's firewall rules apply to it): runsc's own network stack refuses to start on
# this kernel ("cannot run with network enabled in root network namespace"). --host-uds=create
# lets the agent's socket, made inside, be a socket the node can reach in the run directory.
runsc_bin=$(command -v runsc || true)
if [ -n "$runsc_bin" ]; then
  printf '#!/bin/sh\nexec %s --network=host --host-uds=create "$@"\n' "$runsc_bin" > "$dir/runsc"
  chmod 755 "$dir/runsc"
  podman_runtimes=$(printf '[engine.runtimes]\nrunsc = ["%s/runsc"]\n' "$dir")
  docker_runtimes=$(printf '"runtimes": { "runsc": { "path": "%s", "runtimeArgs": ["--network=host", "--host-uds=create"] } },' "$runsc_bin")
fi

# Podman: the same settings as scripts/setup.sh writes for the machine's own, with storage,
# state, temporary files and network definitions inside the directory, and subnets of its own.
cat > "$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$r/podman/storage"
runroot = "$r/podman/run"
CONF
cat > "$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$r/podman/events.log"
tmp_dir = "$r/podman/tmp"
# Podman's own shared-memory locks (the default). lock_type = "file" was tried: Podman 4.3 then
# wedged on its own lock file while three containers were created at once (a fork of three).

${podman_runtimes:-}

[network]
network_config_dir = "$r/podman/networks"
default_subnet = "10.138.0.0/24"
default_subnet_pools = [{ "base" = "10.139.0.0/16", "size" = 24 }]
CONF
cat > "$dir/env.sh" <<ENV
export CONTAINERS_CONF='$dir/containers.conf'
export CONTAINERS_STORAGE_CONF='$dir/storage.conf'
export BERTH_PODMAN_SOCKET='$dir/podman.sock'
export BERTH_DOCKER_SOCKET='$dir/docker.sock'
ENV
# shellcheck disable=SC1091
. "$dir/env.sh"

answers() { curl -sf --unix-socket "$1" http://d/_ping >/dev/null 2>&1; }
wait_for() {
  for _ in $(seq 1 300); do
    if answers "$1"; then return 0; fi
    sleep 0.1
  done
  echo "engines: $2 did not answer within 30 s; its log:" >&2
  tail -20 "$3" >&2 || true
  return 1
}

nohup podman system service --time=0 "unix://$BERTH_PODMAN_SOCKET" > "$dir/podman.log" 2>&1 &
echo $! > "$dir/podman.pid"

if command -v dockerd >/dev/null; then
  # Its own configuration file: the machine's /etc/docker/daemon.json is not read.
  cat > "$dir/daemon.json" <<JSON
{
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "default-ulimits": { "nofile": { "Name": "nofile", "Soft": ${nofile}, "Hard": ${nofile} } },
  "default-address-pools": [{ "base": "172.29.0.0/16", "size": 24 }],
  "bridge": "none",
  ${docker_runtimes:-}
  "userns-remap": "berth"
}
JSON
  nohup dockerd --config-file "$dir/daemon.json" --data-root "$r/docker/data" --exec-root "$r/docker/exec" \
    --pidfile "$dir/docker.pid" -H "unix://$BERTH_DOCKER_SOCKET" > "$dir/docker.log" 2>&1 &
  wait_for "$BERTH_DOCKER_SOCKET" dockerd "$dir/docker.log"
fi
wait_for "$BERTH_PODMAN_SOCKET" podman "$dir/podman.log"
say "private Podman at $BERTH_PODMAN_SOCKET and dockerd at $BERTH_DOCKER_SOCKET, storage under $r"
