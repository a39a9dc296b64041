//! Oracle tests: databases and hives written by the real tools (dpkg's own status file,
//! `rpmbuild` + `rpm --justdb` into sqlite, `db5.3_load` for BerkeleyDB, `hivexregedit
//! --merge` for hives), read back by our parsers and compared with the real tools'
//! listings (`dpkg-query`, `rpm -qa --qf`, `db5.3_dump`, python3-hivex).

use super::source::{Reader, Source};
use super::*;
use crate::part::testutil::{TempDir, run};
use alloc::string::ToString;
use std::collections::BTreeMap;
use std::process::Command;
use wire::Application;

pub(crate) fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn with_reader<T>(data: &[u8], f: impl FnOnce(&mut Reader) -> T) -> T {
    let mut s: &[u8] = data;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    f(&mut r)
}

// ---------------------------------------------------------------- dpkg

/// Extra stanzas appended to the host's status file: states that are not installed,
/// an epoch, a release with hyphens, a `Source` with a version, a bad epoch.
const EXTRA_STANZAS: &str = "\
Package: skiff-removed
Status: deinstall ok config-files
Priority: optional
Architecture: amd64
Version: 1.0-1
Description: removed but configured

Package: skiff-purged
Status: purge ok not-installed
Architecture: amd64
Version: 1.0-1
Description: gone

Package: skiff-epoch
Status: hold ok installed
Priority: optional
Section: misc
Installed-Size: 1
Maintainer: Skiff <skiff@example.org>
Architecture: all
Source: skiff-src (0.9-1)
Version: 3:1.2-3-4
Homepage: https://example.org/skiff
Description: epoch, hyphens and a versioned source
 First continuation line.
 .
   indented line
";

/// `dpkg-query` on `admindir`: package → (status, version, arch, homepage, source,
/// description).
fn dpkg_query(admindir: &str) -> BTreeMap<String, [String; 6]> {
    let out = run(
        "dpkg-query",
        &[
            "--admindir",
            admindir,
            "-W",
            "-f",
            "${Package}\x1f${db:Status-Status}\x1f${Version}\x1f${Architecture}\x1f${Homepage}\x1f${Source}\x1f${Description}\x1e",
        ],
        None,
    );
    out.split('\x1e')
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let f: Vec<&str> = r.split('\x1f').collect();
            assert_eq!(f.len(), 7, "{r:?}");
            (
                f[0].trim().to_string(),
                [1, 2, 3, 4, 5, 6].map(|i| f[i].to_string()),
            )
        })
        .collect()
}

/// How many packages dpkg-query says are installed in `admindir`.
pub(crate) fn dpkg_installed_count(admindir: &str) -> usize {
    dpkg_query(admindir)
        .values()
        .filter(|f| f[0] == "installed")
        .count()
}

