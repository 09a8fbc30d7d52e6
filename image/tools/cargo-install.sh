#!/bin/sh
# cargo-install TOOL VERSION: `cargo install --locked` of one pinned tool into /opt/tools/bin.
# A version that needs a newer Rust than the base image fails with one line that says so.
set -u
tool="$1"; version="$2"
log="$(mktemp)"
if cargo install --locked --root /opt/tools "${tool}@${version}" >"$log" 2>&1; then
    tail -n 3 "$log"; rm -f "$log"; exit 0
fi
cat "$log" >&2
need="$(sed -n 's/.*requires rustc \([0-9][0-9.]*\).*/\1/p' "$log" | head -n 1)"
if [ -n "$need" ]; then
    echo "raibid: ${tool} ${version} needs Rust ${need} or newer; the base image has $(rustc --version)." \
         "Pin an older ${tool} (agent_image_cargo_tools) or a newer base (agent_image_rust_version)." >&2
else
    echo "raibid: cargo install of ${tool} ${version} failed (output above)." >&2
fi
rm -f "$log"
exit 1
