//! Text forms of the results: what a person reads in a terminal. Guest strings that
//! could carry terminal escapes (inspection facts, image names in bulk output) are shown
//! with control characters escaped ([`safe`]).

use crate::commands::{DfReport, EachOutcome, Entry, Output};
use anyhow::Result;
use skiff::df::human_size;
use skiff::fs::mode_string;
use skiff::inspect::OsInfo;
use skiff::json::{LvDoc, PvDoc, VgDoc};
use skiff::wire::{FileType, Stat, StatVfs, TableKind};
use std::io::Write;

/// `customize`/`sysprep`: one line per change (`would ...` in a dry run), then notes.
fn write_customize(out: &mut impl Write, r: &skiff::customize::Report) -> Result<()> {
    let would = if r.dry_run { "would " } else { "" };
    for c in &r.changes {
        write!(
            out,
            "{}: {would}{} {}",
            safe(&c.operation),
            c.action.verb(),
            safe(&c.path)
        )?;
        if let Some(d) = &c.detail {
            write!(out, " ({})", safe(d))?;
        }
        writeln!(out)?;
    }
    if r.changes.is_empty() {
        writeln!(
            out,
            "{}",
            if r.dry_run {
                "nothing would change"
            } else {
                "nothing changed"
            }
        )?;
    }
    for n in &r.notes {
        writeln!(out, "note: {}", safe(n))?;
    }
    Ok(())
}

