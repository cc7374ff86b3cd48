#!/usr/bin/env bash
# The test command (README, .ci/run): installs and starts every real service
# the tests use, builds, runs the whole test suite, and stops the services.
#   bash infra/test.sh [extra cargo test args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# One target directory shared by every clone on this machine: builds are slow.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Habits first: formatting and lints fail in a minute, before the slow suites.
echo "== checking formatting and lints (cargo fmt --check; cargo clippy -D warnings)" >&2
for tool in rustfmt clippy; do
    cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$tool" \
        || { echo "cargo ${tool/rustfmt/fmt} is missing and rustup could not add it" >&2; exit 1; }
done
cargo fmt --all --check || { echo "run \`cargo fmt --all\` and commit the result" >&2; exit 1; }
cargo clippy --locked --workspace --all-targets -- -D warnings

trap 'bash infra/services.sh stop >/dev/null 2>&1 || true' EXIT
echo "== installing and starting services (postgres, kcat, moto, azurite, kafka)" >&2
bash infra/services.sh install
eval "$(bash infra/services.sh start s3 azure kafka)"

echo "== checking the services with their own clients" >&2
bash infra/smoke-test.sh

echo "== building (target dir $CARGO_TARGET_DIR)" >&2
# Clones share the target dir; their own crates' old builds pile up there.
[[ -d $CARGO_TARGET_DIR ]] && python3 infra/prune-target.py "$CARGO_TARGET_DIR"
cargo build --locked --workspace --bins --tests

echo "== running the tests" >&2
log=$(mktemp)
status=0
cargo test --locked --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "lifeboat: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
