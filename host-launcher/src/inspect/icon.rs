//! The guest's icon, as virt-inspector shows it (`<icon>`, base64 PNG): the distro's
//! logo file where the distro ships one at a fixed path. Read through the guest's own
//! mounts, bounded ([`MAX_ICON`]); only the PNG signature and header size are looked at.

use super::files::GuestFiles;
use crate::error::Result;

/// The largest icon file kept (bigger ones are left out, as libguestfs leaves them out).
pub const MAX_ICON: u64 = 1 << 20;

/// The logo file a distro ships (`None`: none known).
pub fn icon_path(distro: &str) -> Option<&'static str> {
    Some(match distro {
        "debian" => "/usr/share/pixmaps/debian-logo.png",
        "ubuntu" => "/usr/share/icons/gnome/24x24/places/ubuntu-logo.png",
        "fedora" => "/usr/share/icons/hicolor/16x16/apps/fedora-logo-icon.png",
        "opensuse" | "sles" | "mageia" => "/usr/share/icons/hicolor/24x24/apps/distributor.png",
        _ => return None,
    })
}

/// Is `b` a PNG file (signature and an `IHDR` chunk first)?
pub fn is_png(b: &[u8]) -> bool {
    b.get(..8) == Some(b"\x89PNG\r\n\x1a\n".as_slice()) && b.get(12..16) == Some(b"IHDR".as_slice())
}

/// The icon of a `distro` guest mounted in `f`, base64-encoded (standard alphabet, no
/// line breaks); `None` when the distro has no known icon, the file is missing, not a
/// PNG or larger than [`MAX_ICON`].
pub fn find_icon(f: &mut impl GuestFiles, distro: Option<&str>) -> Result<Option<String>> {
    let Some(path) = distro.and_then(icon_path) else {
        return Ok(None);
    };
    let Some(b) = f.head(path, MAX_ICON + 1)? else {
        return Ok(None);
    };
    if b.len() as u64 > MAX_ICON || !is_png(&b) {
        return Ok(None);
    }
    Ok(Some(base64(&b)))
}

/// Standard base64 with padding.
pub fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                o.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                o.push('=');
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_coreutils() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar\xff"), "Zm9vYmFy/w==");
    }

    #[test]
    fn png_signature() {
        assert!(is_png(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x30"));
        assert!(!is_png(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_png(b"GIF89a"));
    }
}
