//! Volumes: LVM and LUKS as the appliance finds them, and the keys that unlock LUKS
//! devices and encrypted qcow2 images.
//!
//! The appliance parses every header (LVM metadata, LUKS headers); the host lists what
//! it reports ([`Session::pvs`], [`Session::vgs`], [`Session::lvs`],
//! [`Session::luks_info`]) and hands it keys over the RPC channel
//! ([`Session::luks_open`]). A key never goes anywhere else: not on qemu's command line,
//! not in its environment, not in a log or an error message.
//!
//! - [`keys`]: [`Secret`], [`KeySet`] (libguestfs' `--key` syntax) and [`KeyPrompt`].
//! - [`Session::unlock_all`]: opens every LUKS device a key opens, again and again
//!   while new ones appear (LUKS on LVM on LUKS).
//! - [`Builder::launch_unlocked`]: launch, unlock, and relaunch once with enough memory
//!   when a device's Argon2 key derivation needs more than the appliance has.

pub mod keys;

pub use keys::{Key, KeyPrompt, KeySelector, KeySet, NoPrompt, Secret};

use crate::appliance::Builder;
use crate::error::{Error, Result};
use crate::session::{Session, unexpected};
use std::collections::HashMap;
use wire::{
    Bytes, ErrorKind, LogicalVolume, LuksVolume, PhysicalVolume, Reply, Request, VolumeGroup,
};

/// The most memory an appliance is given for a key derivation (its identity map covers
/// 4 GiB, the top one being device memory).
pub const MAX_APPLIANCE_MIB: u32 = 3072;
/// Memory the appliance keeps for itself beside a key derivation's (kernel, block
/// caches, mounted filesystems).
pub const APPLIANCE_RESERVE_MIB: u32 = 64;
/// Most rounds of unlocking (each may reveal devices stacked on the last ones).
const MAX_ROUNDS: usize = 8;

/// One LUKS device opened by [`Session::unlock_all`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unlocked {
    /// The LUKS device (`/dev/sda2`, `/dev/VG/LV`, ...).
    pub device: String,
    pub uuid: String,
    /// `/dev/mapper/luks-<UUID>`.
    pub mapped: String,
}

/// What [`Session::unlock_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnlockReport {
    pub opened: Vec<Unlocked>,
    /// LUKS devices left locked, with the reason (no key, unreadable header).
    pub skipped: Vec<(String, String)>,
}

/// Appliance memory (MiB) for a key derivation that needs `required` bytes.
pub fn memory_for(required: u64) -> u32 {
    let mib = required.div_ceil(1 << 20) + u64::from(APPLIANCE_RESERVE_MIB);
    // Whole multiples of 64 MiB: a few sizes, all comfortably above the need.
    let mib = mib.next_multiple_of(64);
    u32::try_from(mib).unwrap_or(u32::MAX)
}