#[test]
fn dpkg_status_matches_dpkg_query() {
    let host = std::fs::read("/var/lib/dpkg/status").expect("the host's dpkg status file");
    let t = TempDir::new("dpkg");
    let admin = format!("{}/admin", t.path());
    for d in ["updates", "info"] {
        std::fs::create_dir_all(format!("{admin}/{d}")).unwrap();
    }
    let mut status = host.clone();
    if !status.ends_with(b"\n\n") {
        status.extend(b"\n");
    }
    status.extend(EXTRA_STANZAS.as_bytes());
    std::fs::write(format!("{admin}/status"), &status).unwrap();
    let oracle = dpkg_query(&admin);
    let mut sink = AppSink::default();
    let stats = with_reader(&status, |r| dpkg::parse(r, &mut sink)).unwrap();
    let (apps, truncated) = sink.finish();
    assert!(!truncated);
    let installed: Vec<_> = oracle.iter().filter(|(_, f)| f[0] == "installed").collect();
    assert!(
        installed.len() > 50,
        "the host has {} packages",
        installed.len()
    );
    assert_eq!(apps.len(), installed.len());
    assert_eq!(stats.count as usize, apps.len());
    let by_name: BTreeMap<(&str, &str), &Application> = apps
        .iter()
        .map(|a| ((a.name.as_str(), a.arch.as_str()), a))
        .collect();
    for (key, f) in installed {
        let name = key.split(':').next().unwrap();
        let a = by_name
            .get(&(name, f[2].as_str()))
            .unwrap_or_else(|| panic!("{key} missing"));
        let (epoch, ver, rel) = split_evr(&f[1]).unwrap();
        assert_eq!(a.epoch, epoch, "{key}");
        assert_eq!(a.version, ver, "{key}");
        assert_eq!(a.release, rel.unwrap_or(""), "{key}");
        assert_eq!(a.url, f[3], "{key}");
        assert_eq!(a.source_package, f[4].split(' ').next().unwrap(), "{key}");
        let mut lines = f[5].split('\n');
        assert_eq!(a.summary, lines.next().unwrap().trim(), "{key}");
        let desc: Vec<&str> = lines.map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
        assert_eq!(a.description, clean_str(&desc.join("\n"), true), "{key}");
    }
    let e = by_name[&("skiff-epoch", "all")];
    assert_eq!(
        (e.epoch, e.version.as_str(), e.release.as_str()),
        (3, "1.2", "3-4")
    );
    assert_eq!(e.source_package, "skiff-src");
    assert_eq!(
        e.description,
        "First continuation line.\n.\n  indented line"
    );
    assert!(!apps.iter().any(|a| a.name.starts_with("skiff-removed")));
    assert!(!apps.iter().any(|a| a.name.starts_with("skiff-purged")));
}

// ---------------------------------------------------------------- rpm

/// `rpm -qa` fields, tab-separated, one package a line.
const QF: &str = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{URL}\\t%{SUMMARY}\\t%{SOURCERPM}\\t%{VENDOR}\\t%{INSTALLTIME}\\n";

/// A spec with a main package (epoch, URL, vendor), `subs` subpackages and one
/// package whose description spills over several database pages.
fn spec(name: &str, epoch: bool, subs: usize) -> String {
    let mut s = format!(
        "Name: {name}\nVersion: 1.2.3\nRelease: 4.test\n{}Summary: Main package {name}\n\
         License: MIT\nURL: https://example.org/{name}\nVendor: Skiff Tests\nBuildArch: noarch\n\
         %description\nFirst line of {name}.\nSecond line.\n\n%files\n\n",
        if epoch { "Epoch: 2\n" } else { "" }
    );
    s += &format!(
        "%package -n {name}-big\nSummary: Big description\nVersion: 9.9\nRelease: 1\n%description -n {name}-big\n"
    );
    for i in 0..400 {
        s += &format!("line {i:03} of a long description that spills out of one page\n");
    }
    s += &format!("\n%files -n {name}-big\n\n");
    for i in 0..subs {
        s += &format!(
            "%package -n {name}-sub{i:02}\nSummary: Sub {i}\n%description -n {name}-sub{i:02}\nSub package {i}.\n%files -n {name}-sub{i:02}\n\n"
        );
    }
    s
}

