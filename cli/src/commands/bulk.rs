//! The inspection and bulk subcommands of the `skiff` CLI: `inspect`, `df` and `each`.
//! The work is the library's ([`skiff::inspect`], [`skiff::df`], [`skiff::each`]); this
//! file parses arguments and prints.
//!
//! `each` runs every image's command in a child `skiff` process (this same binary),
//! N at a time from worker threads: the command implementations print to stdout, and a
//! process per image keeps each image's output and exit status apart (and an image
//! that crashes its appliance or the command takes nothing else down). The cost is one
//! exec per image, small beside the appliance boot. `df` runs in-process: each worker
//! thread launches its own appliance through the library.

use crate::render::{self as output, safe};
use crate::{LaunchArgs, base_builder, launch};
use anyhow::{Context, Result, bail};
use clap::{ArgAction, Subcommand};
use serde::Serialize;
use skiff::df::{DfEntry, human_size};
use skiff::each::{Progress, default_jobs, run_parallel};
use skiff::inspect::{OsInfo, inspect_os};
use skiff::{DriveOptions, Pool, PoolOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Subcommand)]
pub enum InspCmd {
    /// Find the operating system(s) on the disks: type, distro, version, hostname,
    /// architecture, package format, and /etc/fstab resolved to devices.
    #[command(after_help = "Examples:
  skiff inspect -a guest.qcow2
  skiff inspect --json -a disk1.img -a disk2.img | jq '.operating_systems[0].hostname'")]
    Inspect,
    /// Size, used, available and use% of every filesystem of every image (like virt-df),
    /// each image in its own appliance, N at a time.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:
  skiff df guest1.img guest2.qcow2
  skiff df -h -j 4 images/*.qcow2
  skiff df --json images/*.img | jq '.filesystems[] | select(.use_percent > 90)'"
    )]
    Df {
        /// Human-readable sizes (K, M, G: powers of 1024).
        #[arg(short = 'h', long = "human-readable")]
        human: bool,
        /// Images measured at once (default: the number of cores).
        #[arg(short = 'j', long = "jobs", value_name = "N")]
        jobs: Option<usize>,
        /// Boot N pristine appliances ahead of need and hot-add each image to one of
        /// them (still one appliance per image, never reused for another).
        #[arg(long, conflicts_with = "shared")]
        pool: bool,
        /// Reuse one read-only appliance per job for many images, hot-adding them one
        /// after another (like virt-df). Only for images of a single trust domain: a
        /// hostile image could attack the appliance and see the images after it.
        #[arg(long)]
        shared: bool,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        /// Disk images (each one is a separate guest).
        #[arg(value_name = "DISK", required = true)]
        images: Vec<PathBuf>,
    },
    /// Run one read command on every image, each in its own appliance, N at a time;
    /// output lines are prefixed with the image name, a summary ends the run, and the
    /// exit status is non-zero if any image failed.
    #[command(after_help = "Examples:
  skiff each guests/*.qcow2 -- cat /etc/hostname
  skiff each -j 2 a.img b.img -- inspect
  skiff each --pool guests/*.img -- df       # appliances booted ahead, one per image
  skiff each --json guests/*.img -- ls /etc    # one JSON document per image and line")]
    Each {
        /// Images run at once (default: the number of cores).
        #[arg(short = 'j', long = "jobs", value_name = "N")]
        jobs: Option<usize>,
        /// Keep N pristine appliances booted ahead of need and hot-add each image to one
        /// of them, so an image's command does not wait for a boot (still one appliance
        /// per image, destroyed afterwards, never reused for another).
        #[arg(long)]
        pool: bool,
        /// Disk images (each one is a separate guest).
        #[arg(value_name = "DISK", required = true)]
        images: Vec<PathBuf>,
        /// The skiff command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

pub fn run(a: &LaunchArgs, cmd: InspCmd) -> Result<()> {
    match cmd {
        InspCmd::Inspect => inspect(a),
        InspCmd::Df {
            human,
            jobs,
            images,
            pool,
            shared,
            ..
        } => df(a, human, jobs, images, pool, shared),
        InspCmd::Each {
            jobs,
            pool,
            images,
            command,
        } => each(a, jobs, pool, images, command),
    }
}

/// `--json` document of `inspect`.
#[derive(Serialize)]
struct InspectDoc<'a> {
    operating_systems: &'a [OsInfo],
}

fn inspect(a: &LaunchArgs) -> Result<()> {
    if a.drives.is_empty() {
        bail!("add the disk(s) to inspect with -a DISK");
    }
    let mut s = launch(a)?;
    let found = inspect_os(&mut s);
    let down = s.shutdown().context("shutting the appliance down");
    let found = found?;
    down?;
    if a.json {
        return output::json_out(&InspectDoc {
            operating_systems: &found,
        });
    }
    let mut out = std::io::stdout().lock();
    if found.is_empty() {
        writeln!(out, "no operating system found")?;
    }
    for os in &found {
        write_os(&mut out, os)?;
    }
    Ok(())
}

fn write_os(out: &mut impl Write, os: &OsInfo) -> Result<()> {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "unknown".into(), safe);
    writeln!(out, "{}:", os.root)?;
    writeln!(out, "  type: {}", os.os_type.as_str())?;
    writeln!(out, "  distro: {}", opt(&os.distro))?;
    writeln!(out, "  version: {}", opt(&os.version))?;
    writeln!(out, "  product name: {}", opt(&os.product_name))?;
    writeln!(out, "  hostname: {}", opt(&os.hostname))?;
    writeln!(out, "  arch: {}", opt(&os.arch))?;
    writeln!(out, "  package format: {}", opt(&os.package_format))?;
    if !os.fstab.is_empty() {
        writeln!(out, "  mountpoints:")?;
        for e in &os.fstab {
            writeln!(
                out,
                "    {} {} ({} {})",
                safe(&e.mountpoint),
                e.device.as_deref().unwrap_or("-"),
                safe(&e.spec),
                safe(&e.fstype)
            )?;
        }
    }
    Ok(())
}

/// One row of `df --json`: a filesystem of one image.
#[derive(Serialize)]
struct DfRow<'a> {
    image: String,
    #[serde(flatten)]
    fs: &'a DfEntry,
}

/// An image that could not be measured (`df` and `each` `--json`).
#[derive(Serialize)]
struct ImageError {
    image: String,
    error: String,
}

#[derive(Serialize)]
struct DfDoc<'a> {
    filesystems: Vec<DfRow<'a>>,
    errors: Vec<ImageError>,
}

fn df(
    a: &LaunchArgs,
    human: bool,
    jobs: Option<usize>,
    images: Vec<PathBuf>,
    pool: bool,
    shared: bool,
) -> Result<()> {
    if !a.drives.is_empty() || !a.mounts.is_empty() || a.rw {
        bail!("df takes the images as arguments (df DISK...), without -a, -m or --rw");
    }
    let builder = base_builder(a)?;
    let mut results = Vec::new();
    results.resize_with(images.len(), || None);
    let mut progress = Progress::new(images.len());
    let jobs = jobs.unwrap_or_else(default_jobs);
    let done = |i: usize, r: skiff::Result<skiff::df::Df>| {
        progress.tick(r.is_ok());
        results[i] = Some(r);
    };
    if shared {
        skiff::pool::df_images_shared(&builder, &images, jobs, done)?;
    } else if pool {
        skiff::pool::df_images_pooled(&builder, &images, jobs, done)?;
    } else {
        skiff::df::df_images(&builder, &images, jobs, done);
    }
    progress.finish();

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (img, r) in images.iter().zip(&results) {
        let name = img.display().to_string();
        match r {
            Some(Ok(d)) => {
                rows.extend(d.filesystems.iter().map(|fs| DfRow {
                    image: name.clone(),
                    fs,
                }));
                errors.extend(d.skipped.iter().map(|s| ImageError {
                    image: name.clone(),
                    error: format!("{}: {}", s.device, s.error),
                }));
            }
            Some(Err(e)) => errors.push(ImageError {
                image: name,
                error: e.to_string(),
            }),
            None => unreachable!("every image has a result"),
        }
    }
    let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
    if a.json {
        output::json_out(&DfDoc {
            filesystems: rows,
            errors,
        })?;
    } else {
        let mut table = vec![[
            "Filesystem".to_string(),
            if human { "Size" } else { "1K-blocks" }.into(),
            "Used".into(),
            "Available".into(),
            "Use%".into(),
        ]];
        let n = |b: u64| {
            if human {
                human_size(b)
            } else {
                (b / 1024).to_string()
            }
        };
        for r in &rows {
            table.push([
                format!("{}:{}", r.image, r.fs.device),
                n(r.fs.size),
                n(r.fs.used),
                n(r.fs.available),
                format!("{}%", r.fs.use_percent),
            ]);
        }
        print_table(&table)?;
        for e in &errors {
            eprintln!("skiff: {}: {}", e.image, e.error);
        }
    }
    if failed > 0 {
        bail!(
            "{} ok, {failed} failed",
            images.len().saturating_sub(failed)
        );
    }
    Ok(())
}

/// The first column left-aligned, the rest right-aligned, like df.
fn print_table(rows: &[[String; 5]]) -> Result<()> {
    let mut w = [0usize; 5];
    for r in rows {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in rows {
        writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
            safe(&r[0]),
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )?;
    }
    out.flush()?;
    Ok(())
}

/// One image's run in `each`.
struct Outcome {
    ok: bool,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// One line of `each --json`.
#[derive(Serialize)]
struct EachDoc {
    image: String,
    ok: bool,
    exit_code: Option<i32>,
    /// The command's own JSON document (or its text output when it is not JSON).
    output: serde_json::Value,
    /// The command's stderr (its error message), if any.
    error: Option<String>,
}

/// Commands that make no sense once per image.
const NOT_EACH: &[&str] = &["each", "shell", "df", "help"];

fn each(
    a: &LaunchArgs,
    jobs: Option<usize>,
    pool: bool,
    images: Vec<PathBuf>,
    cmd: Vec<String>,
) -> Result<()> {
    if !a.drives.is_empty() || a.rw {
        bail!("each takes the images as arguments (each DISK... -- COMMAND), without -a or --rw");
    }
    let Some(first) = cmd.first() else {
        bail!("no command after --");
    };
    if NOT_EACH.contains(&first.as_str()) {
        bail!("{first:?} cannot run under each");
    }
    let exe = std::env::current_exe().context("finding the skiff binary")?;
    // The options that apply to every image, passed on to each child.
    let mut common: Vec<String> = vec![
        "--memory".into(),
        a.memory.to_string(),
        "--timeout".into(),
        a.timeout.to_string(),
    ];
    if a.verbose {
        common.push("--verbose".into());
    }
    if a.json {
        common.push("--json".into());
    }
    if let Some(c) = &a.append {
        common.push(format!("--append={c}"));
    }
    for m in &a.mounts {
        common.push(format!("--mount={}:{}", m.device, m.mountpoint));
    }
    let jobs = jobs
        .unwrap_or_else(default_jobs)
        .clamp(1, images.len().max(1));
    // With --pool: `jobs` appliances ready ahead, one port each (one disk per image), no
    // more boots than images.
    let pool = if pool {
        let builder = base_builder(a)?.hotplug_ports(1);
        let options = PoolOptions::new(jobs)
            .builder(builder)
            .max_launches(images.len());
        Some(Pool::new(options).context("starting the pool")?)
    } else {
        None
    };
    let work = |i: usize| -> Outcome {
        let img = &images[i];
        let mut arg = std::ffi::OsString::from("--add=");
        arg.push(img.as_os_str());
        let mut child = Command::new(&exe);
        child
            .args(&cmd)
            .args(&common)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The pooled appliance (if any) lives until the child is done with it.
        let _appliance = match &pool {
            None => None,
            Some(pool) => match pool.acquire(&[(img, DriveOptions::readonly())]) {
                Ok(session) => {
                    let fd = session.inherit_into(&mut child);
                    child.arg(format!("--inherit-appliance={fd}"));
                    Some(session)
                }
                Err(e) => {
                    return Outcome {
                        ok: false,
                        code: None,
                        stdout: Vec::new(),
                        // As the child would have printed it.
                        stderr: format!("skiff: {:#}", anyhow::Error::from(e)).into_bytes(),
                    };
                }
            },
        };
        match child.output() {
            Ok(o) => Outcome {
                ok: o.status.success(),
                code: o.status.code(),
                stdout: o.stdout,
                stderr: o.stderr,
            },
            Err(e) => Outcome {
                ok: false,
                code: None,
                stdout: Vec::new(),
                stderr: format!("running {}: {e}", exe.display()).into_bytes(),
            },
        }
    };
    let mut progress = Progress::new(images.len());
    let mut first_error: Option<std::io::Error> = None;
    run_parallel(images.len(), jobs, work, |i, o| {
        progress.clear();
        let name = images[i].display().to_string();
        if let Err(e) = print_outcome(&name, &o, a.json) {
            first_error.get_or_insert(e);
        }
        progress.tick(o.ok);
    });
    let (ok, failed) = (progress.ok(), progress.failed());
    progress.finish();
    if let Some(e) = first_error {
        return Err(e).context("writing the output");
    }
    if failed > 0 {
        bail!("{ok} ok, {failed} failed");
    }
    eprintln!("{ok} ok, {failed} failed");
    Ok(())
}

fn print_outcome(name: &str, o: &Outcome, json: bool) -> std::io::Result<()> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let err = text(&o.stderr);
    if json {
        let output = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| serde_json::Value::String(text(&o.stdout)));
        let doc = EachDoc {
            image: name.to_string(),
            ok: o.ok,
            exit_code: o.code,
            output,
            error: (!err.trim().is_empty()).then(|| err.trim_end().to_string()),
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &doc)?;
        writeln!(out)?;
        return out.flush();
    }
    let mut out = std::io::stdout().lock();
    for line in text(&o.stdout).lines() {
        writeln!(out, "{}: {}", safe(name), safe(line))?;
    }
    out.flush()?;
    let mut e = std::io::stderr().lock();
    for line in err.lines() {
        writeln!(e, "{}: {}", safe(name), safe(line))?;
    }
    if !o.ok && err.trim().is_empty() {
        writeln!(e, "{}: failed (exit status {:?})", safe(name), o.code)?;
    }
    Ok(())
}
