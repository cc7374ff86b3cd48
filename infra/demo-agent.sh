#!/usr/bin/env bash
# The agent on its own (no coordinator): the repository end to end on the
# local embedded default (file://), today the configuration-backup slice:
# back up a cell's GitOps/config directory into the primary region's
# repository, back it up again after a change (only the change is stored),
# geo-copy to the secondary region, verify the copy by reading every object,
# restore from the copy, compare with the source using diff (not Lifeboat),
# and show the retention plan. Everything lives in a temporary directory that
# is removed at the end (set LIFEBOAT_DEMO_KEEP=1 to keep it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"

say() { if [[ -t 2 ]]; then printf '\n\033[1m== %s\033[0m\n' "$*" >&2; else printf '\n== %s\n' "$*" >&2; fi; }

say "building lifeboat-agent (the first build takes several minutes; later ones reuse $CARGO_TARGET_DIR)"
cargo build --locked --bins 2>&1 | tail -1 >&2
agent="$CARGO_TARGET_DIR/debug/lifeboat-agent"

work=$(mktemp -d -t lifeboat-demo.XXXXXX)
if [[ -z ${LIFEBOAT_DEMO_KEEP:-} ]]; then trap 'rm -rf "$work"' EXIT; else echo "keeping $work" >&2; fi
primary="file://$work/region-a/repo"
secondary="file://$work/region-b/repo"
export LIFEBOAT_KEY_FILE="$work/lifeboat.key"
export RUST_LOG=warn

say "a config directory for cell eu-1 (GitOps values, a CA bundle, a symlink, a 0600 secret)"
src="$work/cell-eu-1-config"
mkdir -p "$src/gitops/services" "$src/pki"
for svc in payment validation account saga clearing notification; do
  printf 'service: %s\nreplicas: 3\ntier: 1\n' "$svc" >"$src/gitops/services/$svc.yaml"
done
head -c 3000000 /dev/urandom | base64 >"$src/pki/ca-bundle.pem"
printf 'db-password-ref: vault://cell-eu-1/db\n' >"$src/secrets.ref" && chmod 600 "$src/secrets.ref"
ln -s gitops/services/payment.yaml "$src/current-payment"
find "$src" -type f | sed "s|$work/||" >&2

say "a repository key (kept outside the repository) and an encrypted repository in region A"
"$agent" key generate --out "$LIFEBOAT_KEY_FILE"
"$agent" repo init --repo "$primary"

say "backup 1"
"$agent" files backup "$src" --repo "$primary" --cell eu-1
say "change one service file, backup 2: only the changed chunk is uploaded"
printf 'service: payment\nreplicas: 5\ntier: 1\n' >"$src/gitops/services/payment.yaml"
"$agent" files backup "$src" --repo "$primary" --cell eu-1

say "geo-copy region A -> region B (only what B lacks, verified by hash, manifests last)"
"$agent" repo copy "$primary" "$secondary"
say "rerun: nothing left to copy"
"$agent" repo copy "$primary" "$secondary"

say "verify the copy in region B: every object read, every hash checked"
"$agent" repo verify --repo "$secondary"
"$agent" repo ls --repo "$secondary"
"$agent" repo stats --repo "$secondary"

say "restore the latest backup from region B and compare with the source using diff"
"$agent" files restore latest "$work/restored" --repo "$secondary" --cell eu-1
diff -r --no-dereference "$src" "$work/restored" && echo "restored tree is identical to the source" >&2
[[ $(stat -c %a "$work/restored/secrets.ref") == 600 ]] && echo "secret kept mode 0600" >&2

say "retention plan for region A (keep 1 newest, nothing younger than 1s): shown, not executed"
sleep 1
"$agent" repo retention --repo "$primary" --keep-last 1 --keep-within 1s --dry-run

say "demo finished"
