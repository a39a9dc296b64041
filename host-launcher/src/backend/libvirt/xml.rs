//! libvirt XML: the appliance's transient domain (built here, no libvirt needed to test
//! it), and the parts of a guest's domain XML and a storage volume's XML that skiff reads
//! (disk sources, formats). Guest XML comes from libvirtd: parsed, never trusted to be
//! well-formed or complete — a missing piece is an error, not a panic.

use crate::images::format::Format;

/// The appliance's RPC channel name (`<target type='virtio' name=...>`), opened with
/// `virDomainOpenChannel`.
pub const CHANNEL_NAME: &str = "org.skiff.rpc";

/// PCI slot (on pcie.0) of the virtio-serial controller; disks follow from
/// [`FIRST_DISK_SLOT`]. The appliance enumerates bus 0 for its console, so every device
/// is an integrated endpoint on the root bus, as in the direct profile.
const SERIAL_SLOT: u32 = 0x02;
const FIRST_DISK_SLOT: u32 = 0x03;
/// Slot 0x1f is the ICH9 LPC/SATA/SMBus function block on q35.
const LAST_DISK_SLOT: u32 = 0x1e;

/// The most disks one appliance domain can have (one root-bus slot each).
pub const MAX_DISKS: usize = (LAST_DISK_SLOT - FIRST_DISK_SLOT + 1) as usize;

/// How libvirt reaches a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A regular file (`<disk type='file'>`).
    File(String),
    /// A block device (`<disk type='block'>`).
    Block(String),
}

impl Source {
    pub fn path(&self) -> &str {
        match self {
            Source::File(p) | Source::Block(p) => p,
        }
    }
}

/// One disk of the appliance domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub source: Source,
    pub format: Format,
    pub readonly: bool,
    /// The backing chain below the image (checked by skiff), nearest first: written out
    /// as explicit `<backingStore>` elements ending in an empty one, so that libvirt
    /// neither probes nor follows what the image header names. `None` (a remote disk
    /// opened with backing=allow, which skiff cannot read): libvirt finds the chain.
    pub backing: Option<Vec<(String, Format)>>,
    /// An encrypted qcow2 (qemu's LUKS): the UUID of the libvirt secret holding its key
    /// (`<encryption format='luks'><secret type='passphrase' uuid=.../>`).
    pub encryption: Option<String>,
}

/// Everything the appliance domain needs.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub name: String,
    /// `qemu` (TCG) or `kvm`.
    pub kvm: bool,
    pub memory_mib: u32,
    /// The appliance ELF, as a path on the host where libvirtd runs.
    pub kernel: String,
    pub cmdline: Option<String>,
    /// Firmware (`<loader type='rom'>`), e.g. qboot; `None`: libvirt's default (SeaBIOS).
    pub loader: Option<String>,
    pub disks: Vec<Disk>,
    /// Add `isa-debug-exit` (poweroff/panic exit qemu at once) and the debug-port log
    /// (qemu's stdout: the domain's log file) through `<qemu:commandline>`.
    pub passthrough: bool,
    /// PCIe root ports for disk hotplug (0: none), as in `qemu-configs/q35-hotplug.args`:
    /// libvirt controller indexes (and so PCI bus numbers) 1..=N, on the root bus after
    /// the cold-plugged disks. Hot-added disks go to `<address bus=K>` ([`hot_disk_xml`]).
    pub hotplug_ports: usize,
}

