#!/usr/bin/env bash
# Installs the Debian packages fluke's demo and tests use, once (needs root and apt).
# usage: scripts/deps.sh [demo|test]
set -euo pipefail
case "${1:-test}" in
  demo) pkgs=(docker-registry busybox-static curl) ;;
  test) pkgs=(docker-registry busybox-static curl skopeo umoci podman apache2-utils openssl jq uidmap iproute2) ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts a system service on :5000; fluke's tests and
# demo start their own registries on free ports and need nothing from it.
