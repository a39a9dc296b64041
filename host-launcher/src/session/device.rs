//! The appliance's disks: the device list (as of the Hello, a refresh or a rescan) and
//! raw device I/O in chunks of at most [`MAX_CHUNK`].

use super::{Session, unexpected};
use crate::error::{Error, Result};
use wire::{Bytes, Device, MAX_CHUNK, Reply, Request, disk_slot};

impl Session {
    /// The whole-disk devices, as of the Hello or the last [`Session::refresh_devices`].
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Asks the appliance for its device list again.
    pub fn refresh_devices(&mut self) -> Result<&[Device]> {
        match self.call(Request::Devices)? {
            Reply::Devices(d) => {
                self.devices = d;
                Ok(&self.devices)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Asks the appliance to rescan its PCIe slots; returns (and keeps) the device list.
    pub fn rescan(&mut self) -> Result<Vec<Device>> {
        match self.call(Request::Rescan)? {
            Reply::Devices(d) => {
                self.devices = d.clone();
                Ok(d)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Reads `len` bytes of `device` at `offset`, in calls of at most [`MAX_CHUNK`]. The result is short only where the device
    /// ends (an appliance may also refuse a range past the end with an error).
    pub fn pread_device(&mut self, device: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        offset
            .checked_add(len)
            .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        while (out.len() as u64) < len {
            let done = out.len() as u64;
            let want = (len - done).min(u64::from(self.read_chunk)) as u32;
            let reply = self.call(Request::PreadDevice {
                device: device.to_string(),
                offset: offset + done,
                len: want,
            })?;
            let Reply::Data(Bytes(data)) = reply else {
                return Err(unexpected(&reply));
            };
            if data.len() > want as usize {
                return Err(Error::BadFrame(format!(
                    "asked for {want} bytes, got {}",
                    data.len()
                )));
            }
            let short = data.len() < want as usize;
            out.extend_from_slice(&data);
            if short {
                break;
            }
        }
        Ok(out)
    }

    /// Writes `data` to `device` at `offset`, in calls of at most [`MAX_CHUNK`].
    /// [`Error::ReadOnly`] for a drive attached read-only.
    pub fn pwrite_device(&mut self, device: &str, offset: u64, data: &[u8]) -> Result<()> {
        if self.is_readonly(device) {
            return Err(Error::ReadOnly {
                device: device.to_string(),
            });
        }
        offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
        let mut done = 0usize;
        while done < data.len() {
            let end = data.len().min(done + MAX_CHUNK as usize);
            let chunk = &data[done..end];
            let reply = self.call(Request::PwriteDevice {
                device: device.to_string(),
                offset: offset + done as u64,
                data: Bytes(chunk.to_vec()),
            })?;
            match reply {
                Reply::Written(n) if n > 0 && n <= chunk.len() as u64 => done += n as usize,
                Reply::Written(n) => {
                    return Err(Error::BadFrame(format!(
                        "wrote {n} of {} bytes",
                        chunk.len()
                    )));
                }
                other => return Err(unexpected(&other)),
            }
        }
        Ok(())
    }

    /// True when writes to `device` (a disk or one of its partitions) must be refused
    /// here: the appliance reports it read-only, or the caller attached it read-only.
    fn is_readonly(&self, device: &str) -> bool {
        let disk = device.trim_end_matches(|c: char| c.is_ascii_digit());
        let listed = self.devices.iter().any(|d| d.name == disk && d.readonly);
        let asked = disk_slot(disk)
            .and_then(|i| self.readonly.get(i).copied())
            .unwrap_or(false);
        listed || asked
    }
}
