#!/usr/bin/env bash
# Starts dockerd (Debian's docker.io) in the background when it is not answering, configured
# for this machine: cgroupfs, and default ulimits within the current hard limits.
set -euo pipefail
sock=/var/run/docker.sock
answers() { curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }
if answers; then exit 0; fi
hard_nofile=$(ulimit -Hn); [ "$hard_nofile" = unlimited ] && hard_nofile=65536
nofile=$(( hard_nofile < 8192 ? hard_nofile : 8192 ))
# Root in a container is the subordinate range of the user `berth` (userns-remap), not root.
# shellcheck source=userns-range.sh
. "$(dirname "$0")/userns-range.sh"
ensure_userns_range
mkdir -p /etc/docker
if [ ! -f /etc/docker/daemon.json ]; then
  cat > /etc/docker/daemon.json <<JSON
{
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "default-ulimits": { "nofile": { "Name": "nofile", "Soft": ${nofile}, "Hard": ${nofile} } },
  "userns-remap": "berth"
}
JSON
fi
echo "start-docker: starting dockerd (log /var/log/berth-dockerd.log)" >&2
rm -f "$sock" /var/run/docker.pid
nohup dockerd > /var/log/berth-dockerd.log 2>&1 &
for _ in $(seq 1 150); do
  if answers; then exit 0; fi
  sleep 0.2
done
echo "start-docker: dockerd did not answer within 30 s; see /var/log/berth-dockerd.log" >&2
tail -5 /var/log/berth-dockerd.log >&2 || true
exit 1
