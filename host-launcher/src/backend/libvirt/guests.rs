//! Disks of existing libvirt guests (`-d DOMAIN`, like `virt-ls -d`) and storage volumes
//! (`--volume POOL/VOLUME`), resolved to paths and explicit formats on the libvirt host.
//! Read-only by default; write access to a running guest's disks is refused.

use super::GuestDrive;
use super::launch::{connect, is_local, parse_format, verr};
use super::xml::{self, GuestSource};
use crate::error::{Error, Result};
use crate::images::format::Format;
use std::path::{Path, PathBuf};
use virt::connect::Connect;
use virt::storage_vol::StorageVol;

/// See [`super::domain_drives`].
pub(super) fn domain_drives(
    uri: Option<&str>,
    domain: &str,
    write: bool,
) -> Result<Vec<GuestDrive>> {
    let conn = connect(uri)?;
    let dom = conn
        .lookup_domain_by_name(domain)
        .or_else(|_| conn.lookup_domain_by_uuid_string(domain))
        .map_err(|_| {
            Error::Libvirt(format!(
                "no domain named or with UUID '{domain}' on {}",
                conn.uri().unwrap_or_else(|_| "?".into())
            ))
        })?;
    if write && dom.is_active().map_err(|e| verr("domain state", e))? {
        return Err(Error::Libvirt(format!(
            "domain '{domain}' is running: refusing write access to its disks \
             (shut it down first, or open them read-only)"
        )));
    }
    let desc = dom
        .xml_desc(0)
        .map_err(|e| verr(format_args!("domain '{domain}' XML"), e))?;
    let disks = xml::guest_disks(&desc).map_err(|m| Error::Libvirt(format!("{domain}: {m}")))?;
    if disks.is_empty() {
        return Err(Error::Libvirt(format!("domain '{domain}' has no disks")));
    }
    let local = is_local(&conn);
    disks
        .into_iter()
        .map(|d| {
            let (path, vol_format) = match &d.source {
                GuestSource::File(p) | GuestSource::Block(p) => (PathBuf::from(p), None),
                GuestSource::Volume { pool, volume } => {
                    let v = volume_info(&conn, pool, volume)?;
                    (PathBuf::from(v.path), v.format)
                }
            };
            let format =
                resolve_format(&path, d.format.as_deref().or(vol_format.as_deref()), local)?;
            Ok(GuestDrive {
                path,
                format,
                readonly: !write || d.readonly,
            })
        })
        .collect()
}

/// See [`super::volume_drive`].
pub(super) fn volume_drive(uri: Option<&str>, spec: &str, readonly: bool) -> Result<GuestDrive> {
    let (pool, volume) = spec
        .split_once('/')
        .filter(|(p, v)| !p.is_empty() && !v.is_empty())
        .ok_or_else(|| Error::Config(format!("--volume {spec:?}: expected POOL/VOLUME")))?;
    let conn = connect(uri)?;
    let v = volume_info(&conn, pool, volume)?;
    let path = PathBuf::from(&v.path);
    let format = resolve_format(&path, v.format.as_deref(), is_local(&conn))?;
    Ok(GuestDrive {
        path,
        format,
        readonly,
    })
}

fn volume_info(conn: &Connect, pool: &str, volume: &str) -> Result<xml::VolumeInfo> {
    let p = conn
        .lookup_storage_pool_by_name(pool)
        .map_err(|e| verr(format_args!("storage pool '{pool}'"), e))?;
    let v: StorageVol = p
        .lookup_storage_vol_by_name(volume)
        .map_err(|e| verr(format_args!("volume '{volume}' in pool '{pool}'"), e))?;
    let x = v
        .xml_desc(0)
        .map_err(|e| verr(format_args!("volume '{pool}/{volume}' XML"), e))?;
    xml::volume_info(&x).map_err(|m| Error::Libvirt(format!("{pool}/{volume}: {m}")))
}

/// The named format, or (local only) the one [`Format::detect`] finds.
fn resolve_format(path: &Path, named: Option<&str>, local: bool) -> Result<Format> {
    match named {
        Some(f) => parse_format(path, f),
        None if local => Format::detect(path),
        None => Err(Error::Libvirt(format!(
            "{}: libvirt names no format for it; skiff never guesses a remote disk's format",
            path.display()
        ))),
    }
}
