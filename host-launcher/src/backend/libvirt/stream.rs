//! The RPC channel over a libvirt stream. The stream (`virDomainOpenChannel`) is bridged
//! to one end of a local socketpair by two threads (stream → socket, socket → stream),
//! so the session keeps using the ordinary [`Channel`](crate::session::channel::Channel) with its
//! deadlines: blocking libvirt stream calls have no timeout of their own.
//!
//! libvirt's client multiplexes concurrent calls on one connection (one thread does the
//! I/O for all waiting threads), so a blocking receive in one thread and sends in
//! another are fine. The threads end when the domain goes (the stream reports EOF or an
//! error) or when the session drops its end of the socketpair.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use virt::stream::Stream;

/// A libvirt stream shared by the two bridge threads.
struct Shared(Stream);

// SAFETY: a virStreamPtr is a reference-counted, internally locked libvirt object
// (virObjectLockable); libvirt documents its public API as thread-safe, and the
// remote client serialises concurrent calls on one connection. The wrapper's only
// non-thread-safe part, an event callback box, is never set here.
unsafe impl Send for Shared {}
// SAFETY: as above: `recv` and `send` take `&Stream` and are safe to call concurrently.
unsafe impl Sync for Shared {}

/// Starts the bridge; returns the session's end of the socketpair, and a receiver that
/// disconnects when the stream has ended (qemu closed the channel: it exited, or the
/// connection went).
pub fn bridge(stream: Stream) -> std::io::Result<(UnixStream, Receiver<()>)> {
    let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
    let (ours, theirs) = UnixStream::pair()?;
    let shared = Arc::new(Shared(stream));
    let mut to_session = theirs.try_clone()?;
    let mut from_session = theirs;
    let rx = shared.clone();
    std::thread::Builder::new()
        .name("skiff-virt-rx".into())
        .spawn(move || {
            let _ended = ended_tx;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                match rx.0.recv(&mut buf) {
                    Ok(n) if n > 0 => {
                        if to_session.write_all(&buf[..n as usize]).is_err() {
                            break;
                        }
                    }
                    // 0: end of stream; an error: the domain or the connection went.
                    _ => break,
                }
            }
            // The session sees EOF.
            let _ = to_session.shutdown(Shutdown::Both);
        })?;
    let tx = shared;
    std::thread::Builder::new()
        .name("skiff-virt-tx".into())
        .spawn(move || {
            let mut buf = vec![0u8; 256 << 10];
            'outer: loop {
                let n = match from_session.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    match tx.0.send(rest) {
                        Ok(k) if k > 0 => rest = &rest[k as usize..],
                        _ => break 'outer,
                    }
                }
            }
            let _ = from_session.shutdown(Shutdown::Both);
        })?;
    Ok((ours, ended))
}
