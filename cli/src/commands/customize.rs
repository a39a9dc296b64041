//! `customize` and `sysprep`: virt-customize's and virt-sysprep's file operations
//! ([`skiff::customize`]). The operations run in the order given on the command line,
//! which clap's derived structs lose: the order is read back from the argument matches
//! (`indices_of`).

use super::{Output, Sink};
use crate::launch::{LaunchArgs, launch, mount_planned};
use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args, Subcommand};
use skiff::customize::{self, Op, Options, sysprep};

/// The customize operations (shared by `customize` and `sysprep`), virt-customize's
/// option names.
#[derive(Args, Clone, Default)]
pub struct CustomizeOps {
    /// Set the hostname (/etc/hostname; /etc/hosts and /etc/sysconfig/network where present).
    #[arg(long = "hostname", id = "hostname", value_name = "HOSTNAME")]
    hostname: Vec<String>,
    /// Append a public key to USER's ~/.ssh/authorized_keys (from the host's newest
    /// ~/.ssh/id*.pub without a selector).
    #[arg(
        long = "ssh-inject",
        id = "ssh-inject",
        value_name = "USER[:file:PATH|:string:KEY]"
    )]
    ssh_inject: Vec<String>,
    /// Set root's password (sha512-crypt in /etc/shadow).
    #[arg(
        long = "root-password",
        id = "root-password",
        value_name = "password:PW|file:PATH|random|disabled|locked[:...]"
    )]
    root_password: Vec<String>,
    /// Set USER's password.
    #[arg(long = "password", id = "password", value_name = "USER:SELECTOR")]
    password: Vec<String>,
    /// Set the timezone (/etc/localtime symlink, /etc/timezone where used).
    #[arg(long = "timezone", id = "timezone", value_name = "TZ")]
    timezone: Vec<String>,
    /// Write CONTENT to FILE (replaced whole; an existing file keeps owner, mode, labels).
    #[arg(long = "write", id = "write", value_name = "FILE:CONTENT")]
    write: Vec<String>,
    /// Append LINE to FILE (created if missing).
    #[arg(long = "append-line", id = "append-line", value_name = "FILE:LINE")]
    append_line: Vec<String>,
    /// Upload a host file to the guest (a directory: the file keeps its name).
    #[arg(long = "upload", id = "upload", value_name = "FILE:DEST")]
    upload: Vec<String>,
    /// Copy a host file or tree into a guest directory (recursive).
    #[arg(long = "copy-in", id = "copy-in", value_name = "LOCALPATH:REMOTEDIR")]
    copy_in: Vec<String>,
    /// Create a directory (and its parents).
    #[arg(long = "mkdir", id = "mkdir", value_name = "DIR")]
    mkdir: Vec<String>,
    /// Delete a file or directory, recursively (glob patterns allowed).
    #[arg(long = "delete", id = "delete", value_name = "PATH")]
    delete: Vec<String>,
    /// Move (rename) a file or directory.
    #[arg(long = "move", id = "move", value_name = "SOURCE:DEST")]
    r#move: Vec<String>,
    /// Change permissions (0755 is octal; without a leading 0 the number is decimal).
    #[arg(long = "chmod", id = "chmod", value_name = "PERMISSIONS:FILE")]
    chmod: Vec<String>,
    /// Create symbolic link(s) LINK pointing to TARGET.
    #[arg(long = "link", id = "link", value_name = "TARGET:LINK[:LINK...]")]
    link: Vec<String>,
    /// Create an empty file or update its times.
    #[arg(long = "touch", id = "touch", value_name = "FILE")]
    touch: Vec<String>,
    /// Truncate a file to zero size.
    #[arg(long = "truncate", id = "truncate", value_name = "FILE")]
    truncate: Vec<String>,
    /// Install a host script to run once at the guest's first boot.
    #[arg(long = "firstboot", id = "firstboot", value_name = "SCRIPT")]
    firstboot: Vec<String>,
    /// Run a command once at the guest's first boot.
    #[arg(
        long = "firstboot-command",
        id = "firstboot-command",
        value_name = "CMD"
    )]
    firstboot_command: Vec<String>,
    /// Create /.autorelabel (skiff cannot run setfiles).
    #[arg(long = "selinux-relabel")]
    selinux_relabel: bool,
    /// Not offered (skiff never runs guest binaries): use --firstboot-command.
    #[arg(long = "run", id = "run", hide = true, value_name = "SCRIPT")]
    run: Vec<String>,
    #[arg(
        long = "run-command",
        id = "run-command",
        hide = true,
        value_name = "CMD"
    )]
    run_command: Vec<String>,
    #[arg(long = "install", id = "install", hide = true, value_name = "PKGS")]
    install: Vec<String>,
    #[arg(long = "update", hide = true)]
    update: bool,
}

