//! Accelerator choice: KVM only where it really works (usable /dev/kvm **and** vmx/svm in
//! the CPU flags), TCG otherwise; `$SKIFF_ACCEL=tcg|kvm` overrides.

use crate::error::{Error, Result};
use std::fs::OpenOptions;

/// The qemu accelerator an appliance runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    /// The `accel=` value for `-machine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// The `-cpu` model that suits the accelerator.
    pub fn cpu(self) -> &'static str {
        match self {
            Accel::Tcg => "qemu64",
            Accel::Kvm => "host",
        }
    }

    /// `$SKIFF_ACCEL` if set, else [`Accel::detect`].
    pub fn from_env_or_detect() -> Result<Accel> {
        match std::env::var("SKIFF_ACCEL") {
            Ok(v) if !v.is_empty() => Accel::parse(&v),
            _ => Ok(Accel::detect()),
        }
    }

    pub fn parse(s: &str) -> Result<Accel> {
        match s {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            other => Err(Error::Config(format!(
                "unknown accelerator {other:?} (expected tcg or kvm)"
            ))),
        }
    }

    /// KVM when /dev/kvm opens read-write and the CPU advertises hardware virtualisation.
    /// (A /dev/kvm without vmx/svm exists on some build machines: a KVM guest hangs there.)
    pub fn detect() -> Accel {
        let dev_ok = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let cpu_ok = std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| cpu_has_virt(&s))
            .unwrap_or(false);
        if dev_ok && cpu_ok {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

/// True when a `flags` line of /proc/cpuinfo lists `vmx` (Intel) or `svm` (AMD).
pub fn cpu_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "flags")
        .any(|(_, v)| v.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virt_flags() {
        assert!(cpu_has_virt("processor\t: 0\nflags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_has_virt("flags : fpu svm\n"));
        assert!(!cpu_has_virt("flags\t\t: fpu vme sse hypervisor\n"));
        // A word merely containing "vmx" is not the flag, and other keys do not count.
        assert!(!cpu_has_virt("flags\t: avx512_vmxx\nvmx flags\t: vmx\n"));
        assert!(!cpu_has_virt(""));
    }

    #[test]
    fn parse_and_names() {
        assert_eq!(Accel::parse("kvm").unwrap(), Accel::Kvm);
        assert_eq!(Accel::parse("tcg").unwrap().cpu(), "qemu64");
        assert_eq!(Accel::Kvm.cpu(), "host");
        assert!(matches!(Accel::parse("hvf"), Err(Error::Config(_))));
    }
}
