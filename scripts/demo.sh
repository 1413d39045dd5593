#!/usr/bin/env bash
# fluke's main job, for now: build fluke, make a busybox image offline, push it to a
# local registry, pull it back into a fresh store, inspect it remotely, unpack it and run
# a command from the unpacked tree. Prints what it does. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
scripts/deps.sh demo
echo "==> building fluke (release)"
cargo build --release --locked -q -p fluke
fluke=$PWD/target/release/fluke

work=$(mktemp -d /tmp/fluke-demo.XXXXXX)
reg_pid=
cleanup() {
  if [ -n "$reg_pid" ]; then
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true   # 143: it ended by our SIGTERM
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox root filesystem from Debian's busybox-static.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh ls echo cat uname; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"

# A registry of our own on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: warn
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "==> registry listening on 127.0.0.1:$port (pid $reg_pid)"

set -x
"$fluke" --root "$work/store-a" image import "$work/rootfs" demo/busybox:1 \
  --label org.example.demo=yes --cmd /bin/sh
"$fluke" --root "$work/store-a" image ls
"$fluke" --root "$work/store-a" image push demo/busybox:1 "docker://127.0.0.1:$port/demo/busybox:1"
"$fluke" image inspect "docker://127.0.0.1:$port/demo/busybox:1"
"$fluke" --root "$work/store-b" image pull "127.0.0.1:$port/demo/busybox:1"
"$fluke" --root "$work/store-b" image fsck
"$fluke" --root "$work/store-b" image unpack "127.0.0.1:$port/demo/busybox:1" "$work/unpacked"
chroot "$work/unpacked" /bin/sh -c 'echo "hello from the unpacked image: $(uname -sm)"'
{ set +x; } 2>/dev/null
echo "==> done: imported, pushed, inspected remotely, pulled into a fresh store, checked, unpacked, ran"