/// Escapes text for an XML attribute or element.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// `vda`, ..., `vdz`, `vdaa`, ... (libvirt wants a unique target name; the appliance
/// names disks by their `<serial>`, not by this).
fn target_dev(i: usize) -> String {
    let mut n = i + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let r = (n - 1) % 26;
        letters.push(b'a' + r as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    format!("vd{}", String::from_utf8_lossy(&letters))
}

/// The transient domain's XML. Errors only when there are more disks (and hotplug ports)
/// than slots.
pub fn domain_xml(spec: &DomainSpec) -> Result<String, String> {
    if spec.disks.len() + spec.hotplug_ports > MAX_DISKS {
        return Err(format!(
            "{} disks and {} hotplug ports: the libvirt backend has {MAX_DISKS} slots",
            spec.disks.len(),
            spec.hotplug_ports
        ));
    }
    let mut x = String::new();
    let mut line = |s: &str| {
        x.push_str(s);
        x.push('\n');
    };
    let dtype = if spec.kvm { "kvm" } else { "qemu" };
    line(&format!(
        "<domain type='{dtype}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    ));
    line(&format!("  <name>{}</name>", esc(&spec.name)));
    line(&format!(
        "  <memory unit='MiB'>{}</memory>",
        spec.memory_mib
    ));
    line("  <vcpu>1</vcpu>");
    line("  <os>");
    line("    <type arch='x86_64' machine='q35'>hvm</type>");
    if let Some(l) = &spec.loader {
        line(&format!("    <loader type='rom'>{}</loader>", esc(l)));
    }
    line(&format!("    <kernel>{}</kernel>", esc(&spec.kernel)));
    if let Some(c) = &spec.cmdline {
        line(&format!("    <cmdline>{}</cmdline>", esc(c)));
    }
    line("  </os>");
    if spec.kvm {
        line("  <cpu mode='host-passthrough'/>");
    } else {
        line("  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>");
    }
    line("  <on_poweroff>destroy</on_poweroff>");
    line("  <on_reboot>destroy</on_reboot>");
    line("  <on_crash>destroy</on_crash>");
    line("  <devices>");
    for (i, d) in spec.disks.iter().enumerate() {
        let address = format!(
            "<address type='pci' domain='0' bus='0' slot='{:#04x}' function='0'/>",
            FIRST_DISK_SLOT + i as u32
        );
        x.push_str(&disk_xml(i, d, &address, "    "));
    }
    let mut line = |s: &str| {
        x.push_str(s);
        x.push('\n');
    };
    if spec.hotplug_ports > 0 {
        line("    <controller type='pci' index='0' model='pcie-root'/>");
    }
    for k in 1..=spec.hotplug_ports {
        let slot = FIRST_DISK_SLOT + (spec.disks.len() + k - 1) as u32;
        line(&format!(
            "    <controller type='pci' index='{k}' model='pcie-root-port'>\
             <target chassis='{k}'/>\
             <address type='pci' domain='0' bus='0' slot='{slot:#04x}' function='0'/>\
             </controller>"
        ));
    }
    line("    <controller type='usb' model='none'/>");
    line(&format!(
        "    <controller type='virtio-serial' index='0'><address type='pci' domain='0' bus='0' slot='{SERIAL_SLOT:#04x}' function='0'/></controller>"
    ));
    // A unix socket (qemu listens, libvirtd connects on virDomainOpenChannel): the port
    // counts as connected from that moment, so nothing the appliance sends is dropped.
    line("    <channel type='unix'>");
    line("      <source mode='bind'/>");
    line(&format!(
        "      <target type='virtio' name='{CHANNEL_NAME}'/>"
    ));
    line("      <address type='virtio-serial' controller='0' bus='0' port='1'/>");
    line("    </channel>");
    line("    <memballoon model='none'/>");
    line("  </devices>");
    if spec.passthrough {
        line("  <qemu:commandline>");
        for a in [
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-chardev",
            "stdio,id=skifflog,signal=off",
            "-device",
            "isa-debugcon,iobase=0xe9,chardev=skifflog",
        ] {
            line(&format!("    <qemu:arg value='{a}'/>"));
        }
        if spec.hotplug_ports > 0 {
            // PCIe native hotplug on the root ports (the appliance drives the slots), not
            // ACPI hotplug. libvirt runs q35 without <acpi/> as acpi=off, and qemu 10 then
            // leaves the ports native anyway (x-do-not-expose-native-hotplug-cap false
            // with or without this); explicit, so that it holds with ACPI on too.
            for a in [
                "-global",
                "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
            ] {
                line(&format!("    <qemu:arg value='{a}'/>"));
            }
        }
        line("  </qemu:commandline>");
    }
    line("</domain>");
    Ok(x)
}

/// One `<disk>` element: slot `i` of the appliance (serial `skiff<i>`, which the appliance
/// names `/dev/sd<a+i>`; target `vd...`; user alias `ua-skiff<i>`), at `address`.
fn disk_xml(i: usize, d: &Disk, address: &str, indent: &str) -> String {
    let (kind, attr) = match &d.source {
        Source::File(_) => ("file", "file"),
        Source::Block(_) => ("block", "dev"),
    };
    let mut x = String::new();
    let mut line = |s: &str| {
        x.push_str(indent);
        x.push_str(s);
        x.push('\n');
    };
    line(&format!("<disk type='{kind}' device='disk'>"));
    line(&format!(
        "  <driver name='qemu' type='{}'/>",
        d.format.as_str()
    ));
    match &d.encryption {
        None => line(&format!("  <source {attr}='{}'/>", esc(d.source.path()))),
        Some(uuid) => {
            line(&format!("  <source {attr}='{}'>", esc(d.source.path())));
            line("    <encryption format='luks'>");
            line(&format!(
                "      <secret type='passphrase' uuid='{}'/>",
                esc(uuid)
            ));
            line("    </encryption>");
            line("  </source>");
        }
    }
    if let Some(chain) = &d.backing {
        let mut depth = String::from("  ");
        for (path, format) in chain {
            line(&format!("{depth}<backingStore type='file'>"));
            line(&format!("{depth}  <format type='{}'/>", format.as_str()));
            line(&format!("{depth}  <source file='{}'/>", esc(path)));
            depth.push_str("  ");
        }
        line(&format!("{depth}<backingStore/>"));
        for _ in chain {
            depth.truncate(depth.len() - 2);
            line(&format!("{depth}</backingStore>"));
        }
    }
    line(&format!("  <target dev='{}' bus='virtio'/>", target_dev(i)));
    line(&format!("  <serial>skiff{i}</serial>"));
    if d.readonly {
        line("  <readonly/>");
    }
    line(&format!("  <alias name='{}'/>", disk_alias(i)));
    line(&format!("  {address}"));
    line("</disk>");
    x
}

/// The user alias of the appliance's disk in slot `i` (libvirt wants `ua-` in front).
pub fn disk_alias(i: usize) -> String {
    format!("ua-skiff{i}")
}

/// The `<disk>` to hot-add as slot `i` on the root port with controller index `port`
/// (its bus number), for `virDomainAttachDevice`.
pub fn hot_disk_xml(i: usize, d: &Disk, port: usize) -> String {
    let address = format!("<address type='pci' domain='0' bus='{port}' slot='0' function='0'/>");
    disk_xml(i, d, &address, "")
}

/// An ephemeral, private libvirt secret (defined for one session): never written to
/// disk by libvirtd, never readable back through the API.
pub fn secret_xml(description: &str) -> String {
    format!(
        "<secret ephemeral='yes' private='yes'><description>{}</description></secret>",
        esc(description)
    )
}

/// Is a device with user alias `alias` in this (live) domain XML?
pub fn has_alias(domain_xml: &str, alias: &str) -> Result<bool, String> {
    let doc = roxmltree::Document::parse(domain_xml).map_err(|e| format!("domain XML: {e}"))?;
    Ok(doc
        .descendants()
        .any(|n| n.has_tag_name("alias") && n.attribute("name") == Some(alias)))
}

/// Where a guest's disk lives, as its domain XML says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSource {
    File(String),
    Block(String),
    Volume { pool: String, volume: String },
}

/// One disk of an existing guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDisk {
    pub source: GuestSource,
    /// The `<driver type=...>`; `None` when the XML names none.
    pub format: Option<String>,
    /// `<readonly/>` in the guest's own definition.
    pub readonly: bool,
    /// The guest's target name (`vda`, `sdb`), for messages.
    pub target: String,
}

/// The `device='disk'` disks of a guest's domain XML, in order. Disks without a source
/// (empty) are skipped; network disks and other types are an error (skiff cannot open
/// them through a path).
pub fn guest_disks(xml: &str) -> Result<Vec<GuestDisk>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let devices = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))
        .ok_or("domain XML has no <devices>")?;
    let mut out = Vec::new();
    for disk in devices.children().filter(|n| n.has_tag_name("disk")) {
        if disk.attribute("device").unwrap_or("disk") != "disk" {
            continue;
        }
        let child = |name: &str| disk.children().find(|n| n.has_tag_name(name));
        let target = child("target")
            .and_then(|t| t.attribute("dev"))
            .unwrap_or("?")
            .to_string();
        let Some(src) = child("source") else {
            continue;
        };
        let kind = disk.attribute("type").unwrap_or("file");
        let need = |attr: &str| -> Result<String, String> {
            src.attribute(attr)
                .map(String::from)
                .ok_or_else(|| format!("disk {target}: <source> has no {attr}="))
        };
        let source = match kind {
            "file" => GuestSource::File(need("file")?),
            "block" => GuestSource::Block(need("dev")?),
            "volume" => GuestSource::Volume {
                pool: need("pool")?,
                volume: need("volume")?,
            },
            other => {
                return Err(format!(
                    "disk {target}: type '{other}' is not supported (file, block and volume are)"
                ));
            }
        };
        out.push(GuestDisk {
            source,
            format: child("driver")
                .and_then(|d| d.attribute("type"))
                .map(String::from),
            readonly: child("readonly").is_some(),
            target,
        });
    }
    Ok(out)
}