/// Writes `output` as text to `out` (and, for `df` errors and the end of `each`, to
/// stderr).
pub fn render(out: &mut impl Write, output: Output) -> Result<()> {
    match output {
        Output::Raw | Output::Done { .. } | Output::Transfer { .. } => {}
        Output::Devices { devices, .. } => {
            for d in devices {
                writeln!(out, "{} {}", d.name, d.size)?;
            }
        }
        Output::Partitions(parts) => {
            for p in parts {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p.name,
                    match p.table {
                        TableKind::Mbr => "mbr",
                        TableKind::Gpt => "gpt",
                    },
                    p.number,
                    p.start,
                    p.size,
                    p.part_type,
                    p.label.as_deref().unwrap_or("-")
                )?;
            }
        }
        Output::Filesystems(fs) => {
            let rows: Vec<[String; 5]> = fs
                .iter()
                .map(|f| {
                    [
                        f.device.clone(),
                        f.fstype.clone(),
                        f.label.clone().unwrap_or_else(|| "-".into()),
                        f.uuid.clone().unwrap_or_else(|| "-".into()),
                        f.size.to_string(),
                    ]
                })
                .collect();
            let head = ["Name", "VFS", "Label", "UUID", "Size"].map(String::from);
            write_table(out, &head, &rows)?;
        }
        Output::Names { names, .. } => {
            for n in names {
                writeln!(out, "{n}")?;
            }
        }
        Output::Listing { entries, .. } => {
            for e in entries {
                write_ll(out, &e)?;
            }
        }
        Output::Stat { stat, .. } => write_stat(out, &stat)?,
        Output::Readlink { target, .. } => writeln!(out, "{target}")?,
        Output::Checksum { checksum, .. } => writeln!(out, "{checksum}")?,
        Output::Checksums { files, .. } => {
            for (path, hash) in files {
                writeln!(out, "{hash}  ./{path}")?;
            }
        }
        Output::Du { kib, .. } => writeln!(out, "{kib}")?,
        Output::Statvfs { statvfs, .. } => write_statvfs(out, &statvfs)?,
        Output::Test { value, .. } => writeln!(out, "{value}")?,
        Output::Mounts(mounts) => {
            for m in mounts {
                let mode = if m.readonly { "ro" } else { "rw" };
                writeln!(out, "{} {} {} {mode}", m.device, m.mountpoint, m.fstype)?;
            }
        }
        Output::Inspect(r) => {
            if r.oses.is_empty() {
                writeln!(out, "no operating system found")?;
            }
            for os in &r.oses {
                write_os(out, os, r.list_applications)?;
            }
        }
        Output::Pvs { pvs, full } => {
            if full {
                let docs: Vec<PvDoc> = pvs.iter().map(PvDoc::from).collect();
                write_full(out, &docs)?;
            } else {
                for p in pvs {
                    writeln!(out, "{}", safe(&p.name))?;
                }
            }
        }
        Output::Vgs { vgs, full } => {
            if full {
                let docs: Vec<VgDoc> = vgs.iter().map(VgDoc::from).collect();
                write_full(out, &docs)?;
            } else {
                for v in vgs {
                    writeln!(out, "{}", safe(&v.name))?;
                }
            }
        }
        Output::Lvs { lvs, full } => {
            if full {
                let docs: Vec<LvDoc> = lvs.iter().map(LvDoc::from).collect();
                write_full(out, &docs)?;
            } else {
                for l in lvs.iter().filter(|l| !l.hidden) {
                    writeln!(out, "{}", safe(&l.name))?;
                }
            }
        }
        Output::Xattrs { xattrs, .. } => {
            for x in xattrs {
                writeln!(
                    out,
                    "{}={}",
                    safe(&x.name),
                    safe(&String::from_utf8_lossy(&x.value))
                )?;
            }
        }
        Output::Df(report) => write_df(out, &report)?,
        Output::EachImage(o) => write_outcome(out, &o)?,
        Output::Summary { ok, failed } => eprintln!("{ok} ok, {failed} failed"),
        Output::Customize(report) => write_customize(out, &report)?,
        Output::SysprepOperations(ops) => {
            for o in ops {
                let mark = match o.effect {
                    skiff::customize::sysprep::Effect::NotOffered => "-",
                    _ if o.default => "*",
                    _ => " ",
                };
                writeln!(out, "{} {mark} {}", o.name, o.description)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Records as guestfish's `*-full` commands print them: `[i] = {`, one `field: value`
/// line each (in the record's field order), `}`.
fn write_full(out: &mut impl Write, records: &[impl serde::Serialize]) -> Result<()> {
    for (i, r) in records.iter().enumerate() {
        let fields: Ordered = serde_json::from_str(&serde_json::to_string(r)?)?;
        writeln!(out, "[{i}] = {{")?;
        for (k, v) in fields.0 {
            let v = match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            writeln!(out, "  {k}: {}", safe(&v))?;
        }
        writeln!(out, "}}")?;
    }
    Ok(())
}

/// A JSON object's fields in document order (serde_json's map sorts them).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry()? {
                    v.push(e);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// One line of `ll`: mode, uid, gid, size, mtime (UTC), name (`-> target` for a symlink).
fn write_ll(out: &mut impl Write, e: &Entry) -> Result<()> {
    let st = &e.entry.stat;
    let name = match &e.link_target {
        Some(t) if st.file_type == FileType::Symlink => format!("{} -> {t}", e.entry.name),
        _ => e.entry.name.clone(),
    };
    writeln!(
        out,
        "{} {:>5} {:>5} {:>10} {} {}",
        mode_string(st.file_type, st.mode),
        st.uid,
        st.gid,
        st.size,
        format_time(st.mtime),
        name
    )?;
    Ok(())
}

fn write_statvfs(out: &mut impl Write, v: &StatVfs) -> Result<()> {
    writeln!(out, "bsize: {}", v.block_size)?;
    writeln!(out, "blocks: {}", v.blocks)?;
    writeln!(out, "bfree: {}", v.blocks_free)?;
    writeln!(out, "bavail: {}", v.blocks_avail)?;
    writeln!(out, "files: {}", v.files)?;
    writeln!(out, "ffree: {}", v.files_free)?;
    writeln!(out, "namemax: {}", v.name_max)?;
    Ok(())
}

/// Columns padded to their widest cell, separated by two spaces.
fn write_table(out: &mut impl Write, head: &[String; 5], rows: &[[String; 5]]) -> Result<()> {
    let mut width = [0usize; 5];
    for r in std::iter::once(head).chain(rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(head).chain(rows) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::CharDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

fn write_stat(out: &mut impl Write, st: &Stat) -> Result<()> {
    writeln!(out, "type: {}", type_name(st.file_type))?;
    writeln!(
        out,
        "mode: {:04o} ({})",
        st.mode,
        mode_string(st.file_type, st.mode)
    )?;
    writeln!(out, "uid: {}", st.uid)?;
    writeln!(out, "gid: {}", st.gid)?;
    writeln!(out, "size: {}", st.size)?;
    writeln!(out, "nlink: {}", st.nlink)?;
    writeln!(out, "ino: {}", st.ino)?;
    writeln!(out, "atime: {} ({})", st.atime, format_time(st.atime))?;
    writeln!(out, "mtime: {} ({})", st.mtime, format_time(st.mtime))?;
    writeln!(out, "ctime: {} ({})", st.ctime, format_time(st.ctime))?;
    Ok(())
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC (proleptic Gregorian).
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn write_os(out: &mut impl Write, os: &OsInfo, list_applications: bool) -> Result<()> {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "unknown".into(), safe);
    writeln!(out, "{}:", safe(&os.root))?;
    writeln!(out, "  type: {}", os.os_type.as_str())?;
    writeln!(out, "  distro: {}", opt(&os.distro))?;
    writeln!(out, "  version: {}", opt(&os.version))?;
    writeln!(out, "  product name: {}", opt(&os.product_name))?;
    if let Some(v) = &os.product_variant {
        writeln!(out, "  product variant: {}", safe(v))?;
    }
    writeln!(out, "  hostname: {}", opt(&os.hostname))?;
    writeln!(out, "  arch: {}", opt(&os.arch))?;
    writeln!(out, "  package format: {}", opt(&os.package_format))?;
    writeln!(out, "  package management: {}", opt(&os.package_management))?;
    writeln!(out, "  osinfo: {}", opt(&os.osinfo))?;
    if let Some(v) = &os.windows_systemroot {
        writeln!(out, "  windows systemroot: {}", safe(v))?;
    }
    if let Some(v) = &os.windows_current_control_set {
        writeln!(out, "  windows current control set: {}", safe(v))?;
    }
    if !os.drive_mappings.is_empty() {
        let d: Vec<String> = os
            .drive_mappings
            .iter()
            .map(|d| format!("{}: {}", safe(&d.name), safe(&d.device)))
            .collect();
        writeln!(out, "  drive mappings: {}", d.join(", "))?;
    }
    if !os.mountpoints.is_empty() {
        writeln!(out, "  mountpoints:")?;
        for m in &os.mountpoints {
            let how = os
                .fstab
                .iter()
                .find(|e| {
                    e.mountpoint.trim_end_matches('/') == m.mountpoint
                        || e.mountpoint == m.mountpoint
                })
                .map(|e| format!(" ({} {})", safe(&e.spec), safe(&e.fstype)))
                .unwrap_or_default();
            writeln!(out, "    {} {}{how}", safe(&m.mountpoint), safe(&m.device))?;
        }
    }
    if let Some(apps) = &os.applications {
        let dbs: Vec<String> = os.package_databases.iter().map(|d| safe(&d.path)).collect();
        let from = if dbs.is_empty() {
            String::new()
        } else {
            format!(" (from {})", dbs.join(", "))
        };
        writeln!(out, "  applications: {}{from}", apps.len())?;
        if list_applications {
            for a in apps {
                let mut v = String::new();
                if a.epoch != 0 {
                    v.push_str(&format!("{}:", a.epoch));
                }
                v.push_str(&a.version);
                if !a.release.is_empty() {
                    v.push_str(&format!("-{}", a.release));
                }
                let mut line = format!("    {} {}", safe(&a.name), safe(&v));
                if !a.arch.is_empty() {
                    line.push_str(&format!(" {}", safe(&a.arch)));
                }
                if !a.display_name.is_empty() {
                    line.push_str(&format!(" \"{}\"", safe(&a.display_name)));
                }
                writeln!(out, "{}", line.trim_end())?;
            }
        }
    }
    Ok(())
}

/// The df table on `out` (the first column left-aligned, the rest right-aligned, like
/// df), then the images that could not be measured on stderr.
fn write_df(out: &mut impl Write, report: &DfReport) -> Result<()> {
    let human = report.human;
    let mut table = vec![[
        "Filesystem".to_string(),
        if human { "Size" } else { "1K-blocks" }.into(),
        "Used".into(),
        "Available".into(),
        "Use%".into(),
    ]];
    let n = |b: u64| {
        if human {
            human_size(b)
        } else {
            (b / 1024).to_string()
        }
    };
    for r in &report.rows {
        table.push([
            format!("{}:{}", r.image, r.fs.device),
            n(r.fs.size),
            n(r.fs.used),
            n(r.fs.available),
            format!("{}%", r.fs.use_percent),
        ]);
    }
    let mut w = [0usize; 5];
    for r in &table {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &table {
        writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
            safe(&r[0]),
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )?;
    }
    out.flush()?;
    for e in &report.errors {
        eprintln!("skiff: {}: {}", e.image, e.error);
    }
    Ok(())
}

/// One image's run under `each`: its stdout lines on `out` and its stderr lines on
/// stderr, each prefixed with the image name.
fn write_outcome(out: &mut impl Write, o: &EachOutcome) -> std::io::Result<()> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let name = &o.image;
    let err = text(&o.stderr);
    for line in text(&o.stdout).lines() {
        writeln!(out, "{}: {}", safe(name), safe(line))?;
    }
    out.flush()?;
    let mut e = std::io::stderr().lock();
    for line in err.lines() {
        writeln!(e, "{}: {}", safe(name), safe(line))?;
    }
    if !o.ok && err.trim().is_empty() {
        writeln!(e, "{}: failed (exit status {:?})", safe(name), o.code)?;
    }
    Ok(())
}

/// A guest string for a terminal: control characters shown as `\u{..}` escapes.
pub fn safe(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_escapes_controls() {
        assert_eq!(safe("a b"), "a b");
        assert_eq!(safe("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
    }

    fn rendered(output: Output) -> String {
        let mut out = Vec::new();
        render(&mut out, output).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forms() {
        use skiff::wire::Mount;
        assert_eq!(rendered(Output::Done { bytes: Some(3) }), "");
        assert_eq!(
            rendered(Output::Test {
                path: "/a".into(),
                test: crate::commands::Test::IsDir,
                value: true
            }),
            "true\n"
        );
        assert_eq!(
            rendered(Output::Mounts(vec![Mount {
                device: "/dev/sda1".into(),
                mountpoint: "/".into(),
                fstype: "ext4".into(),
                readonly: true
            }])),
            "/dev/sda1 / ext4 ro\n"
        );
        assert_eq!(
            rendered(Output::Filesystems(vec![skiff::wire::Filesystem {
                device: "/dev/sda".into(),
                fstype: "vfat".into(),
                label: None,
                uuid: Some("1A2B-3C4D".into()),
                size: 512,
            }])),
            "Name      VFS   Label  UUID       Size\n/dev/sda  vfat  -      1A2B-3C4D  512\n"
        );
    }

    #[test]
    fn lvm_forms() {
        let lv = |name: &str, hidden| skiff::wire::LogicalVolume {
            name: format!("/dev/vg/{name}"),
            lv_name: name.into(),
            vg: "vg".into(),
            uuid: "u".into(),
            attr: "-wi-------".into(),
            size: 4 << 20,
            segtype: "linear".into(),
            seg_count: 1,
            origin: None,
            pool: None,
            mirror_log: None,
            tags: vec!["a".into(), "b".into()],
            hidden,
            devices: vec!["/dev/sda2(0)".into()],
            error: None,
        };
        let lvs = vec![lv("root", false), lv("leg", true)];
        assert_eq!(
            rendered(Output::Lvs {
                lvs: lvs.clone(),
                full: false
            }),
            "/dev/vg/root\n"
        );
        let full = rendered(Output::Lvs { lvs, full: true });
        assert!(
            full.starts_with("[0] = {\n  lv_path: /dev/vg/root\n  lv_name: root\n  vg_name: vg\n"),
            "{full}"
        );
        assert!(full.contains("  lv_tags: a,b\n  hidden: false\n"), "{full}");
        assert!(full.contains("[1] = {\n  lv_path: /dev/vg/leg\n"), "{full}");
        assert!(full.contains("  origin: \n"), "{full}");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59");
    }
}
