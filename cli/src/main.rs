//! The `skiff` command: a thin CLI over the library. One subcommand per operation; every
//! subcommand shares the launch options (`-a DISK`, `--rw`, `--verbose`, ...).

mod commands;
mod render;
mod shell;

use commands::{bulk as cli_inspect, fs as cli_fs};
use render::json as cli_json;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use skiff::{Appliance, BackingPolicy, Builder, DriveOptions, Format, Session};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "Look inside and change VM disk images"
)]
struct Cli {
    #[command(flatten)]
    launch: LaunchArgs,
    #[command(subcommand)]
    command: Cmd,
}

/// Options for booting the appliance (accepted before or after the subcommand).
#[derive(Args)]
struct LaunchArgs {
    /// Add a disk image: PATH[,format=raw|qcow2][,backing=allow] (format found from the
    /// image header if omitted; an image naming a backing or data file is refused unless
    /// backing=allow).
    #[arg(short = 'a', long = "add", value_name = "DISK", global = true, value_parser = parse_drive)]
    drives: Vec<Drive>,
    /// Attach the disks writable (default: read-only).
    #[arg(long, global = true)]
    rw: bool,
    /// Print qemu's command line and the appliance log on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128, global = true)]
    memory: u32,
    /// Mount DEV at MOUNTPOINT (default `/`) before a filesystem command; repeat for
    /// more, in order. Without -m, the disks' only filesystem is mounted at `/`.
    #[arg(short = 'm', long = "mount", value_name = "DEV[:MOUNTPOINT]", global = true,
          value_parser = cli_fs::parse_mount)]
    mounts: Vec<cli_fs::MountSpec>,
    /// Extra appliance kernel command line (development: `skiff.test=...` knobs).
    #[arg(long, value_name = "CMDLINE", global = true, hide = true)]
    append: Option<String>,
    /// Seconds the appliance may take to boot.
    #[arg(long, value_name = "SECS", default_value_t = 20.0, global = true)]
    timeout: f64,
    /// Print one JSON document (field names in README's CLI reference) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Where the appliance runs: `direct` (qemu child) or `libvirt` (transient domain).
    /// Default: libvirt when --connect, -d or --volume is given, else direct.
    #[arg(long, value_name = "BACKEND", global = true,
          value_parser = ["direct", "libvirt"])]
    backend: Option<String>,
    /// libvirt connection URI (e.g. qemu:///system, qemu+ssh://host/system).
    #[arg(short = 'c', long = "connect", value_name = "URI", global = true)]
    connect: Option<String>,
    /// Add the disks of libvirt guest DOMAIN (name or UUID); read-only unless --rw, and
    /// --rw is refused while the guest runs.
    #[arg(short = 'd', long = "domain", value_name = "DOMAIN", global = true)]
    domain: Option<String>,
    /// Add libvirt storage volume POOL/VOLUME (path and format from libvirt).
    #[arg(long = "volume", value_name = "POOL/VOLUME", global = true)]
    volumes: Vec<String>,
    /// Internal (`each --pool`): use the pre-booted appliance whose RPC channel the
    /// parent skiff handed down as this fd, with the -a disks already attached in order,
    /// instead of launching one.
    #[arg(long, value_name = "FD", global = true, hide = true)]
    inherit_appliance: Option<i32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the disks: `/dev/sda <size in bytes>` per line.
    Devices,
    /// Write LEN raw bytes of DEVICE at OFFSET to stdout.
    PreadDevice {
        device: String,
        #[arg(value_parser = parse_u64)]
        offset: u64,
        #[arg(value_parser = parse_u64)]
        len: u64,
    },
    /// Write stdin to DEVICE at OFFSET (needs --rw).
    PwriteDevice {
        device: String,
        #[arg(value_parser = parse_u64)]
        offset: u64,
    },
    #[command(flatten)]
    Fs(cli_fs::FsCmd),
    #[command(flatten)]
    Insp(cli_inspect::InspCmd),
    /// An interactive shell running many commands in one appliance (guestfish-like);
    /// reads commands from stdin when it is not a terminal.
    #[command(after_help = "Examples:
  skiff shell -a guest.qcow2
  printf 'ls /etc\\ncat /etc/hostname\\n' | skiff shell -a guest.qcow2
  skiff shell --rw -a guest.img -m /dev/sda2 < script.txt   # '-cmd' may fail, '# comment'")]
    Shell,
}

