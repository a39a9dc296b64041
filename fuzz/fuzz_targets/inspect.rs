//! The inspection parsers on arbitrary bytes. The first byte picks the parser:
//! 0 dpkg status, 1 apk installed, 2 pacman desc, 3 an rpm header blob, 4 rpm's sqlite
//! database, 5 a Berkeley DB (hash/btree) Packages file, 6 an rpm ndb Packages.db,
//! 7 a registry hive (walked, then read as SOFTWARE and SYSTEM), 8 a PE header,
//! 9 a MountedDevices blob, 10 an rpm sqlite database and its write-ahead log (the
//! bytes split in two). Every rpm header found is decoded. No input may panic or hang.
#![no_main]
use appliance::inspect::source::{Reader, Source};
use appliance::inspect::{AppSink, apk, dpkg, pacman, pe, regf, rpm, rpm_database, windows};
use libfuzzer_sys::fuzz_target;
use wire::{PackageFormat, WindowsFacts};

fn hive(r: &mut Reader) {
    let Ok(mut h) = regf::Hive::open(r) else {
        return;
    };
    // Walk the tree, bounded.
    if let Ok(root) = h.root() {
        let mut stack = vec![(root, 0usize)];
        let mut visits = 0;
        while let Some((k, depth)) = stack.pop() {
            visits += 1;
            if visits > 2000 || depth > 64 {
                break;
            }
            if let Ok(vs) = h.values(&k) {
                for v in vs {
                    let _ = (v.string(), v.multi_string(), v.dword(), v.qword());
                }
            }
            let _ = h.value(&k, "DisplayName");
            if let Ok(subs) = h.subkeys(&k) {
                stack.extend(subs.into_iter().take(64).map(|s| (s, depth + 1)));
            }
        }
    }
    let mut facts = WindowsFacts::default();
    let _ = windows::software_facts(&mut h, &mut facts);
    let _ = windows::system_facts(&mut h, &mut facts);
    let _ = windows::applications(&mut h, &mut AppSink::default());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut src: &[u8] = rest;
    let mut r = Reader::new(&mut src as &mut dyn Source);
    let mut sink = AppSink::default();
    match mode % 11 {
        0 => {
            let _ = dpkg::parse(&mut r, &mut sink);
        }
        1 => {
            let _ = apk::parse(&mut r, &mut sink);
        }
        2 => {
            let _ = pacman::parse_desc(rest);
        }
        3 => {
            let _ = rpm::application(rest);
        }
        4 => {
            let _ = rpm_database(PackageFormat::RpmSqlite, &mut r, None, &mut sink);
        }
        5 => {
            let _ = rpm_database(PackageFormat::RpmBerkeleyDb, &mut r, None, &mut sink);
        }
        6 => {
            let _ = rpm_database(PackageFormat::RpmNdb, &mut r, None, &mut sink);
        }
        7 => hive(&mut r),
        8 => {
            let _ = pe::arch(rest);
        }
        9 => {
            let _ = windows::target(rest);
        }
        _ => {
            let (a, b) = rest.split_at(rest.len() / 2);
            let (mut a, mut b): (&[u8], &[u8]) = (a, b);
            let mut main = Reader::new(&mut a as &mut dyn Source);
            let mut wal = Reader::new(&mut b as &mut dyn Source);
            let _ = rpm_database(PackageFormat::RpmSqlite, &mut main, Some(&mut wal), &mut sink);
        }
    }
    let _ = sink.finish();
});
