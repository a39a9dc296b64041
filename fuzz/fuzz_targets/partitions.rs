//! Arbitrary bytes as a whole disk: the partition scan must return Ok or an error.
#![no_main]
use appliance::block::{MemDisk, shared};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let disk = shared(MemDisk::new(data.to_vec(), true));
    let _ = appliance::part::scan(&disk);
    let _ = appliance::fs::probe::probe(&disk);
});