/// A storage volume's path, format and kind, from its XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub path: String,
    pub format: Option<String>,
    pub block: bool,
}

pub fn volume_info(xml: &str) -> Result<VolumeInfo, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("volume XML: {e}"))?;
    let root = doc.root_element();
    let target = root
        .children()
        .find(|n| n.has_tag_name("target"))
        .ok_or("volume XML has no <target>")?;
    let path = target
        .children()
        .find(|n| n.has_tag_name("path"))
        .and_then(|p| p.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or("volume XML has no <target><path>")?;
    let format = target
        .children()
        .find(|n| n.has_tag_name("format"))
        .and_then(|f| f.attribute("type"))
        .map(String::from);
    let block = root.attribute("type") == Some("block");
    Ok(VolumeInfo {
        path,
        format,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "skiff-1-2".into(),
            kvm: false,
            memory_mib: 128,
            kernel: "/var/lib/libvirt/boot/skiff-abc.elf".into(),
            cmdline: Some("skiff.test=panic & <x>".into()),
            loader: Some("/usr/share/qemu/qboot.rom".into()),
            disks: vec![
                Disk {
                    backing: Some(Vec::new()),
                    source: Source::File("/d/a'b.img".into()),
                    format: Format::Raw,
                    readonly: true,
                    encryption: None,
                },
                Disk {
                    backing: Some(Vec::new()),
                    source: Source::Block("/dev/vg/lv".into()),
                    format: Format::Qcow2,
                    readonly: false,
                    encryption: None,
                },
            ],
            passthrough: true,
            hotplug_ports: 0,
        }
    }

    #[test]
    fn encrypted_disks_name_their_secret() {
        let mut sp = spec();
        sp.disks[1].encryption = Some("0a1b2c3d-0000-4000-8000-000000000001".into());
        let x = domain_xml(&sp).unwrap();
        let doc = roxmltree::Document::parse(&x).unwrap();
        let enc = doc
            .descendants()
            .find(|n| n.has_tag_name("encryption"))
            .unwrap();
        assert_eq!(enc.attribute("format"), Some("luks"));
        assert_eq!(enc.parent().unwrap().tag_name().name(), "source");
        let sec = enc.first_element_child().unwrap();
        assert_eq!(sec.attribute("type"), Some("passphrase"));
        assert_eq!(
            sec.attribute("uuid"),
            Some("0a1b2c3d-0000-4000-8000-000000000001")
        );
        let sx = secret_xml("skiff <key>");
        let d = roxmltree::Document::parse(&sx).unwrap();
        assert_eq!(d.root_element().attribute("ephemeral"), Some("yes"));
        assert_eq!(d.root_element().attribute("private"), Some("yes"));
    }

    #[test]
    fn domain_xml_parses_and_has_the_contract() {
        let x = domain_xml(&spec()).unwrap();
        let doc = roxmltree::Document::parse(&x).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("type"), Some("qemu"));
        let find = |tag: &str| doc.descendants().find(|n| n.has_tag_name(tag)).unwrap();
        assert_eq!(find("name").text(), Some("skiff-1-2"));
        assert_eq!(find("type").attribute("machine"), Some("q35"));
        assert_eq!(
            find("kernel").text(),
            Some("/var/lib/libvirt/boot/skiff-abc.elf")
        );
        assert_eq!(find("cmdline").text(), Some("skiff.test=panic & <x>"));
        assert_eq!(find("loader").attribute("type"), Some("rom"));
        assert_eq!(find("model").text(), Some("qemu64"));
        let disks: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("disk"))
            .collect();
        assert_eq!(disks.len(), 2);
        let sub = |n: &roxmltree::Node, tag: &str| {
            n.children().find(|c| c.has_tag_name(tag)).map(|c| {
                (
                    c.attribute("type").map(String::from),
                    c.text().map(String::from),
                )
            })
        };
        assert_eq!(disks[0].attribute("type"), Some("file"));
        assert_eq!(
            disks[0]
                .children()
                .find(|c| c.has_tag_name("source"))
                .unwrap()
                .attribute("file"),
            Some("/d/a'b.img")
        );
        assert_eq!(sub(&disks[0], "driver").unwrap().0.as_deref(), Some("raw"));
        assert_eq!(
            sub(&disks[0], "serial").unwrap().1.as_deref(),
            Some("skiff0")
        );
        assert!(sub(&disks[0], "readonly").is_some());
        assert_eq!(disks[1].attribute("type"), Some("block"));
        assert_eq!(
            disks[1]
                .children()
                .find(|c| c.has_tag_name("source"))
                .unwrap()
                .attribute("dev"),
            Some("/dev/vg/lv")
        );
        assert_eq!(
            sub(&disks[1], "driver").unwrap().0.as_deref(),
            Some("qcow2")
        );
        assert_eq!(
            sub(&disks[1], "serial").unwrap().1.as_deref(),
            Some("skiff1")
        );
        assert!(sub(&disks[1], "readonly").is_none());
        // Every PCI device on the root bus, in distinct slots.
        let slots: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("address") && n.attribute("type") == Some("pci"))
            .map(|n| {
                assert_eq!(n.attribute("bus"), Some("0"));
                n.attribute("slot").unwrap().to_string()
            })
            .collect();
        assert_eq!(slots, ["0x03", "0x04", "0x02"]);
        // The RPC channel: virtio-serial port 1, a unix socket, by name.
        let ch = find("channel");
        assert_eq!(ch.attribute("type"), Some("unix"));
        let t = ch.children().find(|c| c.has_tag_name("target")).unwrap();
        assert_eq!(t.attribute("name"), Some(CHANNEL_NAME));
        let a = ch.children().find(|c| c.has_tag_name("address")).unwrap();
        assert_eq!(a.attribute("port"), Some("1"));
        let args: Vec<_> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "arg")
            .map(|n| n.attribute("value").unwrap())
            .collect();
        assert!(args.contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04"));
    }

    #[test]
    fn kvm_and_no_extras() {
        let mut s = spec();
        s.kvm = true;
        s.cmdline = None;
        s.loader = None;
        s.passthrough = false;
        s.disks.clear();
        let x = domain_xml(&s).unwrap();
        let doc = roxmltree::Document::parse(&x).unwrap();
        assert_eq!(doc.root_element().attribute("type"), Some("kvm"));
        for tag in ["cmdline", "loader", "disk", "commandline"] {
            assert!(
                !doc.descendants().any(|n| n.tag_name().name() == tag),
                "{tag}"
            );
        }
        let cpu = doc.descendants().find(|n| n.has_tag_name("cpu")).unwrap();
        assert_eq!(cpu.attribute("mode"), Some("host-passthrough"));
    }

    #[test]
    fn too_many_disks() {
        let mut s = spec();
        s.disks = vec![s.disks[0].clone(); MAX_DISKS + 1];
        assert!(domain_xml(&s).is_err());
        s.disks.pop();
        assert!(domain_xml(&s).is_ok());
    }

    #[test]
    fn hotplug_ports_and_hot_disks() {
        let mut s = spec();
        s.hotplug_ports = 3;
        let x = domain_xml(&s).unwrap();
        let doc = roxmltree::Document::parse(&x).unwrap();
        let ports: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("model") == Some("pcie-root-port"))
            .collect();
        assert_eq!(ports.len(), 3);
        for (k, p) in ports.iter().enumerate() {
            assert_eq!(p.attribute("index"), Some((k + 1).to_string().as_str()));
            let a = p.children().find(|c| c.has_tag_name("address")).unwrap();
            // After the two cold-plugged disks (0x03, 0x04).
            assert_eq!(a.attribute("slot").unwrap(), format!("{:#04x}", 5 + k));
        }
        assert!(
            doc.descendants()
                .any(|n| n.attribute("model") == Some("pcie-root"))
        );
        assert!(x.contains("ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"));
        assert!(has_alias(&x, "ua-skiff1").unwrap());
        assert!(!has_alias(&x, "ua-skiff2").unwrap());
        s.hotplug_ports = MAX_DISKS - 1;
        assert!(domain_xml(&s).is_err());

        let d = hot_disk_xml(5, &s.disks[0], 2);
        let doc = roxmltree::Document::parse(&d).unwrap();
        let disk = doc.root_element();
        assert_eq!(disk.tag_name().name(), "disk");
        let child = |t: &str| disk.children().find(|c| c.has_tag_name(t));
        assert_eq!(child("serial").unwrap().text(), Some("skiff5"));
        assert_eq!(child("target").unwrap().attribute("dev"), Some("vdf"));
        assert_eq!(child("driver").unwrap().attribute("type"), Some("raw"));
        assert!(child("readonly").is_some());
        assert_eq!(child("alias").unwrap().attribute("name"), Some("ua-skiff5"));
        let a = child("address").unwrap();
        assert_eq!(a.attribute("bus"), Some("2"));
        assert_eq!(a.attribute("slot"), Some("0"));
        let w = hot_disk_xml(6, &s.disks[1], 1);
        assert!(!w.contains("readonly"));
        assert!(w.contains("<source dev='/dev/vg/lv'/>"));
    }

    #[test]
    fn target_names() {
        assert_eq!(target_dev(0), "vda");
        assert_eq!(target_dev(25), "vdz");
        assert_eq!(target_dev(26), "vdaa");
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a&b<'\">"), "a&amp;b&lt;&apos;&quot;&gt;");
    }

    const GUEST: &str = r#"<domain type='kvm' id='3'>
  <name>web</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/data'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/x.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='default' volume='logs.img'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <target dev='vdd' bus='virtio'/>
    </disk>
  </devices>
