//! First-boot scripts (`--firstboot SCRIPT`, `--firstboot-command CMD`), installed where
//! virt-customize installs them so both tools' scripts share one queue:
//! `/usr/lib/virt-sysprep/scripts/NNNN-name` run in order, once, by
//! `/usr/lib/virt-sysprep/firstboot.sh` (our own runner), started at boot by a systemd
//! unit `guestfs-firstboot.service` (enabled for `multi-user.target`) or, on a guest
//! without systemd, a SysV init script `/etc/init.d/guestfs-firstboot` linked from the
//! runlevel 2-5 directories. The output goes to `/root/virt-sysprep-firstboot.log`;
//! each script that ran moves to `scripts-done/`.

use super::guest::{Guest, NewAttrs};
use crate::error::{Error, Result};
use wire::FileType;

pub const DIR: &str = "/usr/lib/virt-sysprep";
pub const SCRIPTS: &str = "/usr/lib/virt-sysprep/scripts";
pub const RUNNER: &str = "/usr/lib/virt-sysprep/firstboot.sh";
pub const UNIT: &str = "/etc/systemd/system/guestfs-firstboot.service";
pub const UNIT_LINK: &str = "/etc/systemd/system/multi-user.target.wants/guestfs-firstboot.service";
pub const SYSV: &str = "/etc/init.d/guestfs-firstboot";

const RUNNER_TEXT: &str = r#"#!/bin/sh -
# Installed by skiff customize (--firstboot, --firstboot-command): runs each script of
# /usr/lib/virt-sysprep/scripts once, in name order, at the guest's first boot, and
# moves it to scripts-done. Output: /root/virt-sysprep-firstboot.log.
d=/usr/lib/virt-sysprep/scripts
done_dir=/usr/lib/virt-sysprep/scripts-done
log=/root/virt-sysprep-firstboot.log

case "$1" in
  start|"") ;;
  *) exit 0 ;;
esac

mkdir -p "$done_dir"
for f in "$d"/*; do
  [ -f "$f" ] || continue
  name=${f##*/}
  echo "=== Running $name ===" >> "$log"
  "$f" >> "$log" 2>&1
  echo "=== Exit code: $? ===" >> "$log"
  mv -f "$f" "$done_dir/$name"
done
exit 0
"#;

const UNIT_TEXT: &str = "[Unit]
Description=First-boot scripts (skiff customize / virt-customize)
After=network.target
Before=prefdm.service display-manager.service

[Service]
Type=oneshot
ExecStart=/usr/lib/virt-sysprep/firstboot.sh start
RemainAfterExit=yes
StandardOutput=journal+console
TimeoutSec=0

[Install]
WantedBy=multi-user.target
";

const SYSV_TEXT: &str = r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          guestfs-firstboot
# Required-Start:    $all
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: First-boot scripts (skiff customize / virt-customize)
### END INIT INFO
case "$1" in
  start) exec /usr/lib/virt-sysprep/firstboot.sh start ;;
  *) exit 0 ;;
esac
"#;

/// Does the guest boot with systemd?
fn has_systemd(g: &mut Guest) -> Result<bool> {
    for p in [
        "/usr/lib/systemd/systemd",
        "/lib/systemd/systemd",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ] {
        if g.stat(p)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A script name from a command or file name: letters, digits, `-` and `_` only, short.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "script".into() } else { s }
}

/// The runner and its boot hook, installed once (an existing installation, ours or
/// virt-customize's, is kept).
fn install_runner(g: &mut Guest) -> Result<()> {
    let root = NewAttrs::root(0o755);
    g.mkdir_p(SCRIPTS, root)?;
    if !g.exists(RUNNER)? {
        g.replace(RUNNER, RUNNER_TEXT.as_bytes(), root)?;
    }
    if has_systemd(g)? {
        g.mkdir_p("/etc/systemd/system/multi-user.target.wants", root)?;
        if !g.exists(UNIT)? {
            g.replace(UNIT, UNIT_TEXT.as_bytes(), NewAttrs::root(0o644))?;
        }
        if !g.exists(UNIT_LINK)? {
            g.symlink(UNIT, UNIT_LINK)?;
        }
        return Ok(());
    }
    if !g.is_dir("/etc/init.d")? {
        return Err(Error::InvalidArgument(
            "the guest has neither systemd nor /etc/init.d: no way to run first-boot scripts"
                .into(),
        ));
    }
    if !g.exists(SYSV)? {
        g.replace(SYSV, SYSV_TEXT.as_bytes(), root)?;
    }
    let mut linked = false;
    for rl in 2..=5 {
        for dir in [format!("/etc/rc{rl}.d"), format!("/etc/rc.d/rc{rl}.d")] {
            if g.is_dir(&dir)? {
                let link = format!("{dir}/S99guestfs-firstboot");
                if !g.exists(&link)? {
                    g.symlink("../init.d/guestfs-firstboot", &link)?;
                }
                linked = true;
            }
        }
    }
    if !linked {
        return Err(Error::InvalidArgument(
            "the guest has no runlevel directories (/etc/rcN.d) for the first-boot script".into(),
        ));
    }
    Ok(())
}

/// Adds one first-boot script (`content`, made executable), named after `name`, after
/// those already queued.
pub fn add(g: &mut Guest, name: &str, content: &[u8]) -> Result<String> {
    install_runner(g)?;
    let mut next = 1u32;
    if g.is_real_dir(SCRIPTS)? {
        for e in g.read_dir(SCRIPTS)? {
            if e.stat.file_type != FileType::Regular {
                continue;
            }
            let digits: String = e.name.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u32>() {
                next = next.max(n.saturating_add(1));
            }
        }
    }
    let path = format!("{SCRIPTS}/{next:04}-{}", sanitize(name));
    g.replace(&path, content, NewAttrs::root(0o755))?;
    Ok(path)
}

/// The script for `--firstboot-command CMD`.
pub fn command_script(cmd: &str) -> String {
    format!("#!/bin/sh\n{cmd}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize("useradd -m bob"), "useradd--m-bob");
        assert_eq!(sanitize("/tmp/x.sh"), "tmp-x-sh");
        assert_eq!(sanitize("!!"), "script");
        assert!(sanitize(&"a".repeat(500)).len() <= 60);
    }
}
