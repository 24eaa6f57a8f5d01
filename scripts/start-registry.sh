#!/usr/bin/env bash
# Starts Debian's docker-registry (the OCI distribution server) in the background.
#   scripts/start-registry.sh ADDR STORAGE_DIR    e.g. 127.0.0.1:5000 /var/lib/berth-registry
# Prints the registry's pid. Toolchains move between nodes through it by digest.
set -euo pipefail
addr=${1:-127.0.0.1:5000}
dir=${2:-/var/lib/berth-registry}
command -v docker-registry >/dev/null || { echo "start-registry: docker-registry is not installed (apt-get install docker-registry)" >&2; exit 1; }
mkdir -p "$dir"
cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
YAML
nohup docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://$addr/v2/" >/dev/null 2>&1; then echo "$pid"; exit 0; fi
  sleep 0.1
done
echo "start-registry: no answer on $addr; see $dir/registry.log" >&2
exit 1