impl Session {
    /// Every LVM physical volume (like `pvs-full`).
    pub fn pvs(&mut self) -> Result<Vec<PhysicalVolume>> {
        match self.call(Request::Pvs)? {
            Reply::Pvs(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Every LVM volume group (like `vgs-full`).
    pub fn vgs(&mut self) -> Result<Vec<VolumeGroup>> {
        match self.call(Request::Vgs)? {
            Reply::Vgs(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Every LVM logical volume, hidden ones included (like `lvs-full`); `/dev/VG/LV`
    /// names. [`wire::LogicalVolume::hidden`] tells the ones `lvs` does not list.
    pub fn lvs(&mut self) -> Result<Vec<LogicalVolume>> {
        match self.call(Request::Lvs)? {
            Reply::Lvs(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Every LUKS device on the disks, partitions, logical volumes and opened mappings,
    /// with its keyslots and the memory an unlock needs.
    pub fn luks_info(&mut self) -> Result<Vec<LuksVolume>> {
        match self.call(Request::LuksInfo)? {
            Reply::LuksInfo(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Unlocks the LUKS device `device` with `key` and maps it as
    /// `/dev/mapper/luks-<UUID>` (libguestfs' name); returns that name. A key that opens
    /// no keyslot is [`Error::WrongKey`] naming the device.
    ///
    /// ```no_run
    /// use skiff::volumes::Secret;
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// let mapped = s.luks_open("/dev/sda2", &Secret::new("passphrase"))?;
    /// s.mount(&mapped, "/", skiff::MountOptions::readonly())?;
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn luks_open(&mut self, device: &str, key: &Secret) -> Result<String> {
        self.luks_open_as(device, key, None)
    }

    /// [`Session::luks_open`] with a mapping name of the caller's (`/dev/mapper/NAME`).
    pub fn luks_open_as(
        &mut self,
        device: &str,
        key: &Secret,
        name: Option<&str>,
    ) -> Result<String> {
        let r = self.call(Request::LuksOpen {
            device: device.into(),
            key: Bytes(key.expose().to_vec()),
            name: name.map(String::from),
        });
        match r {
            Ok(Reply::Text(mapped)) => Ok(mapped),
            Ok(other) => Err(unexpected(&other)),
            Err(Error::Remote(e)) if e.kind == ErrorKind::PermissionDenied => {
                Err(Error::WrongKey {
                    device: device.into(),
                    detail: "no keyslot opens with it".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Drops the mapping `/dev/mapper/NAME` (refused while it is mounted or holds a
    /// mounted volume).
    pub fn luks_close(&mut self, name: &str) -> Result<()> {
        match self.call(Request::LuksClose { name: name.into() })? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Opens every LUKS device that a key of `keys` (or, for a device with none, the
    /// one `prompt` gives) unlocks, round after round while new LUKS devices appear
    /// (LUKS on LVM on LUKS). Keys are tried in [`KeySet::for_luks`] order. A device
    /// whose keys all fail is [`Error::WrongKey`]; one with no key is left locked and
    /// listed in [`UnlockReport::skipped`]. A device whose key derivation needs more
    /// memory than this appliance has is [`Error::NeedsMemory`], before any work
    /// ([`Builder::launch_unlocked`] relaunches then).
    pub fn unlock_all(
        &mut self,
        keys: &KeySet,
        prompt: &mut dyn KeyPrompt,
    ) -> Result<UnlockReport> {
        let mut report = UnlockReport::default();
        let mut left: Vec<String> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let locked: Vec<LuksVolume> = self
                .luks_info()?
                .into_iter()
                .filter(|v| v.mapped.is_none() && !left.contains(&v.device))
                .collect();
            if locked.is_empty() {
                break;
            }
            for v in locked {
                left.push(v.device.clone());
                if let Some(why) = &v.error {
                    report
                        .skipped
                        .push((v.device.clone(), format!("unreadable LUKS header: {why}")));
                    continue;
                }
                self.check_memory(&v)?;
                let mut tried = 0usize;
                let mut opened = None;
                for key in keys.for_luks(&v.device, &v.uuid) {
                    tried += 1;
                    match self.luks_open(&v.device, key) {
                        Ok(m) => {
                            opened = Some(m);
                            break;
                        }
                        Err(Error::WrongKey { .. }) => {}
                        Err(e) => return Err(self.memory_error(&v, e)),
                    }
                }
                if opened.is_none() && tried == 0 {
                    match prompt.ask(&v.device, &v.uuid)? {
                        Some(key) => {
                            tried += 1;
                            match self.luks_open(&v.device, &key) {
                                Ok(m) => opened = Some(m),
                                Err(Error::WrongKey { .. }) => {}
                                Err(e) => return Err(self.memory_error(&v, e)),
                            }
                        }
                        None => {
                            report
                                .skipped
                                .push((v.device.clone(), "no key given (--key)".into()));
                            continue;
                        }
                    }
                }
                match opened {
                    Some(mapped) => report.opened.push(Unlocked {
                        device: v.device.clone(),
                        uuid: v.uuid.clone(),
                        mapped,
                    }),
                    None => {
                        return Err(Error::WrongKey {
                            device: v.device.clone(),
                            detail: if tried == 1 {
                                "the key given for it opens no keyslot".into()
                            } else {
                                format!("none of the {tried} keys given for it opens a keyslot")
                            },
                        });
                    }
                }
            }
        }
        Ok(report)
    }

    /// [`Error::NeedsMemory`] (or [`Error::MemoryLimit`]) when unlocking `v` needs more
    /// memory than this appliance has.
    fn check_memory(&self, v: &LuksVolume) -> Result<()> {
        let Some(have) = self.memory_mib() else {
            return Ok(());
        };
        let fits = v.required_memory <= u64::from(have.saturating_sub(APPLIANCE_RESERVE_MIB)) << 20;
        if fits {
            return Ok(());
        }
        Err(needs(&v.device, memory_for(v.required_memory), have))
    }

    /// An unlock the appliance refused for lack of memory (`TooLarge`) as
    /// [`Error::NeedsMemory`]; other errors as they are.
    fn memory_error(&self, v: &LuksVolume, e: Error) -> Error {
        match &e {
            Error::Remote(r) if r.kind == ErrorKind::TooLarge => {
                let have = self.memory_mib().unwrap_or(0);
                // More than the header asked for: the heap was too fragmented.
                let want = memory_for(v.required_memory).max(have.saturating_add(256));
                needs(&v.device, want, have)
            }
            _ => e,
        }
    }
}

fn needs(device: &str, needed_mib: u32, have_mib: u32) -> Error {
    if needed_mib > MAX_APPLIANCE_MIB {
        return Error::MemoryLimit {
            device: device.into(),
            needed_mib,
            max_mib: MAX_APPLIANCE_MIB,
        };
    }
    Error::NeedsMemory {
        device: device.into(),
        needed_mib,
        have_mib,
    }
}

/// A [`KeyPrompt`] that asks the inner one once per LUKS UUID (and device), so that a
/// relaunch does not ask again.
struct Remembering<'a> {
    inner: &'a mut dyn KeyPrompt,
    answers: HashMap<String, Option<Secret>>,
}

impl KeyPrompt for Remembering<'_> {
    fn ask(&mut self, device: &str, uuid: &str) -> Result<Option<Secret>> {
        let k = if uuid.is_empty() { device } else { uuid }.to_string();
        if let Some(a) = self.answers.get(&k) {
            return Ok(a.clone());
        }
        let a = self.inner.ask(device, uuid)?;
        self.answers.insert(k, a.clone());
        Ok(a)
    }
}

impl Builder {
    /// Launches, then unlocks every LUKS device a key opens ([`Session::unlock_all`]).
    /// When a device's key derivation needs more memory than the appliance has, the
    /// appliance is shut down and launched again with enough (up to
    /// [`MAX_APPLIANCE_MIB`]); keys typed at the prompt are not asked for again.
    ///
    /// ```no_run
    /// use skiff::volumes::{KeySet, NoPrompt};
    /// let mut keys = KeySet::new();
    /// keys.add_spec("/dev/sda2:key:correct horse")?;
    /// let (mut s, report) = skiff::Appliance::builder()
    ///     .add_drive("laptop.qcow2", skiff::DriveOptions::readonly())
    ///     .launch_unlocked(&keys, &mut NoPrompt)?;
    /// for u in &report.opened {
    ///     println!("{} -> {}", u.device, u.mapped);
    /// }
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn launch_unlocked(
        &self,
        keys: &KeySet,
        prompt: &mut dyn KeyPrompt,
    ) -> Result<(Session, UnlockReport)> {
        let mut prompt = Remembering {
            inner: prompt,
            answers: HashMap::new(),
        };
        let mut b = self.clone();
        let mut relaunched = 0;
        loop {
            let mut s = b.launch()?;
            match s.unlock_all(keys, &mut prompt) {
                Ok(r) => return Ok((s, r)),
                Err(Error::NeedsMemory { needed_mib, .. })
                    if relaunched < 2 && needed_mib > b.memory_mib =>
                {
                    relaunched += 1;
                    let _ = s.shutdown();
                    b.memory_mib = needed_mib;
                }
                Err(e) => {
                    let _ = s.shutdown();
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        // A PBKDF2 header (1 MiB of buffers) fits the default appliance.
        assert_eq!(memory_for(1 << 20), 128);
        // cryptsetup's default Argon2id (1 GiB).
        assert_eq!(memory_for((1 << 30) + (1 << 20)), 1152);
        assert_eq!(memory_for((256 << 20) + (1 << 20)), 384);
        assert!(matches!(
            needs("/dev/sda2", 4096, 128),
            Error::MemoryLimit { max_mib: 3072, .. }
        ));
        let e = needs("/dev/sda2", 384, 128).to_string();
        assert!(e.contains("/dev/sda2") && e.contains("384 MiB"), "{e}");
    }
}
