//! RPC dispatch: turns a decoded [`Request`] into a [`Reply`] against the appliance's
//! devices and mounts. Hardware-specific requests (`Shutdown`, `Rescan`) are finished by
//! the kernel binary around this.

use crate::block::{SharedDevice, check_range, disk_name};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Bytes, Device, Error, ErrorKind, MAX_CHUNK, Reply, Request};

/// One attached disk.
pub struct Disk {
    pub name: String,
    pub dev: SharedDevice,
}

/// Everything the appliance serves: the disk table (indexed by the slot the host gave
/// each disk, so names stay stable across hotplug).
#[derive(Default)]
pub struct Appliance {
    disks: Vec<Option<Disk>>,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

impl Appliance {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches `dev` as disk number `slot` (`/dev/sda` is slot 0).
    pub fn set_disk(&mut self, slot: usize, dev: SharedDevice) {
        if self.disks.len() <= slot {
            self.disks.resize_with(slot + 1, || None);
        }
        self.disks[slot] = Some(Disk {
            name: disk_name(slot),
            dev,
        });
    }

    /// Detaches disk `slot`; later calls naming it fail with `NotFound`.
    pub fn remove_disk(&mut self, slot: usize) -> Option<Disk> {
        self.disks.get_mut(slot).and_then(Option::take)
    }

    pub fn disks(&self) -> impl Iterator<Item = &Disk> {
        self.disks.iter().flatten()
    }

    /// The whole-disk device list, in slot order.
    pub fn devices(&self) -> Vec<Device> {
        self.disks()
            .map(|d| {
                let dev = d.dev.borrow();
                Device {
                    name: d.name.clone(),
                    size: dev.size(),
                    readonly: dev.readonly(),
                }
            })
            .collect()
    }

    /// Resolves a device name (`/dev/sda`) to the device.
    pub fn device(&self, name: &str) -> Result<SharedDevice, Error> {
        self.disks()
            .find(|d| d.name == name)
            .map(|d| d.dev.clone())
            .ok_or_else(|| err(ErrorKind::NotFound, format!("no such device: {name}")))
    }

    /// Flushes every disk.
    pub fn sync(&mut self) -> Result<(), Error> {
        for d in self.disks() {
            d.dev.borrow_mut().flush()?;
        }
        Ok(())
    }

    /// Serves one request. Never panics on any input.
    pub fn handle(&mut self, req: Request) -> Result<Reply, Error> {
        match req {
            Request::Ping => Ok(Reply::Unit),
            Request::Devices => Ok(Reply::Devices(self.devices())),
            Request::PreadDevice {
                device,
                offset,
                len,
            } => {
                if len > MAX_CHUNK {
                    return Err(err(
                        ErrorKind::TooLarge,
                        format!("read of {len} bytes exceeds the {MAX_CHUNK}-byte chunk limit"),
                    ));
                }
                let dev = self.device(&device)?;
                let mut dev = dev.borrow_mut();
                check_range(offset, len as usize, dev.size())?;
                let mut buf = vec![0u8; len as usize];
                dev.read_at(offset, &mut buf)?;
                Ok(Reply::Data(Bytes(buf)))
            }
            Request::PwriteDevice {
                device,
                offset,
                data,
            } => {
                let dev = self.device(&device)?;
                let mut dev = dev.borrow_mut();
                if dev.readonly() {
                    return Err(err(ErrorKind::ReadOnly, format!("{device} is read-only")));
                }
                check_range(offset, data.len(), dev.size())?;
                dev.write_at(offset, &data)?;
                Ok(Reply::Written(data.len() as u64))
            }
            Request::Sync | Request::Shutdown => {
                self.sync()?;
                Ok(Reply::Unit)
            }
            Request::Rescan => Err(err(
                ErrorKind::Unsupported,
                "rescan is not available in this appliance",
            )),
            other => Err(err(
                ErrorKind::Unsupported,
                format!("request not implemented yet: {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{MemDisk, shared};
    use alloc::string::ToString;

    fn app() -> Appliance {
        let mut a = Appliance::new();
        a.set_disk(
            0,
            shared(MemDisk::new((0..=255u8).cycle().take(8192).collect(), true)),
        );
        a.set_disk(2, shared(MemDisk::new(vec![0; 4096], false)));
        a
    }

    #[test]
    fn devices_by_slot() {
        let a = app();
        let d = a.devices();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "/dev/sda");
        assert!(d[0].readonly);
        assert_eq!(d[1].name, "/dev/sdc");
        assert_eq!(d[1].size, 4096);
    }

    #[test]
    fn pread_and_bounds() {
        let mut a = app();
        let r = a
            .handle(Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 8190,
                len: 2,
            })
            .unwrap();
        assert_eq!(r, Reply::Data(Bytes(vec![254, 255])));
        let e = a
            .handle(Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 8191,
                len: 2,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = a
            .handle(Request::PreadDevice {
                device: "/dev/sdz".to_string(),
                offset: 0,
                len: 1,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = a
            .handle(Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 0,
                len: MAX_CHUNK + 1,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
    }

    #[test]
    fn readonly_refuses_writes() {
        let mut a = app();
        let e = a
            .handle(Request::PwriteDevice {
                device: "/dev/sda".to_string(),
                offset: 0,
                data: Bytes(vec![1]),
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly);
        let r = a
            .handle(Request::PwriteDevice {
                device: "/dev/sdc".to_string(),
                offset: 4095,
                data: Bytes(vec![9]),
            })
            .unwrap();
        assert_eq!(r, Reply::Written(1));
        a.remove_disk(2);
        assert!(a.device("/dev/sdc").is_err());
    }
}