/// Builds small rpms and installs them (`--justdb`) into a fresh sqlite rpmdb under
/// `dir/db`. Returns the db directory and the rpm -qa oracle (sorted lines).
pub(crate) fn rpm_sqlite_db(dir: &str) -> (String, Vec<String>) {
    assert!(
        have("rpmbuild") && have("rpm"),
        "rpm and rpmbuild are needed (Debian package rpm)"
    );
    let top = format!("{dir}/top");
    for (name, epoch, subs) in [("skiff-a", true, 60), ("skiff-b", false, 2)] {
        let sp = format!("{dir}/{name}.spec");
        std::fs::write(&sp, spec(name, epoch, subs)).unwrap();
        run(
            "rpmbuild",
            &["-bb", "--quiet", "--define", &format!("_topdir {top}"), &sp],
            None,
        );
    }
    let db = format!("{dir}/db");
    std::fs::create_dir_all(&db).unwrap();
    run("rpm", &["--initdb", "--dbpath", &db], None);
    let mut rpms: Vec<String> = std::fs::read_dir(format!("{top}/RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    rpms.sort();
    let mut args = vec!["-i", "--justdb", "--nodeps", "--noscripts", "--dbpath", &db];
    args.extend(rpms.iter().map(String::as_str));
    run("rpm", &args, None);
    let oracle = rpm_qa(&db, &[]);
    assert_eq!(oracle.len(), rpms.len());
    (db, oracle)
}

fn rpm_qa(db: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["-qa", "--dbpath", db, "--qf", QF];
    args.extend_from_slice(extra);
    let mut v: Vec<String> = run("rpm", &args, None)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Our applications in the oracle's line format.
fn rpm_lines(apps: &[Application]) -> Vec<String> {
    let none = |s: &str| {
        if s.is_empty() {
            "(none)".to_string()
        } else {
            s.to_string()
        }
    };
    let mut v: Vec<String> = apps
        .iter()
        .map(|a| {
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                a.name,
                a.epoch,
                a.version,
                a.release,
                a.arch,
                none(&a.url),
                a.summary,
                a.source_package,
                none(&a.vendor),
                a.install_time.unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

fn rpm_descriptions(db: &str) -> BTreeMap<String, String> {
    run(
        "rpm",
        &[
            "-qa",
            "--dbpath",
            db,
            "--qf",
            "%{NAME}<<>>%{DESCRIPTION}<<END>>",
        ],
        None,
    )
    .split("<<END>>")
    .filter(|r| !r.is_empty())
    .map(|r| {
        let (n, d) = r.split_once("<<>>").unwrap();
        (n.to_string(), clean_str(d, true))
    })
    .collect()
}

fn read_rpm(format: wire::PackageFormat, data: &[u8]) -> (Vec<Application>, DbStats) {
    let mut sink = AppSink::default();
    let stats = with_reader(data, |r| rpm_database(format, r, None, &mut sink)).unwrap();
    (sink.finish().0, stats)
}

#[test]
fn rpm_sqlite_matches_rpm_qa() {
    let t = TempDir::new("rpm-sqlite");
    let (db, oracle) = rpm_sqlite_db(t.path());
    let data = std::fs::read(format!("{db}/rpmdb.sqlite")).unwrap();
    let (apps, stats) = read_rpm(wire::PackageFormat::RpmSqlite, &data);
    assert_eq!(stats.skipped, 0);
    assert_eq!(rpm_lines(&apps), oracle);
    // Multi-page records (overflow pages) and descriptions.
    let desc = rpm_descriptions(&db);
    for a in &apps {
        assert_eq!(a.description, desc[&a.name], "{}", a.name);
    }
    let big = apps.iter().find(|a| a.name == "skiff-a-big").unwrap();
    assert!(big.description.len() > 4000);
    // The table is spread over interior and leaf pages.
    let root = with_reader(&data, |r| {
        let mut d = sqlite::Db::open(r).unwrap();
        assert!(d.page_count() > 10);
        d.table_root("Packages").unwrap().unwrap()
    });
    let page_size = u16::from_be_bytes([data[16], data[17]]) as usize;
    assert_eq!(
        data[(root as usize - 1) * page_size],
        0x05,
        "an interior root page"
    );
}

#[test]
fn rpm_sqlite_wal_matches_rpm_qa() {
    // A database in WAL mode with changes not yet checkpointed: packages deleted and
    // added (the table grows past the main file), copied while sqlite3 holds it open.
    assert!(have("sqlite3"), "sqlite3 is needed");
    let t = TempDir::new("rpm-wal");
    let (db, _) = rpm_sqlite_db(t.path());
    let work = format!("{}/work", t.path());
    let snap = format!("{}/snap", t.path());
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(format!("{db}/rpmdb.sqlite"), format!("{work}/rpmdb.sqlite")).unwrap();
    let script = format!(
        "PRAGMA journal_mode=WAL;\nPRAGMA wal_autocheckpoint=0;\n\
         DELETE FROM Packages WHERE hnum IN (SELECT hnum FROM Packages ORDER BY hnum LIMIT 5);\n\
         INSERT INTO Packages(blob) SELECT blob FROM Packages WHERE hnum > 40;\n\
         .shell cp {work}/rpmdb.sqlite {work}/rpmdb.sqlite-wal {snap}/\n"
    );
    run("sqlite3", &[&format!("{work}/rpmdb.sqlite")], Some(&script));
    let main = std::fs::read(format!("{snap}/rpmdb.sqlite")).unwrap();
    let wal = std::fs::read(format!("{snap}/rpmdb.sqlite-wal")).unwrap();
    assert!(wal.len() > 4096, "the log holds the changes");
    let mut sink = AppSink::default();
    let stats = {
        let (mut a, mut b): (&[u8], &[u8]) = (&main, &wal);
        let mut r = Reader::new(&mut a as &mut dyn Source);
        let mut w = Reader::new(&mut b as &mut dyn Source);
        rpm_database(
            wire::PackageFormat::RpmSqlite,
            &mut r,
            Some(&mut w),
            &mut sink,
        )
        .unwrap()
    };
    assert_eq!(stats.skipped, 0);
    let with_wal = sink.finish().0;
    let (without, _) = read_rpm(wire::PackageFormat::RpmSqlite, &main);
    // rpm (through sqlite, which replays the log) is the oracle; it may checkpoint, so
    // it runs after our reading.
    let oracle = rpm_qa(&snap, &[]);
    assert_eq!(rpm_lines(&with_wal), oracle);
    assert_ne!(rpm_lines(&without), oracle, "the log changed the listing");
}

/// A db_load input (bytevalue format) of rpm's Packages: key = package number
/// (native-endian u32), value = the header blob, taken from the sqlite database.
fn db_load_input(sqlite_db: &str, kind: &str) -> String {
    let rows = run(
        "sqlite3",
        &[
            sqlite_db,
            "select hnum, hex(blob) from Packages order by hnum",
        ],
        None,
    );
    let mut s = format!("VERSION=3\nformat=bytevalue\ntype={kind}\ndb_pagesize=4096\nHEADER=END\n");
    for line in rows.lines() {
        let (n, hex) = line.split_once('|').unwrap();
        let n: u32 = n.parse().unwrap();
        let key: String = n.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
        s += &format!(" {key}\n {}\n", hex.to_lowercase());
    }
    s += "DATA=END\n";
    s
}

/// `db5.3_dump` of a database: its (key, value) pairs, hex, sorted.
fn db_dump_pairs(path: &str) -> Vec<(String, String)> {
    let out = run("db5.3_dump", &[path], None);
    let body = out.split("HEADER=END\n").nth(1).unwrap();
    let lines: Vec<&str> = body
        .lines()
        .take_while(|l| *l != "DATA=END")
        .map(str::trim)
        .collect();
    let mut v: Vec<(String, String)> = lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn rpm_berkeleydb_matches_db_dump_and_rpm_qa() {
    assert!(
        have("db5.3_load") && have("sqlite3"),
        "db5.3_load (db5.3-util) and sqlite3 are needed"
    );
    let t = TempDir::new("rpm-bdb");
    let (db, oracle) = rpm_sqlite_db(t.path());
    for kind in ["hash", "btree"] {
        let input = format!("{}/{kind}.txt", t.path());
        std::fs::write(&input, db_load_input(&format!("{db}/rpmdb.sqlite"), kind)).unwrap();
        let path = format!("{}/{kind}-Packages", t.path());
        run("db5.3_load", &["-f", &input, &path], None);
        let data = std::fs::read(&path).unwrap();
        // The pairs as Berkeley DB's own dump lists them.
        let mut ours = Vec::new();
        with_reader(&data, |r| {
            let mut d = bdb::Db::open(r).unwrap();
            assert_eq!(
                d.kind,
                if kind == "hash" {
                    bdb::Kind::Hash
                } else {
                    bdb::Kind::Btree
                }
            );
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let skipped = d
                .scan(&mut |k, v| {
                    ours.push((hex(k), hex(v)));
                    true
                })
                .unwrap();
            assert_eq!(skipped, 0);
        });
        ours.sort();
        assert_eq!(ours, db_dump_pairs(&path), "{kind}");
        // And the packages as rpm lists them.
        let (apps, stats) = read_rpm(wire::PackageFormat::RpmBerkeleyDb, &data);
        assert_eq!(stats.skipped, 0, "{kind}");
        assert_eq!(rpm_lines(&apps), oracle, "{kind}");
    }
}

#[test]
fn rpm_ndb_reads_real_headers() {
    // No tool here writes ndb (Debian's rpm has only the sqlite backend): the file is
    // laid out as rpm's ndb backend lays it out, around real headers from rpm.
    assert!(have("sqlite3"), "sqlite3 is needed");
    let t = TempDir::new("rpm-ndb");
    let (db, oracle) = rpm_sqlite_db(t.path());
    let rows = run(
        "sqlite3",
        &[
            &format!("{db}/rpmdb.sqlite"),
            "select hex(blob) from Packages order by hnum",
        ],
        None,
    );
    let blobs: Vec<Vec<u8>> = rows
        .lines()
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let mut data = ndb::build(&refs);
    let (apps, stats) = read_rpm(wire::PackageFormat::RpmNdb, &data);
    assert_eq!(stats.skipped, 0);
    assert_eq!(rpm_lines(&apps), oracle);
    // A damaged blob is skipped and counted, the others still read.
    let last = data.len() - 40;
    data[last] ^= 0xff;
    let (apps, stats) = read_rpm(wire::PackageFormat::RpmNdb, &data);
    assert_eq!(stats.skipped, 1);
    assert_eq!(apps.len(), oracle.len() - 1);
}

// ---------------------------------------------------------------- pacman, apk

#[test]
fn pacman_desc_files() {
    // As pacman writes them (libalpm be_local.c's layout: %KEY% line, values, blank).
    let desc = "%NAME%\nlinux\n\n%VERSION%\n1:6.9.7.arch1-1\n\n%BASE%\nlinux\n\n\
                %DESC%\nThe Linux kernel and modules\n\n%URL%\nhttps://github.com/archlinux/linux\n\n\
                %ARCH%\nx86_64\n\n%BUILDDATE%\n1715000000\n\n%INSTALLDATE%\n1715100000\n\n\
                %PACKAGER%\nJan <jan@example.org>\n\n%SIZE%\n136000000\n\n%LICENSE%\nGPL-2.0-only\n\n\
                %VALIDATION%\npgp\n\n%DEPENDS%\ncoreutils\nkmod\n\n";
    let a = pacman::parse_desc(desc.as_bytes()).unwrap();
    assert_eq!(
        (
            a.name.as_str(),
            a.epoch,
            a.version.as_str(),
            a.release.as_str()
        ),
        ("linux", 1, "6.9.7.arch1", "1")
    );
    assert_eq!(a.arch, "x86_64");
    assert_eq!(a.url, "https://github.com/archlinux/linux");
    assert_eq!(a.description, "The Linux kernel and modules");
    assert_eq!(a.install_time, Some(1_715_100_000));
    // A release is required, as are the name and arch.
    assert!(pacman::parse_desc(b"%NAME%\nx\n\n%VERSION%\n1.0\n\n%ARCH%\nany\n").is_none());
    assert!(pacman::parse_desc(b"%NAME%\nx\n\n%VERSION%\n1.0-1\n").is_none());
    assert!(pacman::parse_desc(b"%NAME%\nx\n\n%VERSION%\nq:1.0-1\n\n%ARCH%\nany\n").is_none());
}

#[test]
fn apk_installed_database() {
    // As apk writes /lib/apk/db/installed (apk-tools' documented field letters).
    let db = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:383152\nI:622592\n\
              T:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\n\
              o:musl\nm:Natanael Copa <ncopa@alpinelinux.org>\nt:1712000000\nc:abc\n\
              F:lib\nR:ld-musl-x86_64.so.1\na:0:0:755\n\n\
              P:busybox\nV:1:1.36.1-r29\nA:x86_64\nT:Size optimized toolbox\nU:https://busybox.net/\n\
              o:busybox\n\nP:noversion\nA:x86_64\n\nP:last-without-blank\nV:2.0-r3\nA:noarch\n";
    let mut sink = AppSink::default();
    let stats = with_reader(db.as_bytes(), |r| apk::parse(r, &mut sink)).unwrap();
    let (apps, _) = sink.finish();
    assert_eq!(stats.count, 3);
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["busybox", "last-without-blank", "musl"]);
    let m = &apps[2];
    assert_eq!(
        (m.version.as_str(), m.release.as_str(), m.epoch),
        ("1.2.5", "0", 0)
    );
    assert_eq!(m.url, "https://musl.libc.org/");
    assert_eq!(m.description, "the musl c library (libc) implementation");
    assert_eq!(m.source_package, "musl");
    let b = &apps[0];
    assert_eq!(
        (b.epoch, b.version.as_str(), b.release.as_str()),
        (1, "1.36.1", "29")
    );
}

#[test]
fn corrupt_rpm_databases_are_named_errors() {
    let t = TempDir::new("rpm-corrupt");
    let (db, _) = rpm_sqlite_db(t.path());
    let data = std::fs::read(format!("{db}/rpmdb.sqlite")).unwrap();
    let page_size = u16::from_be_bytes([data[16], data[17]]) as usize;
    let root = with_reader(&data, |r| {
        sqlite::Db::open(r)
            .unwrap()
            .table_root("Packages")
            .unwrap()
            .unwrap()
    }) as usize;
    let fmt = wire::PackageFormat::RpmSqlite;
    let fail = |d: &[u8]| {
        let mut sink = AppSink::default();
        with_reader(d, |r| rpm_database(fmt, r, None, &mut sink)).unwrap_err()
    };
    // The root interior page's right child pointing back at itself: a cycle.
    let mut cyc = data.clone();
    let at = (root - 1) * page_size + 8;
    cyc[at..at + 4].copy_from_slice(&(root as u32).to_be_bytes());
    let e = fail(&cyc);
    assert_eq!(e.kind, wire::ErrorKind::Corrupt);
    assert!(
        e.message.contains("sqlite") && e.message.contains("cycle"),
        "{e}"
    );
    // A file cut short: pages out of range.
    let e = fail(&data[..data.len() / 3]);
    assert_eq!(e.kind, wire::ErrorKind::Corrupt, "{e}");
    assert!(e.message.starts_with("sqlite:"), "{e}");
    // Not a database at all.
    let e = fail(b"not a database, just text that is long enough to have a header.......................................");
    assert!(e.message.contains("bad magic"), "{e}");
    // A record whose header blob is damaged is skipped and counted, the rest read.
    let (ok, _) = read_rpm(fmt, &data);
    let head = run(
        "sqlite3",
        &[
            &format!("{db}/rpmdb.sqlite"),
            "select hex(blob) from Packages where length(blob) < 2000 limit 1",
        ],
        None,
    );
    let head = head.trim();
    let head: Vec<u8> = (0..head.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&head[i..i + 2], 16).unwrap())
        .collect();
    let hits: Vec<usize> = data
        .windows(head.len())
        .enumerate()
        .filter(|(_, w)| *w == head)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "the blob is stored once, in one piece");
    let blob_at = hits[0];
    let mut bad = data.clone();
    bad[blob_at..blob_at + 4].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    let (apps, stats) = read_rpm(fmt, &bad);
    assert_eq!(stats.skipped, 1);
    assert_eq!(apps.len(), ok.len() - 1);
}
