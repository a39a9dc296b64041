//! The bulk subcommands of the `skiff` CLI: `df` and `each`, over many images. The work
//! is the library's ([`skiff::df`], [`skiff::each`], [`skiff::pool`]); this file parses
//! arguments and hands the results on.
//!
//! `each` runs every image's command in a child `skiff` process (this same binary),
//! N at a time from worker threads: the command implementations print to stdout, and a
//! process per image keeps each image's output and exit status apart (and an image
//! that crashes its appliance or the command takes nothing else down). The cost is one
//! exec per image, small beside the appliance boot. `df` runs in-process: each worker
//! thread launches its own appliance through the library.

use super::bulk_progress::Progress;
use super::{DfReport, DfRow, EachOutcome, ImageError, Output, Sink};
use crate::launch::{LaunchArgs, base_builder};
use anyhow::{Context, Result, bail};
use clap::{ArgAction, Subcommand};
use skiff::each::{default_jobs, run_parallel};
use skiff::{DriveOptions, Pool, PoolOptions};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Subcommand)]
pub enum BulkCmd {
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

pub fn run(a: &LaunchArgs, cmd: BulkCmd, sink: &mut dyn Sink) -> Result<()> {
    match cmd {
        BulkCmd::Df {
            human,
            jobs,
            images,
            pool,
            shared,
            ..
        } => df(a, human, jobs, images, pool, shared, sink),
        BulkCmd::Each {
            jobs,
            pool,
            images,
            command,
        } => each(a, jobs, pool, images, command, sink),
    }
}

fn df(
    a: &LaunchArgs,
    human: bool,
    jobs: Option<usize>,
    images: Vec<PathBuf>,
    pool: bool,
    shared: bool,
    sink: &mut dyn Sink,
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

    let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (img, r) in images.iter().zip(results) {
        let name = img.display().to_string();
        match r {
            Some(Ok(d)) => {
                rows.extend(d.filesystems.into_iter().map(|fs| DfRow {
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
    sink.emit(Output::Df(DfReport {
        human,
        rows,
        errors,
    }))?;
    if failed > 0 {
        bail!(
            "{} ok, {failed} failed",
            images.len().saturating_sub(failed)
        );
    }
    Ok(())
}

/// Commands that make no sense once per image.
const NOT_EACH: &[&str] = &["each", "shell", "df", "help"];

fn each(
    a: &LaunchArgs,
    jobs: Option<usize>,
    pool: bool,
    images: Vec<PathBuf>,
    cmd: Vec<String>,
    sink: &mut dyn Sink,
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
    let work = |i: usize| -> EachOutcome {
        let img = &images[i];
        let image = img.display().to_string();
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
                    return EachOutcome {
                        image,
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
            Ok(o) => EachOutcome {
                image,
                ok: o.status.success(),
                code: o.status.code(),
                stdout: o.stdout,
                stderr: o.stderr,
            },
            Err(e) => EachOutcome {
                image,
                ok: false,
                code: None,
                stdout: Vec::new(),
                stderr: format!("running {}: {e}", exe.display()).into_bytes(),
            },
        }
    };
    let mut progress = Progress::new(images.len());
    let mut first_error: Option<anyhow::Error> = None;
    run_parallel(images.len(), jobs, work, |_, o| {
        let ok = o.ok;
        if let Err(e) = progress.suspend(|| sink.emit(Output::EachImage(o))) {
            first_error.get_or_insert(e);
        }
        progress.tick(ok);
    });
    let (ok, failed) = (progress.ok(), progress.failed());
    progress.finish();
    if let Some(e) = first_error {
        return Err(e.context("writing the output"));
    }
    if failed > 0 {
        bail!("{ok} ok, {failed} failed");
    }
    sink.emit(Output::Summary { ok, failed })
}