</domain>"#;

    #[test]
    fn guest_disks_from_domain_xml() {
        let d = guest_disks(GUEST).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[0].source,
            GuestSource::File("/var/lib/libvirt/images/web.qcow2".into())
        );
        assert_eq!(d[0].format.as_deref(), Some("qcow2"));
        assert!(!d[0].readonly);
        assert_eq!(d[1].source, GuestSource::Block("/dev/vg0/data".into()));
        assert!(d[1].readonly);
        assert_eq!(d[1].target, "vdb");
        assert_eq!(
            d[2].source,
            GuestSource::Volume {
                pool: "default".into(),
                volume: "logs.img".into()
            }
        );
        assert_eq!(d[2].format, None);
    }

    #[test]
    fn guest_disks_errors() {
        assert!(guest_disks("<domain>").is_err());
        assert!(guest_disks("<domain/>").is_err());
        let net = "<domain><devices><disk type='network' device='disk'>\
            <source protocol='nbd' name='x'/><target dev='vda'/></disk></devices></domain>";
        assert!(guest_disks(net).unwrap_err().contains("network"));
        let nofile = "<domain><devices><disk type='file'><source/><target dev='vda'/>\
            </disk></devices></domain>";
        assert!(guest_disks(nofile).unwrap_err().contains("file="));
        assert_eq!(
            guest_disks("<domain><devices/></domain>").unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn volume_xml() {
        let v = volume_info(
            "<volume type='file'><name>a.qcow2</name><target>\
             <path>/var/lib/libvirt/images/a.qcow2</path><format type='qcow2'/></target></volume>",
        )
        .unwrap();
        assert_eq!(v.path, "/var/lib/libvirt/images/a.qcow2");
        assert_eq!(v.format.as_deref(), Some("qcow2"));
        assert!(!v.block);
        let v =
            volume_info("<volume type='block'><target><path> /dev/vg/x </path></target></volume>")
                .unwrap();
        assert_eq!(v.path, "/dev/vg/x");
        assert!(v.block);
        assert!(volume_info("<volume><target/></volume>").is_err());
        assert!(volume_info("nope").is_err());
    }
}
