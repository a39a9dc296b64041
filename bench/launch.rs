//! Launch benchmark: spawn → Hello and spawn → first reply (a Ping), over N runs, printed
//! beside the qemu floor measured in the same run (the same qemu and machine profile
//! booting the appliance with `skiff.test=exit-at-once`, which exits through isa-debug-exit
//! as its first Rust instruction: spawn → qemu exit). Prints figures; asserts nothing.
//!
//! Run with `bench/launch.sh [RUNS]` (default 20). `SKIFF_BENCH_DISK=PATH` attaches one
//! raw disk to the measured launches.

use skiff::{Accel, Appliance, DriveOptions, Format};
use std::time::{Duration, Instant};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS must be a number"))
        .unwrap_or(20)
        .max(1);
    let mut base = Appliance::builder().timeout(Duration::from_secs(60));
    if let Some(disk) = std::env::var_os("SKIFF_BENCH_DISK") {
        base = base.add_drive(disk, DriveOptions::readonly().format(Format::Raw));
    }
    let floor_builder = base.clone().kernel_cmdline("skiff.test=exit-at-once");

    // One untimed launch of each: page cache, memfd creation, first qemu start.
    warm_up(&base, &floor_builder);

    let mut floor = Vec::with_capacity(runs);
    let mut hello = Vec::with_capacity(runs);
    let mut reply = Vec::with_capacity(runs);
    let mut rss = Vec::with_capacity(runs);
    let mut floor_bad: Vec<String> = Vec::new();
    for _ in 0..runs {
        // Interleaved, so both series see the same machine load.
        let t = Instant::now();
        match floor_builder.run_to_exit() {
            Ok(s) if s.code() == Some(skiff::process::EXIT_CLEAN) => floor.push(t.elapsed()),
            Ok(s) => floor_bad.push(skiff::process::describe(Some(s))),
            Err(e) => floor_bad.push(e.to_string()),
        }

        let t = Instant::now();
        let mut s = base.launch().expect("launch");
        let h = t.elapsed();
        s.ping().expect("ping");
        let r = t.elapsed();
        if let Some(kib) = s.qemu_pid().and_then(peak_rss_kib) {
            rss.push(kib);
        }
        s.shutdown().expect("shutdown");
        hello.push(h);
        reply.push(r);
    }

    let (bin, args) = base.command_line().expect("command line");
    let accel = Accel::from_env_or_detect()
        .map(Accel::as_str)
        .unwrap_or("?");
    let firmware = if args.iter().any(|a| a.ends_with("qboot.rom")) {
        "qboot"
    } else {
        "SeaBIOS"
    };
    println!(
        "skiff launch benchmark: {runs} runs, {}, accel {accel}, firmware {firmware}, {} disk(s)",
        qemu_version(&bin.to_string_lossy()),
        args.iter().filter(|a| *a == "-blockdev").count()
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8}   (ms)",
        "", "min", "median", "p90", "max"
    );
    if floor.is_empty() {
        println!(
            "{:<28} not measured: the kernel did not exit with status 33 for skiff.test=exit-at-once",
            "qemu floor (spawn → exit)"
        );
    } else {
        row("qemu floor (spawn → exit)", &mut floor);
        if !floor_bad.is_empty() {
            println!(
                "  ({} floor runs did not exit cleanly and are left out: {})",
                floor_bad.len(),
                floor_bad.join("; ")
            );
        }
    }
    row("spawn → Hello", &mut hello);
    row("spawn → first reply (Ping)", &mut reply);
    if !rss.is_empty() {
        rss.sort_unstable();
        println!(
            "qemu peak RSS: median {:.1} MiB (max {:.1} MiB)",
            rss[rss.len() / 2] as f64 / 1024.0,
            rss[rss.len() - 1] as f64 / 1024.0
        );
    }
}

fn warm_up(base: &skiff::Builder, floor: &skiff::Builder) {
    let _ = floor.run_to_exit();
    let s = base.launch().expect("launch");
    s.shutdown().expect("shutdown");
}

fn row(name: &str, v: &mut [Duration]) {
    v.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<28} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        ms(v[0]),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(v[v.len() - 1])
    );
}

/// VmHWM of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn qemu_version(bin: &str) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .map(|l| l.replace("QEMU emulator version", "qemu"))
        .unwrap_or_else(|| bin.to_string())
}
