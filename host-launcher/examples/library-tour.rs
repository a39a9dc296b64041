//! A tour of the skiff library (the README's "Using the library" section):
//!   cargo run --release -p host-launcher --example library-tour -- guest.qcow2 [other.img]
//! Inspects the guest, mounts it the way it mounts itself, reads and lists a few things,
//! then hot-adds a second disk to a pool appliance.

use skiff::{Appliance, DriveOptions, MountOptions, Pool, PoolOptions};

fn main() -> skiff::Result<()> {
    let mut args = std::env::args().skip(1);
    let guest = args.next().expect("usage: library-tour GUEST [OTHER]");
    let other = args.next();

    // One appliance, one read-only disk (format found with qemu-img, never probed by qemu).
    let mut s = Appliance::builder()
        .add_drive(
            &guest,
            DriveOptions {
                format: None,
                readonly: true,
                ..DriveOptions::default()
            },
        )
        .launch()?;
    for d in s.devices() {
        println!("{} {} bytes", d.name, d.size);
    }

    // Inspection: OS roots, then mount the guest like its own fstab does.
    let oses = skiff::inspect::inspect_os(&mut s)?;
    for os in &oses {
        println!(
            "{}: {:?} {} {}",
            os.root,
            os.os_type,
            os.distro.as_deref().unwrap_or("?"),
            os.version.as_deref().unwrap_or("?")
        );
    }
    if let Some(os) = oses.first() {
        for (device, mountpoint) in skiff::inspect::mount_plan(os) {
            s.mount(
                &device,
                &mountpoint,
                MountOptions {
                    readonly: true,
                    fstype: None,
                },
            )?;
        }
        if let Ok(text) = s.read_file("/etc/hostname") {
            print!("hostname: {}", String::from_utf8_lossy(&text));
        }
        println!("/etc: {} entries", s.ls("/etc")?.len());
        let v = s.statvfs("/")?;
        println!("/: {} of {} blocks free", v.blocks_free, v.blocks);
    }
    s.shutdown()?;

    // A pool keeps pristine appliances booted; acquire hot-adds the drives to one of them,
    // and dropping the session destroys that appliance (never reused for another guest).
    if let Some(other) = other {
        let pool = Pool::new(PoolOptions::new(1))?;
        let drive = (
            other.as_str(),
            DriveOptions {
                format: None,
                readonly: true,
                ..DriveOptions::default()
            },
        );
        let mut p = pool.acquire(&[drive])?;
        for d in p.devices() {
            println!("pooled: {} {} bytes", d.name, d.size);
        }
        let head = p.pread_device("/dev/sda", 0, 512)?;
        println!(
            "pooled: first sector ends with {:02x}{:02x}",
            head[510], head[511]
        );
    }
    Ok(())
}
