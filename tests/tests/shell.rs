//! `skiff shell` driven through stdin (a script): many commands in one appliance,
//! comments, `-` lines that may fail, the first other failure ends the script with a
//! non-zero status, and writes with --rw read back by a second shell.

use skiff_tests::guests;

#[test]
fn script_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let img = guests::debian_gpt(dir.path(), "debian.img", "shell-host");
    let d = img.to_str().unwrap();

    // Without -m: mounted like the guest (root, then the ESP).
    let script = b"# inspect a guest\n\
        cat /etc/hostname\n\
        mounts\n\
        -cat /does/not/exist\n\
        cat /boot/efi/hello.txt\n\
        is-dir /usr/bin\n\
        cat /also/missing\n\
        cat /etc/hostname\n";
    let o = guests::skiff_cli(&["shell", "-a", d], script);
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success(), "line 7 fails the script: {err}");
    assert_eq!(
        out, "shell-host\n/dev/sda2 / ext4 ro\n/dev/sda1 /boot/efi vfat ro\nefi\ntrue\n",
        "stops before the last line; stderr: {err}"
    );
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("line 7"), "{err}");

    // --rw: writes in one shell, read back by another; every line succeeds.
    let script = b"mkdir-p-is-not-a-command-so-this-line-may-fail\n";
    let o = guests::skiff_cli(&["shell", "-a", d], script);
    assert!(!o.status.success());
    let script = b"mkdir -p /srv/a/b\nwrite /srv/a/b/note \"hello world\"\n\
        append /srv/a/b/note '!'\nexit\ncat /etc/hostname\n";
    let o = guests::skiff_cli(&["shell", "--rw", "-a", d, "-m", "/dev/sda2"], script);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "exit stops before the cat");
    let o = guests::skiff_cli(&["shell", "-a", d], b"cat /srv/a/b/note\nfind /srv\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "hello world!a\na/b\na/b/note\n"
    );
}
