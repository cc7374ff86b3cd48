#!/usr/bin/env python3
"""Keep the shared cargo target directory from filling the disk.

Every clone builds Lifeboat's own crates into the shared target directory
under new hashes (the path is part of them), so old copies pile up (tens of
GiB after a few dozen clones). This keeps, per artifact name, the three
most recently built hashes in target/*/deps and drops the rest, and drops
incremental caches. Dependencies' current builds are always among the newest
three, so nothing in use is rebuilt.

Usage: infra/prune-target.py TARGET_DIR
"""
import collections
import os
import re
import shutil
import sys

target = sys.argv[1]
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
    for hashes in groups.values():
        newest_first = sorted(hashes.values(), key=lambda files: max(os.path.getmtime(f) for f in files), reverse=True)
        for files in newest_first[3:]:
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
