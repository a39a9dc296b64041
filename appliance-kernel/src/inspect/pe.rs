//! The machine type of a PE executable (`cmd.exe`): the `MZ` header's pointer to the
//! `PE\0\0` signature, then the COFF header's machine field.

/// Bytes of the file needed at most (the PE header must start in the first 64 KiB).
pub const HEADER_BYTES: usize = 64 * 1024;

/// The architecture name libguestfs reports for a PE file's machine, from the first
/// bytes of the file; `None` when they are not a PE header or the machine is unknown.
pub fn arch(head: &[u8]) -> Option<&'static str> {
    if head.get(..2)? != b"MZ" {
        return None;
    }
    let lfanew = u32::from_le_bytes(head.get(0x3c..0x40)?.try_into().ok()?) as usize;
    let pe = head.get(lfanew..lfanew.checked_add(6)?)?;
    if pe.get(..4)? != b"PE\0\0" {
        return None;
    }
    let machine = u16::from_le_bytes(pe.get(4..6)?.try_into().ok()?);
    Some(match machine {
        0x014c => "i386",
        0x8664 => "x86_64",
        0xaa64 => "aarch64",
        0x01c0 | 0x01c2 | 0x01c4 => "arm",
        0x0200 => "ia64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines() {
        let mut h = alloc::vec![0u8; 256];
        h[..2].copy_from_slice(b"MZ");
        h[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        h[0x80..0x84].copy_from_slice(b"PE\0\0");
        h[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(arch(&h), Some("x86_64"));
        h[0x84..0x86].copy_from_slice(&0x014cu16.to_le_bytes());
        assert_eq!(arch(&h), Some("i386"));
        h[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(arch(&h), None);
        assert_eq!(arch(b"MZ"), None);
    }
}
