#!/usr/bin/env bash
# Coordinator overhead (issue 5): scheduling latency p99, CPU and memory of
# `lifeboat serve` with 50 simulated cells on minute schedules, beside the
# same with 1 cell. See infra/bench-coordinator.py.
#   bash infra/bench-coordinator.sh [CELLS=50] [SECONDS=180]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
cargo build --locked --release -p lifeboat 2>&1 | tail -1 >&2
python3 infra/bench-coordinator.py "$CARGO_TARGET_DIR/release/lifeboat" "${1:-50}" "${2:-180}"
