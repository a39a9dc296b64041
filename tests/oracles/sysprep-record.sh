#!/bin/sh
# Re-records sysprep-virt-sysprep.txt and sysprep-virt-sysprep-defaults.txt: builds the
# guest of sysprep-tree.txt (as tests/tests/customize.rs does), runs the real
# virt-sysprep on a fresh copy of it (with the operations of sysprep-operations.txt,
# then with its defaults), and lists the tree left (PATH SIZE for files and symlinks,
# PATH/ for directories, sorted; lost+found left out) through debugfs.
# Takes 1-2 min under TCG. Run as root from anywhere: tests/oracles/sysprep-record.sh
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
cat > "$work/list.py" <<'PY'
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
cp /bin/dash "$work/root/usr/bin/sh"
ln -s usr/bin "$work/root/bin"
mkfs.ext4 -q -F -d "$work/root" "$work/guest.img" 16M

# record OUT [VIRT-SYSPREP OPTIONS]
record() {
    out=$1
    shift
    img="$work/copy.img"
    cp --sparse=always "$work/guest.img" "$img"
    LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg \
        virt-sysprep -q -a "$img" "$@"
    rm -rf "$work/out"
    mkdir "$work/out"
    debugfs -R "rdump / $work/out" "$img" 2>/dev/null
    python3 "$work/list.py" "$work/out" > "$out"
    echo "recorded $out" >&2
}
record "$here/sysprep-virt-sysprep.txt" --operations "$ops"
record "$here/sysprep-virt-sysprep-defaults.txt"
