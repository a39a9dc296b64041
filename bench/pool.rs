//! Pool benchmark, side by side in one run (prints figures; asserts nothing):
//!
//! 1. cold launch → first file read (launch with the disk, mount, read a small file)
//!    vs pool acquire → disk usable, and pool acquire → first file read (hot-add the disk
//!    to a ready pristine appliance, mount, read). Interleaved; before every timed run the
//!    pool is full again, so no boot runs in the background during a measurement.
//! 2. `df` over M images (library, 2 at a time): an appliance per image (cold), through
//!    a pool of 2 created inside the timed region (as `skiff df --pool` does), and one
//!    shared read-only appliance (hot-add → df → hot-remove, one trust domain).
//!
//! Run with `bench/pool.sh [RUNS] [IMAGES]` (defaults 20 and 50; IMAGES=0 skips part 2).

use skiff::{
    Appliance, DriveOptions, Format, MountOptions, Pool, PoolOptions, Session, SharedReader,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILE: &str = "/etc/hostname";
const CONTENT: &[u8] = b"pool-bench\n";

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(20, |a| a.parse().expect("RUNS")).max(1);
    let images: usize = args.next().map_or(50, |a| a.parse().expect("IMAGES"));
    let jobs = 2;

    let dir = tempfile::tempdir().expect("tempdir");
    let img = ext4_image(dir.path(), "guest.img", "16M");
    let drive = [(img.clone(), DriveOptions::readonly().format(Format::Raw))];
    let builder = Appliance::builder()
        .timeout(Duration::from_secs(120))
        .call_timeout(Duration::from_secs(120));
    let pool = Pool::new(PoolOptions::new(2).builder(builder.clone())).expect("pool");

    // Untimed: page cache, first qemu start, first hotplug.
    let mut s = builder
        .clone()
        .add_drive(&img, drive[0].1)
        .launch()
        .expect("launch");
    first_read(&mut s);
    s.shutdown().expect("shutdown");
    let mut p = pool.acquire(&drive).expect("acquire");
    first_read(&mut p);
    drop(p);

    let mut cold = Vec::with_capacity(runs);
    let mut usable = Vec::with_capacity(runs);
    let mut pooled = Vec::with_capacity(runs);
    for _ in 0..runs {
        full(&pool);
        let t = Instant::now();
        let mut s = builder
            .clone()
            .add_drive(&img, drive[0].1)
            .launch()
            .expect("launch");
        first_read(&mut s);
        cold.push(t.elapsed());
        s.shutdown().expect("shutdown");

        full(&pool);
        let t = Instant::now();
        let mut p = pool.acquire(&drive).expect("acquire");
        usable.push(t.elapsed());
        first_read(&mut p);
        pooled.push(t.elapsed());
        drop(p);
    }
    drop(pool);

    println!("skiff pool benchmark: {runs} runs, pool of 2, one 16 MiB raw ext4 disk, read {FILE}");
    header();
    row("cold launch → first file read", &mut cold);
    row("pool acquire → disk usable", &mut usable);
    row("pool acquire → first file read", &mut pooled);

    if images == 0 {
        return;
    }
    let imgs: Vec<PathBuf> = (0..images)
        .map(|i| ext4_image(dir.path(), &format!("g{i}.img"), "8M"))
        .collect();
    println!();
    println!("df over {images} images, {jobs} at a time (wall clock, one run each)");
    let t = Instant::now();
    let mut failed = 0;
    skiff::df::df_images(&builder, &imgs, jobs, |_, r| failed += r.is_err() as usize);
    let d = t.elapsed();
    line("an appliance per image (cold)", d, images, failed);

    let t = Instant::now();
    let mut failed = 0;
    skiff::pool::df_images_pooled(&builder, &imgs, jobs, |_, r| failed += r.is_err() as usize)
        .expect("pool");
    let d = t.elapsed();
    line("pool of 2 (fresh appliance each)", d, images, failed);

    let t = Instant::now();
    let mut r = SharedReader::launch(&builder).expect("shared reader");
    let mut failed = 0;
    for img in &imgs {
        let res = r.with_disk(img, Some(Format::Raw), |s, _| skiff::df::df(s));
        failed += res.is_err() as usize;
    }
    r.shutdown().expect("shutdown");
    line(
        "one shared read-only appliance",
        t.elapsed(),
        images,
        failed,
    );
}

/// Mount the only disk and read the file; panics if anything is off.
fn first_read(s: &mut Session) {
    let dev = s.devices()[0].name.clone();
    s.mount(&dev, "/", MountOptions::readonly()).expect("mount");
    assert_eq!(s.read_file(FILE).expect("read"), CONTENT);
}

fn full(pool: &Pool) {
    assert!(pool.wait_ready(2, Duration::from_secs(120)), "pool refill");
}

fn ext4_image(dir: &Path, name: &str, size: &str) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), CONTENT).unwrap();
    let out = dir.join(name);
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&out)
        .arg(size)
        .stdout(Stdio::null())
        .status()
        .expect("mkfs.ext4");
    assert!(st.success());
    out
}

fn header() {
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}   (ms)",
        "", "min", "median", "p90", "max"
    );
}

fn row(name: &str, v: &mut [Duration]) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        ms(v[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(v[v.len() - 1])
    );
}

fn line(name: &str, d: Duration, n: usize, failed: usize) {
    let fail = if failed > 0 {
        format!("  ({failed} failed)")
    } else {
        String::new()
    };
    println!(
        "{name:<34} {:>8.2} s  ({:.0} ms per image){fail}",
        d.as_secs_f64(),
        d.as_secs_f64() * 1000.0 / n as f64
    );
}
