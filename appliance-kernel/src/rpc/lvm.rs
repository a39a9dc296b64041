//! LVM in the appliance: the cached scan of every disk and partition for PVs, LV device
//! names (`/dev/VG/LV`, `/dev/mapper/VG-LV`), and the `pvs`/`vgs`/`lvs` requests.
//!
//! The scan is made on first use and kept until the disks change (`set_disk`,
//! `remove_disk`) or a raw device write (`PwriteDevice`) may have changed a label or the
//! metadata.

use super::Appliance;
use crate::block::SharedDevice;
use crate::volume::lvm::{self, Scan, Source};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, LogicalVolume, PhysicalVolume, VolumeGroup};

/// True for names only an LV can have: `/dev/mapper/...` or `/dev/X/Y`.
pub(super) fn lv_shaped(name: &str) -> bool {
    name.strip_prefix("/dev/")
        .is_some_and(|rest| rest.starts_with("mapper/") || rest.contains('/'))
}

impl Appliance {
    /// Every device that may be a PV: partitions of partitioned disks, other disks whole,
    /// and opened LUKS mappings (LVM on LUKS).
    fn lvm_sources(&self) -> Vec<Source> {
        let mut out: Vec<Source> = self
            .plain_devices()
            .into_iter()
            .map(|(name, disk, dev)| Source { name, disk, dev })
            .collect();
        for (name, disk, dev) in self.luks_sources() {
            out.push(Source { name, disk, dev });
        }
        out
    }

    /// The LVM scan, made once and cached until the disks change.
    pub fn lvm(&self) -> Rc<Scan> {
        if let Some(s) = self.lvm.borrow().as_ref() {
            return s.clone();
        }
        let s = Rc::new(Scan::new(self.lvm_sources()));
        *self.lvm.borrow_mut() = Some(s.clone());
        s
    }

    /// Forgets the cached scan (the disks or their bytes changed).
    pub fn invalidate_lvm(&self) {
        *self.lvm.borrow_mut() = None;
    }

    /// Opens an LV by `/dev/VG/LV` or `/dev/mapper/VG-LV`; `None` when no LV has that name.
    pub(super) fn lv_device(&self, name: &str) -> Option<Result<SharedDevice, Error>> {
        if !lv_shaped(name) {
            return None;
        }
        let scan = self.lvm();
        if let Some(r) = scan.open_name(name) {
            return Some(r);
        }
        // No such LV: say why when some LVM metadata could not be read.
        let why: Vec<String> = scan
            .errors
            .iter()
            .take(4)
            .map(|(dev, e)| alloc::format!("{dev}: {}", e.message))
            .collect();
        (!why.is_empty()).then(|| {
            Err(Error::new(
                wire::ErrorKind::NotFound,
                alloc::format!(
                    "no such device: {name} (unreadable LVM: {})",
                    why.join("; ")
                ),
            ))
        })
    }

    /// `/dev/VG/LV` for an LV named either way (mapper names of visible LVs are turned into
    /// it, as libguestfs does); other names unchanged.
    pub(super) fn canonical_device(&self, name: &str) -> String {
        if name.starts_with("/dev/mapper/") {
            let scan = self.lvm();
            if let Some((v, l)) = scan.find(name)
                && let Some(vg) = scan.vgs.get(v)
                && let Some(lv) = vg.meta.lvs.get(l)
                && vg.lv_visible(l)
            {
                return alloc::format!("/dev/{}/{}", vg.meta.name, lv.name);
            }
        }
        String::from(name)
    }

    /// Device names (both forms) of every LV of a VG with a PV on `disk`: mounts of them
    /// go when the disk goes.
    pub(super) fn lv_names_on_disk(&self, disk: &str) -> Vec<String> {
        let scan = self.lvm();
        let mut out = Vec::new();
        for (i, vg) in scan.vgs.iter().enumerate() {
            if !scan.vg_disks(i).iter().any(|d| d == disk) {
                continue;
            }
            for lv in &vg.meta.lvs {
                out.push(alloc::format!("/dev/{}/{}", vg.meta.name, lv.name));
                out.push(lvm::mapper_name(&vg.meta.name, &lv.name));
            }
        }
        out
    }

    pub fn pvs(&self) -> Vec<PhysicalVolume> {
        self.lvm().pv_report()
    }

    pub fn vgs(&self) -> Vec<VolumeGroup> {
        self.lvm().vg_report()
    }

    pub fn lvs(&self) -> Vec<LogicalVolume> {
        self.lvm().lv_report()
    }
}