#[derive(Clone)]
struct Drive {
    path: PathBuf,
    format: Option<Format>,
    backing: BackingPolicy,
}

/// `PATH[,format=raw|qcow2][,backing=allow|refuse]` (options in any order). A trailing
/// part that is not a known option stays in the path.
fn parse_drive(s: &str) -> Result<Drive, String> {
    let mut d = Drive {
        path: PathBuf::new(),
        format: None,
        backing: BackingPolicy::Refuse,
    };
    let mut rest = s;
    while let Some((head, opt)) = rest.rsplit_once(',') {
        if let Some(f) = opt.strip_prefix("format=") {
            d.format = Some(f.parse()?);
        } else if let Some(b) = opt.strip_prefix("backing=") {
            d.backing = match b {
                "allow" => BackingPolicy::Allow,
                "refuse" => BackingPolicy::Refuse,
                other => return Err(format!("backing={other}: expected allow or refuse")),
            };
        } else {
            break;
        }
        rest = head;
    }
    if rest.is_empty() {
        return Err("empty disk path".into());
    }
    d.path = rest.into();
    Ok(d)
}

/// A decimal or 0x-hexadecimal number.
fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let cli = match cli.command {
        Cmd::Fs(c) => return cli_fs::run(&cli.launch, c),
        Cmd::Insp(c) => return cli_inspect::run(&cli.launch, c),
        Cmd::Shell => return shell::run(&cli.launch),
        command => Cli { command, ..cli },
    };
    let mut session = launch(&cli.launch)?;
    let result = match cli.command {
        Cmd::Devices if cli.launch.json => cli_json::devices(&session),
        Cmd::Devices => devices(&mut session),
        Cmd::PreadDevice {
            device,
            offset,
            len,
        } => pread_device(&mut session, &device, offset, len),
        Cmd::PwriteDevice { device, offset } => {
            pwrite_device(&mut session, &device, offset, cli.launch.json)
        }
        Cmd::Fs(_) | Cmd::Insp(_) | Cmd::Shell => unreachable!("handled above"),
    };
    match result {
        // Shut down cleanly so writes are flushed and qemu's status is checked.
        Ok(()) => session.shutdown().context("shutting the appliance down"),
        Err(e) => Err(e),
    }
}

fn launch(a: &LaunchArgs) -> Result<Session> {
    if let Some(fd) = a.inherit_appliance {
        return adopt(a, fd);
    }
    let mut b = base_builder(a)?;
    for d in &a.drives {
        b = b.add_drive(
            &d.path,
            DriveOptions {
                format: d.format,
                readonly: !a.rw,
                backing: d.backing,
            },
        );
    }
    for (path, options) in libvirt_drives(a)? {
        b = b.add_drive(path, options);
    }
    Ok(b.launch()?)
}

/// The session on an appliance handed down by `each --pool` (see `--inherit-appliance`).
fn adopt(a: &LaunchArgs, fd: i32) -> Result<Session> {
    if a.domain.is_some() || !a.volumes.is_empty() {
        bail!("--inherit-appliance takes -a disks only");
    }
    let stream = skiff::process::inherited_socket(fd)?;
    let readonly = vec![!a.rw; a.drives.len()];
    let s = Session::adopt(stream, readonly, skiff::appliance::DEFAULT_CALL_TIMEOUT)?;
    if s.devices().len() != a.drives.len() {
        bail!(
            "the inherited appliance has {} disk(s), {} were named with -a",
            s.devices().len(),
            a.drives.len()
        );
    }
    Ok(s)
}

