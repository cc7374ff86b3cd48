#!/usr/bin/env python3
"""Keep the shared cargo target directory from filling the disk.

Every clone builds Lifeboat's own crates into the shared target directory
under new hashes (the path is part of them), so old copies pile up (tens of
GiB after a few dozen clones). This keeps, per artifact name, the three
most recently used hashes of Lifeboat's own crates and test binaries, and
the sixteen most recently used of every dependency (bins-only, test, demo
and benchmark builds each have their own feature set, and `cargo clippy`
keeps check-only copies of each beside them), in target/*/deps, and drops
incremental caches.

Usage: infra/prune-target.py TARGET_DIR
"""
import collections
import glob
import os
import re
import shutil
import sys

target = sys.argv[1]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
own = {"lifeboat", "lifeboat_agent"} | {os.path.basename(t)[:-3] for t in glob.glob(os.path.join(repo, "restore-tests/tests/*.rs"))}


def is_own(name):
    return name.startswith(("lifeboat_", "liblifeboat_")) or name in own


def used(path):
    st = os.stat(path)
    return max(st.st_mtime, st.st_atime)


freed = 0
for profile in ("debug", "release"):
    deps = os.path.join(target, profile, "deps")
    if not os.path.isdir(deps):
        continue
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    for name in os.listdir(deps):
        m = re.match(r"^(.*?)-([0-9a-f]{16})(\..*)?$", name)
        if m:
            groups[m.group(1)][m.group(2)].append(os.path.join(deps, name))
    for name, hashes in groups.items():
        newest_first = sorted(hashes.values(), key=lambda files: max(used(f) for f in files), reverse=True)
        for files in newest_first[3 if is_own(name) else 16:]:
            for f in files:
                if os.path.isdir(f):
                    shutil.rmtree(f, ignore_errors=True)
                elif os.path.exists(f):
                    freed += os.path.getsize(f)
                    os.remove(f)
    incremental = os.path.join(target, profile, "incremental")
    if os.path.isdir(incremental):
        shutil.rmtree(incremental, ignore_errors=True)
print(f"[prune-target] freed {freed / 2**30:.1f} GiB of stale build artifacts in {target}", file=sys.stderr)
