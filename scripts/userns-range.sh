#!/usr/bin/env bash
# Sourced by the engine scripts: makes sure the user `berth` exists and owns a subordinate uid
# and gid range of 65536 ids (/etc/subuid, /etc/subgid). Environments' root is the range's first
# id on the host: Podman gets the range from berth per container, dockerd from `userns-remap`.
# A range that is there already is kept; a new one starts past every range the files hold.
ensure_userns_range() {
  if ! getent passwd berth >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin berth
  fi
  local f start
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q '^berth:' "$f" && continue
    start=$(awk -F: 'BEGIN { n = 100000 } NF == 3 && $2 + $3 > n { n = $2 + $3 } END { print n }' "$f")
    echo "berth:${start}:65536" >> "$f"
  done
}
