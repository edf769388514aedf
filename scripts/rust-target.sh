#!/usr/bin/env bash
# Makes sure the Rust target of a Lambda architecture is installed: `scripts/rust-target.sh arm64`.
# cargo lambda (under `sam build`) cross-compiles with zig, but needs rustup's target itself.
set -euo pipefail

case "${1:-}" in
  arm64) target=aarch64-unknown-linux-gnu ;;
  x86_64) target=x86_64-unknown-linux-gnu ;;
  *)
    echo "usage: $0 arm64|x86_64 (the Architecture parameter of template.yaml)" >&2
    exit 2
    ;;
esac

if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  exit 0
fi
echo "installing the Rust target $target (rustup target add $target)" >&2
if ! rustup target add "$target"; then
  cat >&2 <<MSG

The Rust target $target could not be installed, so the functions cannot be built for $1.
  - Offline or behind a proxy? rustup needs to reach static.rust-lang.org once for the target.
  - No rustup (a distribution's rustc)? Install Rust with rustup, or build on a machine that has it.
  - Or build for the other architecture: make build ARCH=$([[ $1 == arm64 ]] && echo x86_64 || echo arm64)
    and deploy with the matching Architecture parameter.
MSG
  exit 1
fi
