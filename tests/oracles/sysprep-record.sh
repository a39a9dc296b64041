#!/bin/sh
# Re-records sysprep-virt-sysprep.txt: builds the guest of sysprep-tree.txt (as
# tests/tests/customize.rs does), runs the real virt-sysprep on it with the operations
# skiff's test runs, and lists the tree left (PATH SIZE, sorted) through debugfs.
# Takes 20-60 s under TCG. Run as root from anywhere: tests/oracles/sysprep-record.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ops=$(cat "$here/sysprep-operations.txt")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/sysprep-tree.txt" "$work/root" <<'PY'
import os, sys
src, root = sys.argv[1], sys.argv[2]
for line in open(src):
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        continue
    path, content = line.split("\t", 1)
    p = os.path.join(root, path)
    if path.endswith("/"):
        os.makedirs(p, exist_ok=True)
        continue
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(content.replace("\\n", "\n"))
PY
cp /bin/dash "$work/root/usr/bin/sh"
ln -s usr/bin "$work/root/bin"
mkfs.ext4 -q -F -d "$work/root" "$work/guest.img" 16M
LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg \
    virt-sysprep -q -a "$work/guest.img" --operations "$ops"
mkdir "$work/out"
debugfs -R "rdump / $work/out" "$work/guest.img" 2>/dev/null
# Files and symlinks as "PATH SIZE", directories as "PATH/" (their sizes differ
# between writers), lost+found left out.
python3 - "$work/out" > "$here/sysprep-virt-sysprep.txt" <<'PY'
import os, sys
base = sys.argv[1]
out = []
for d, dirs, files in os.walk(base):
    for n in dirs + files:
        p = os.path.join(d, n)
        rel = os.path.relpath(p, base)
        if rel == "lost+found" or rel.startswith("lost+found/"):
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            out.append(rel + "/")
        else:
            out.append("%s %d" % (rel, os.lstat(p).st_size))
print("\n".join(sorted(out)))
PY
echo "recorded $here/sysprep-virt-sysprep.txt" >&2
