//! `inspect --xml`: virt-inspector's XML, so that its consumers can switch unchanged.
//! Same elements in the same order and nesting (virt-inspector.rng), the same value
//! formats, and the same bytes as libxml2's text writer produces for virt-inspector:
//! two-space indentation, `<x/>` for an empty element, text escaped as
//! `xmlEncodeSpecialChars` does (`&amp; &lt; &gt; &quot;`, carriage return as `&#13;`),
//! attributes as libxml2 escapes them. What skiff knows that virt-inspector does not
//! show (package databases, warnings, vendor, install times) is left out; the
//! differences that remain are listed in the README.

use anyhow::Result;
use skiff::inspect::{GuestFilesystem, OsInfo, OsType};
use skiff::wire::Application;
use std::io::Write;

/// libxml2's escaping of text content.
fn text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\r' => o.push_str("&#13;"),
            c => o.push(c),
        }
    }
    o
}

/// libxml2's escaping of an attribute value (non-ASCII as character references, as it
/// writes them in a document without a declared encoding).
fn attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\n' => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            '\t' => o.push_str("&#9;"),
            c if !c.is_ascii() => o.push_str(&format!("&#x{:X};", u32::from(c))),
            c => o.push(c),
        }
    }
    o
}

/// An indented XML writer with libxml2's layout.
struct W {
    out: String,
}

impl W {
    fn pad(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }
    /// `<name>value</name>` on its own line.
    fn leaf(&mut self, depth: usize, name: &str, value: &str) {
        self.pad(depth);
        self.out
            .push_str(&format!("<{name}>{}</{name}>\n", text(value)));
    }
    fn opt(&mut self, depth: usize, name: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.leaf(depth, name, v);
        }
    }
    fn open(&mut self, depth: usize, name: &str) {
        self.pad(depth);
        self.out.push_str(&format!("<{name}>\n"));
    }
    fn close(&mut self, depth: usize, name: &str) {
        self.pad(depth);
        self.out.push_str(&format!("</{name}>\n"));
    }
}

/// Whether virt-inspector lists applications for this OS (libguestfs lists them for
/// Linux and Hurd guests with an rpm, deb, pacman or apk package format, and Windows).
fn lists_applications(os: &OsInfo) -> bool {
    match os.os_type {
        OsType::Windows => true,
        OsType::Linux | OsType::Hurd => matches!(
            os.package_format.as_deref(),
            Some("rpm" | "deb" | "pacman" | "apk")
        ),
        OsType::Unknown => false,
    }
}

/// `format`: the OS's package format (`rpm`, `deb`, `apk`, ...).
fn application(w: &mut W, a: &Application, format: Option<&str>) {
    let rpm = format == Some("rpm");
    w.open(3, "application");
    w.leaf(4, "name", &a.name);
    // librpm prints a header tag the package does not have as "(none)".
    let none = |s: &str| {
        if rpm && s.is_empty() {
            "(none)".to_string()
        } else {
            s.to_string()
        }
    };
    let fields: [(&str, String); 11] = [
        ("display_name", a.display_name.clone()),
        (
            "epoch",
            if a.epoch != 0 {
                a.epoch.to_string()
            } else {
                String::new()
            },
        ),
        ("version", a.version.clone()),
        ("release", a.release.clone()),
        ("arch", none(&a.arch)),
        ("install_path", a.install_path.clone()),
        ("publisher", a.publisher.clone()),
        ("url", none(&a.url)),
        (
            "source_package",
            // libguestfs fills it from dpkg's `Source:` only (rpm's source rpm and apk's
            // origin, which skiff reads, are left out).
            if format == Some("deb") {
                a.source_package.clone()
            } else {
                String::new()
            },
        ),
        ("summary", none(&a.summary)),
        ("description", none(&a.description)),
    ];
    for (name, v) in fields {
        if !v.is_empty() {
            w.leaf(4, name, &v);
        }
    }
    w.close(3, "application");
}

/// The name virt-inspector shows for the skiff device `dev` (mounted at `mp`, when
/// given): libguestfs leaves an fstab spec `/dev/disk/by-*/...` as written (its
/// appliance has those links), where skiff resolves it to the device.
fn shown_device(os: &OsInfo, dev: &str, mp: Option<&str>) -> String {
    os.fstab
        .iter()
        .find(|e| {
            e.spec.starts_with("/dev/disk/by-")
                && e.device.as_deref() == Some(dev)
                && mp.is_none_or(|m| e.mountpoint == m)
        })
        .map_or_else(|| dev.to_string(), |e| e.spec.clone())
}