/// The operation ids, in the order an `ArgMatches` is searched.
const OP_IDS: &[&str] = &[
    "hostname",
    "ssh-inject",
    "root-password",
    "password",
    "timezone",
    "write",
    "append-line",
    "upload",
    "copy-in",
    "mkdir",
    "delete",
    "move",
    "chmod",
    "link",
    "touch",
    "truncate",
    "firstboot",
    "firstboot-command",
];

impl CustomizeOps {
    /// The operations in command-line order (`m`: this subcommand's matches; without
    /// them, in the fixed order of [`OP_IDS`]).
    fn ops(&self, m: Option<&ArgMatches>) -> Result<Vec<Op>> {
        for (name, given) in [
            ("run", !self.run.is_empty()),
            ("run-command", !self.run_command.is_empty()),
            ("install", !self.install.is_empty()),
            ("update", self.update),
        ] {
            if given {
                return Err(customize::not_offered(name).into());
            }
        }
        let mut found: Vec<(usize, &str, String)> = Vec::new();
        for (n, id) in OP_IDS.iter().enumerate() {
            let values: Vec<String> = match m.and_then(|m| m.get_many::<String>(id)) {
                Some(v) => v.cloned().collect(),
                None => self.values(id).to_vec(),
            };
            let indices: Vec<usize> = m
                .and_then(|m| m.indices_of(id))
                .map(|i| i.collect())
                .unwrap_or_else(|| (0..values.len()).map(|k| n * 100_000 + k).collect());
            for (i, v) in indices.into_iter().zip(values) {
                found.push((i, id, v));
            }
        }
        found.sort_by_key(|(i, _, _)| *i);
        let mut ops = Vec::new();
        for (_, id, v) in found {
            ops.push(Op::parse(id, &v)?);
        }
        if self.selinux_relabel {
            ops.push(Op::SelinuxRelabel);
        }
        Ok(ops)
    }

    fn values(&self, id: &str) -> &[String] {
        match id {
            "hostname" => &self.hostname,
            "ssh-inject" => &self.ssh_inject,
            "root-password" => &self.root_password,
            "password" => &self.password,
            "timezone" => &self.timezone,
            "write" => &self.write,
            "append-line" => &self.append_line,
            "upload" => &self.upload,
            "copy-in" => &self.copy_in,
            "mkdir" => &self.mkdir,
            "delete" => &self.delete,
            "move" => &self.r#move,
            "chmod" => &self.chmod,
            "link" => &self.link,
            "touch" => &self.touch,
            "truncate" => &self.truncate,
            "firstboot" => &self.firstboot,
            "firstboot-command" => &self.firstboot_command,
            _ => &[],
        }
    }
}

