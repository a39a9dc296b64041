//! LVM2: the VG metadata text parser, and the PV scan through the RPC dispatcher.
//! The first byte picks the mode:
//! - 0: the bytes are a metadata text: `config::parse` + `meta::parse_vg`;
//! - 1: the bytes are a metadata text inside a well-formed PV (valid label, metadata
//!   area header and checksums), so the scan reaches the parser and the LV layouts;
//! - otherwise: the bytes are a disk (or two, split in the middle).
//! Then: pvs, vgs, lvs, filesystems, and reads of every LV. No input may panic or hang.
#![no_main]
use appliance::block::{MemDisk, shared};
use appliance::rpc::Appliance;
use appliance::volume::lvm::{config, label, meta};
use libfuzzer_sys::fuzz_target;
use wire::{Reply, Request};

const MDA: usize = 4096;
const UUID: &[u8; 32] = b"FuzzPV0000000000000000000000000a";

/// A one-PV disk whose metadata area holds `text` with valid checksums.
fn synth_pv(text: &[u8]) -> Vec<u8> {
    let text = &text[..text.len().min(60 * 1024)];
    let mda_size = 512 + 64 * 1024;
    let data = MDA + mda_size;
    let size = data + 256 * 1024;
    let mut d = vec![0u8; size];
    let put64 = |d: &mut Vec<u8>, o: usize, v: u64| d[o..o + 8].copy_from_slice(&v.to_le_bytes());
    let l = 512;
    d[l..l + 8].copy_from_slice(b"LABELONE");
    put64(&mut d, l + 8, 1);
    d[l + 20..l + 24].copy_from_slice(&32u32.to_le_bytes());
    d[l + 24..l + 32].copy_from_slice(b"LVM2 001");
    let h = l + 32;
    d[h..h + 32].copy_from_slice(UUID);
    put64(&mut d, h + 32, size as u64);
    put64(&mut d, h + 40, data as u64); // data area, to the end
    put64(&mut d, h + 72, MDA as u64); // metadata area
    put64(&mut d, h + 80, mda_size as u64);
    let c = label::crc(&d[l + 20..l + 512]);
    d[l + 16..l + 20].copy_from_slice(&c.to_le_bytes());
    d[MDA + 4..MDA + 20].copy_from_slice(b" LVM2 x[5A%r0N*>");
    d[MDA + 20..MDA + 24].copy_from_slice(&1u32.to_le_bytes());
    put64(&mut d, MDA + 24, MDA as u64);
    put64(&mut d, MDA + 32, mda_size as u64);
    put64(&mut d, MDA + 40, 512);
    put64(&mut d, MDA + 48, text.len() as u64);
    d[MDA + 56..MDA + 60].copy_from_slice(&label::crc(text).to_le_bytes());
    d[MDA + 512..MDA + 512 + text.len()].copy_from_slice(text);
    let c = label::crc(&d[MDA + 4..MDA + 512]);
    d[MDA..MDA + 4].copy_from_slice(&c.to_le_bytes());
    d
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        if let Ok(top) = config::parse(rest) {
            let _ = meta::parse_vg(&top);
        }
        return;
    }
    let mut app = Appliance::new();
    if mode == 1 {
        app.set_disk(0, shared(MemDisk::new(synth_pv(rest), true)));
    } else {
        let (a, b) = rest.split_at(rest.len() / 2);
        app.set_disk(0, shared(MemDisk::new(a.to_vec(), true)));
        app.set_disk(1, shared(MemDisk::new(b.to_vec(), true)));
    }
    let _ = app.handle(Request::Pvs);
    let _ = app.handle(Request::Vgs);
    let _ = app.handle(Request::Filesystems);
    if let Ok(Reply::Lvs(lvs)) = app.handle(Request::Lvs) {
        for lv in lvs.iter().take(32) {
            for off in [0, lv.size / 2, lv.size.saturating_sub(8192)] {
                let _ = app.handle(Request::PreadDevice {
                    device: lv.name.clone(),
                    offset: off,
                    len: 8192,
                });
            }
        }
    }
});