fn os(w: &mut W, os: &OsInfo) {
    w.open(1, "operatingsystem");
    w.leaf(2, "root", &os.root);
    if os.os_type != OsType::Unknown {
        w.leaf(2, "name", os.os_type.as_str());
    }
    w.opt(2, "arch", &os.arch);
    w.opt(2, "distro", &os.distro);
    w.opt(2, "product_name", &os.product_name);
    w.opt(2, "product_variant", &os.product_variant);
    w.leaf(
        2,
        "major_version",
        &os.major_version.unwrap_or(0).to_string(),
    );
    w.leaf(
        2,
        "minor_version",
        &os.minor_version.unwrap_or(0).to_string(),
    );
    w.opt(2, "package_format", &os.package_format);
    w.opt(2, "package_management", &os.package_management);
    w.opt(2, "windows_systemroot", &os.windows_systemroot);
    w.opt(
        2,
        "windows_current_control_set",
        &os.windows_current_control_set,
    );
    w.opt(2, "hostname", &os.hostname);
    w.opt(2, "osinfo", &os.osinfo);

    if os.mountpoints.is_empty() {
        w.pad(2);
        w.out.push_str("<mountpoints/>\n");
    } else {
        w.open(2, "mountpoints");
        for m in &os.mountpoints {
            w.pad(3);
            w.out.push_str(&format!(
                "<mountpoint dev=\"{}\">{}</mountpoint>\n",
                attr(&shown_device(os, &m.device, Some(&m.mountpoint))),
                text(&m.mountpoint)
            ));
        }
        w.close(2, "mountpoints");
    }

    if os.filesystems.is_empty() {
        w.pad(2);
        w.out.push_str("<filesystems/>\n");
    } else {
        w.open(2, "filesystems");
        // Sorted by the name shown, as virt-inspector sorts them.
        let mut fss: Vec<(String, &GuestFilesystem)> = os
            .filesystems
            .iter()
            .map(|f| (shown_device(os, &f.device, None), f))
            .collect();
        fss.sort_by(|a, b| a.0.cmp(&b.0));
        for (dev, f) in fss {
            w.pad(3);
            let children = [("type", &f.fstype), ("label", &f.label), ("uuid", &f.uuid)];
            if children.iter().all(|(_, v)| v.is_none()) {
                w.out
                    .push_str(&format!("<filesystem dev=\"{}\"/>\n", attr(&dev)));
                continue;
            }
            w.out
                .push_str(&format!("<filesystem dev=\"{}\">\n", attr(&dev)));
            for (name, v) in children {
                w.opt(4, name, v);
            }
            w.close(3, "filesystem");
        }
        w.close(2, "filesystems");
    }

    if !os.drive_mappings.is_empty() {
        w.open(2, "drive_mappings");
        for d in &os.drive_mappings {
            w.pad(3);
            w.out.push_str(&format!(
                "<drive_mapping name=\"{}\">{}</drive_mapping>\n",
                attr(&d.name),
                text(&d.device)
            ));
        }
        w.close(2, "drive_mappings");
    }

    if let Some(apps) = &os.applications {
        let apps: &[Application] = if lists_applications(os) { apps } else { &[] };
        if apps.is_empty() {
            w.pad(2);
            w.out.push_str("<applications/>\n");
        } else {
            w.open(2, "applications");
            for a in apps {
                application(w, a, os.package_format.as_deref());
            }
            w.close(2, "applications");
        }
    }
    if let Some(icon) = &os.icon {
        // libxml2's base64 writer: 72 characters a line, lines ended by CR LF.
        let lines: Vec<&str> = icon
            .as_bytes()
            .chunks(72)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        w.pad(2);
        w.out
            .push_str(&format!("<icon>{}</icon>\n", lines.join("\r\n")));
    }
    w.close(1, "operatingsystem");
}

/// The XML document for `oses` (`<operatingsystems/>` when there are none).
pub fn document(oses: &[OsInfo]) -> String {
    let mut w = W {
        out: String::from("<?xml version=\"1.0\"?>\n"),
    };
    if oses.is_empty() {
        w.out.push_str("<operatingsystems/>\n");
        return w.out;
    }
    w.open(0, "operatingsystems");
    for o in oses {
        os(&mut w, o);
    }
    w.close(0, "operatingsystems");
    w.out
}

/// Writes the XML document for `oses` to `out`.
pub fn render(out: &mut impl Write, oses: &[OsInfo]) -> Result<()> {
    out.write_all(document(oses).as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_like_libxml2() {
        assert_eq!(
            text("A <free> & \"open\"\r\nx"),
            "A &lt;free&gt; &amp; &quot;open&quot;&#13;\nx"
        );
        assert_eq!(attr("a\"b\n\té"), "a&quot;b&#10;&#9;&#xE9;");
    }

    #[test]
    fn empty_document() {
        assert_eq!(
            document(&[]),
            "<?xml version=\"1.0\"?>\n<operatingsystems/>\n"
        );
    }
}