#[derive(Subcommand)]
pub enum CustomizeCmd {
    /// Change a guest image before it boots, like virt-customize: the operations run in
    /// the order given, in one appliance. File changes only: skiff never runs guest
    /// binaries, so --run, --run-command, --install and --update are not offered (use
    /// --firstboot-command to run something at the guest's first boot). The disks are
    /// opened writable (read-only with --dry-run).
    #[command(after_help = "Examples:
  skiff customize -a guest.img --hostname web1 --ssh-inject root:file:id_ed25519.pub \\
        --root-password password:s3cret
  skiff customize -a guest.img --dry-run --delete '/var/log/*.log' --write /etc/motd:hello
  skiff each -j 2 images/*.img -- customize --timezone Europe/Paris")]
    Customize {
        /// Check every operation and print what would change; write nothing.
        #[arg(long = "dry-run", alias = "dryrun", short = 'n')]
        dry_run: bool,
        #[command(flatten)]
        ops: CustomizeOps,
    },
    /// Remove what makes a clone a clone, like virt-sysprep (its operation names and
    /// defaults; file operations only): machine-id emptied, SSH host keys, logs, DHCP
    /// leases, ... The customize options apply too (operation `customize`).
    #[command(after_help = "Examples:
  skiff sysprep -a clone.img
  skiff sysprep -a clone.img --operations machine-id,ssh-hostkeys --hostname clone1
  skiff sysprep --list-operations
  skiff each -j 2 clones/*.img -- sysprep --dry-run")]
    Sysprep {
        /// Check and print what would change; write nothing.
        #[arg(long = "dry-run", alias = "dryrun", short = 'n')]
        dry_run: bool,
        /// The operations to run (comma-separated; `defaults`, `all`, `-NAME` allowed).
        #[arg(long = "operations", alias = "operation", value_name = "LIST")]
        operations: Option<String>,
        /// Add operations to the selection.
        #[arg(long = "enable", value_name = "LIST")]
        enable: Vec<String>,
        /// Remove operations from the selection.
        #[arg(long = "disable", value_name = "LIST")]
        disable: Vec<String>,
        /// List the operations (`*`: on by default; `-`: not offered by skiff).
        #[arg(long = "list-operations")]
        list_operations: bool,
        #[command(flatten)]
        ops: CustomizeOps,
    },
}

/// Runs `customize` or `sysprep`; `m`: the subcommand's argument matches (for the
/// order of the operations).
pub fn run(
    a: &LaunchArgs,
    cmd: CustomizeCmd,
    m: Option<&ArgMatches>,
    sink: &mut dyn Sink,
) -> Result<()> {
    let (dry_run, ops, sysprep_ops) = match cmd {
        CustomizeCmd::Customize { dry_run, ops } => {
            let ops = ops.ops(m)?;
            if ops.is_empty() {
                bail!("no operation given (see skiff customize --help)");
            }
            (dry_run, ops, None)
        }
        CustomizeCmd::Sysprep {
            dry_run,
            operations,
            enable,
            disable,
            list_operations,
            ops,
        } => {
            if list_operations {
                return sink.emit(Output::SysprepOperations(sysprep::OPERATIONS));
            }
            let selected = sysprep::select(operations.as_deref(), &enable, &disable)?;
            (dry_run, ops.ops(m)?, Some(selected))
        }
    };
    if a.drives.is_empty() && a.domain.is_none() && a.volumes.is_empty() {
        bail!("add the guest's disk(s) with -a DISK (or -d DOMAIN)");
    }
    if a.inherit_appliance.is_some() && !dry_run {
        bail!(
            "customize and sysprep write to the disk: `each --pool` attaches images read-only \
             (run `each` without --pool, or add --dry-run)"
        );
    }
    let mut a = a.clone();
    a.rw = !dry_run;
    let mut s = launch(&a)?;
    let opts = Options { dry_run };
    let r = mount_planned(&mut s, &a).and_then(|()| {
        Ok(match &sysprep_ops {
            None => customize::customize(&mut s, &ops, &opts)?,
            Some(sel) => sysprep::sysprep(&mut s, sel, &ops, &opts)?,
        })
    });
    let down = s.shutdown().context("shutting the appliance down");
    let images: Vec<String> = a
        .drives
        .iter()
        .map(|d| d.path.display().to_string())
        .chain(a.domain.clone())
        .chain(a.volumes.iter().cloned())
        .collect();
    let report = r.with_context(|| images.join(", "))?;
    down?;
    sink.emit(Output::Customize(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// The operations of `args`, as `run` gets them.
    fn parsed(args: &[&str]) -> Result<Vec<Op>> {
        let m = crate::Cli::command().try_get_matches_from(args)?;
        let cli = crate::Cli::from_arg_matches(&m)?;
        let crate::Cmd::Customize(c) = cli.command else {
            panic!("a customize command");
        };
        let sub = m.subcommand().map(|(_, m)| m);
        match *c {
            CustomizeCmd::Customize { ops, .. } | CustomizeCmd::Sysprep { ops, .. } => ops.ops(sub),
        }
    }

    #[test]
    fn operations_keep_command_line_order() {
        let ops = parsed(&[
            "skiff",
            "customize",
            "-a",
            "x.img",
            "--write",
            "/a:1",
            "--hostname",
            "h1",
            "--delete",
            "/tmp/x",
            "--write",
            "/b:2",
            "--selinux-relabel",
        ])
        .unwrap();
        assert_eq!(
            ops,
            vec![
                Op::parse("write", "/a:1").unwrap(),
                Op::parse("hostname", "h1").unwrap(),
                Op::parse("delete", "/tmp/x").unwrap(),
                Op::parse("write", "/b:2").unwrap(),
                Op::SelinuxRelabel,
            ]
        );
        let ops = parsed(&[
            "skiff",
            "sysprep",
            "-a",
            "x.img",
            "--operations",
            "machine-id",
            "--touch",
            "/t",
        ])
        .unwrap();
        assert_eq!(ops, vec![Op::Touch("/t".into())]);
        let e = parsed(&["skiff", "customize", "-a", "x", "--install", "vim"]).unwrap_err();
        assert!(e.to_string().contains("--firstboot-command"), "{e}");
        let e = parsed(&["skiff", "customize", "-a", "x", "--update"]).unwrap_err();
        assert!(e.to_string().contains("not offered"), "{e}");
    }
}