/// The disks named by -d DOMAIN and --volume POOL/VOLUME, looked up through libvirt.
fn libvirt_drives(a: &LaunchArgs) -> Result<Vec<(PathBuf, DriveOptions)>> {
    if a.domain.is_none() && a.volumes.is_empty() {
        return Ok(Vec::new());
    }
    {
        let uri = a.connect.as_deref();
        // A guest's chain is its administrator's definition: followed, still checked by
        // skiff (no protocols, explicit formats, no loops). A volume's header is not.
        let mut found = Vec::new();
        if let Some(d) = &a.domain {
            for g in skiff::libvirt::domain_drives(uri, d, a.rw)? {
                found.push((g, BackingPolicy::Allow));
            }
        }
        for v in &a.volumes {
            found.push((
                skiff::libvirt::volume_drive(uri, v, !a.rw)?,
                BackingPolicy::Refuse,
            ));
        }
        Ok(found
            .into_iter()
            .map(|(g, backing)| {
                let o = DriveOptions {
                    format: Some(g.format),
                    readonly: g.readonly,
                    backing,
                };
                (g.path, o)
            })
            .collect())
    }
}

/// The launch settings of `a` without its disks.
fn base_builder(a: &LaunchArgs) -> Result<Builder> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let mut b = Appliance::builder()
        .memory_mib(a.memory)
        .timeout(Duration::from_secs_f64(a.timeout))
        .verbose(a.verbose);
    if let Some(c) = &a.append {
        b = b.kernel_cmdline(c);
    }
    let libvirt_wanted = a.connect.is_some() || a.domain.is_some() || !a.volumes.is_empty();
    let backend = a
        .backend
        .as_deref()
        .unwrap_or(if libvirt_wanted { "libvirt" } else { "direct" });
    b = b.backend(skiff::Backend::parse(backend, a.connect.clone())?);
    Ok(b)
}

fn devices(s: &mut Session) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for d in s.devices() {
        writeln!(out, "{} {}", d.name, d.size)?;
    }
    out.flush()?;
    Ok(())
}

fn pread_device(s: &mut Session, device: &str, offset: u64, len: u64) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let chunk = u64::from(skiff::wire::MAX_CHUNK);
    let mut done = 0;
    while done < len {
        let want = (len - done).min(chunk);
        let at = offset
            .checked_add(done)
            .context("offset + length overflows")?;
        let data = s.pread_device(device, at, want)?;
        out.write_all(&data)?;
        if (data.len() as u64) < want {
            break;
        }
        done += want;
    }
    out.flush()?;
    Ok(())
}

fn pwrite_device(s: &mut Session, device: &str, offset: u64, json: bool) -> Result<()> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut data)
        .context("reading stdin")?;
    s.pwrite_device(device, offset, &data)?;
    if json {
        render::json_out(&skiff::json::DoneDoc::bytes(data.len() as u64))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_specs() {
        let d = parse_drive("a.img").unwrap();
        assert_eq!(d.path, PathBuf::from("a.img"));
        assert_eq!(d.format, None);
        let d = parse_drive("/x/a,b.qcow2,format=qcow2").unwrap();
        assert_eq!(d.path, PathBuf::from("/x/a,b.qcow2"));
        assert_eq!(d.format, Some(Format::Qcow2));
        let d = parse_drive("weird,name").unwrap();
        assert_eq!(d.path, PathBuf::from("weird,name"));
        assert!(parse_drive("a.img,format=vmdk").is_err());
        assert!(parse_drive(",format=raw").is_err());
        assert_eq!(d.backing, BackingPolicy::Refuse);
        for spec in [
            "t.qcow2,backing=allow,format=qcow2",
            "t.qcow2,format=qcow2,backing=allow",
        ] {
            let d = parse_drive(spec).unwrap();
            assert_eq!(d.path, PathBuf::from("t.qcow2"));
            assert_eq!(d.format, Some(Format::Qcow2));
            assert_eq!(d.backing, BackingPolicy::Allow);
        }
        assert!(parse_drive("t.qcow2,backing=yes").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("512").unwrap(), 512);
        assert_eq!(parse_u64("0x200").unwrap(), 512);
        assert!(parse_u64("-1").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "skiff",
            "pread-device",
            "-a",
            "x.img",
            "/dev/sda",
            "0",
            "512",
        ])
        .unwrap();
        assert_eq!(c.launch.drives.len(), 1);
        let c = Cli::try_parse_from(["skiff", "--rw", "devices", "-a", "x", "-a", "y"]).unwrap();
        assert_eq!(c.launch.drives.len(), 2);
        assert!(c.launch.rw);
    }
}
