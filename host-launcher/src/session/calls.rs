//! Calls: one request, one reply, matched by id and bounded by the call timeout; several
//! may be in flight (pipelining). An error reply is [`Error::Remote`] and leaves the
//! session usable; anything else that goes wrong closes it.

use super::Session;
use crate::error::{Error, Result};
use crate::session::channel::Waiting;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wire::{Call, Reply, Request, ToHost};

impl Session {
    /// Sends one request and waits (up to the call timeout) for its reply. An error reply
    /// is [`Error::Remote`] and leaves the session usable; anything else that goes wrong
    /// closes it.
    ///
    /// Before a request that changes a filesystem, the host's clock goes first
    /// ([`Request::SetClock`], once a second at most): the appliance has no clock, and
    /// what it creates or changes is stamped with this one.
    ///
    /// A change refused as read-only names the filesystem it was refused on (`btrfs on
    /// /dev/sda3 at /`), for filesystems whose own refusal does not.
    pub fn call(&mut self, request: Request) -> Result<Reply> {
        let changes = changes_files(&request);
        if changes {
            self.send_clock()?;
        }
        let path = changes
            .then(|| changed_path(&request).map(String::from))
            .flatten();
        let id = self.submit(request)?;
        match self.complete(id) {
            Err(Error::Remote(mut e)) if e.kind == wire::ErrorKind::ReadOnly => {
                if let Some(p) = path
                    && let Ok(mounts) = self.mounts()
                    && let Some(m) = mount_of(&mounts, &p)
                    && !e.message.contains(m.fstype.as_str())
                {
                    e.message = format!(
                        "{} ({} on {} at {})",
                        e.message, m.fstype, m.device, m.mountpoint
                    );
                }
                Err(Error::Remote(e))
            }
            r => r,
        }
    }

    /// Sends the host's wall clock unless it went less than a second ago (calls that
    /// pipeline changes with `submit` send it first themselves).
    pub(crate) fn send_clock(&mut self) -> Result<()> {
        if self.clock_fixed
            || self
                .clock_sent
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let id = self.submit(Request::SetClock { now })?;
        match self.complete(id)? {
            Reply::Unit => {
                self.clock_sent = Some(Instant::now());
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a request without waiting for its reply; returns its id for
    /// [`Session::complete`]. Several calls may be in flight: the appliance answers them
    /// in order, so pipelining lets it work on the next call while the host handles the
    /// previous reply. Every submitted call must be completed, in submission order,
    /// before any other call.
    pub fn submit(&mut self, request: Request) -> Result<u64> {
        if self.closed {
            return Err(Error::Closed);
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = Instant::now() + self.call_timeout;
        if let Err(e) = self.channel.send(&Call { id, request }, deadline) {
            return Err(self.channel_failed(e, Waiting::Call(self.call_timeout)));
        }
        Ok(id)
    }

    /// Waits (up to the call timeout) for the reply to the submitted call `id`, which must
    /// be the oldest one still in flight.
    pub fn complete(&mut self, id: u64) -> Result<Reply> {
        if self.closed {
            return Err(Error::Closed);
        }
        let waiting = Waiting::Call(self.call_timeout);
        let deadline = Instant::now() + self.call_timeout;
        match self.channel.recv::<ToHost>(deadline) {
            Ok(ToHost::Reply { id: got, result }) if got == id => result.map_err(Error::Remote),
            Ok(ToHost::Reply { id: got, .. }) => Err(self.fail(Error::BadFrame(format!(
                "reply to call {got}, expected call {id}"
            )))),
            Ok(ToHost::Panic(message)) => Err(self.crashed(message)),
            Ok(other @ ToHost::Hello(_)) => Err(self.fail(Error::BadFrame(format!(
                "expected the reply to call {id}, got {}",
                what(&other)
            )))),
            Err(e) => Err(self.channel_failed(e, waiting)),
        }
    }

    /// Sends a Ping and waits for its reply.
    pub fn ping(&mut self) -> Result<()> {
        match self.call(Request::Ping)? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// Requests that create, change or remove files (and so stamp times).
fn changes_files(r: &Request) -> bool {
    matches!(
        r,
        Request::WriteFile { .. }
            | Request::Append { .. }
            | Request::Mkdir { .. }
            | Request::Remove { .. }
            | Request::Rmdir { .. }
            | Request::Rename { .. }
            | Request::Chmod { .. }
            | Request::Symlink { .. }
            | Request::Truncate { .. }
            | Request::Chown { .. }
            | Request::Utimens { .. }
            | Request::Touch { .. }
            | Request::Setxattr { .. }
            | Request::Removexattr { .. }
    )
}

/// The guest path a changing request acts on.
fn changed_path(r: &Request) -> Option<&str> {
    Some(match r {
        Request::WriteFile { path, .. }
        | Request::Append { path, .. }
        | Request::Mkdir { path, .. }
        | Request::Remove { path, .. }
        | Request::Rmdir { path }
        | Request::Chmod { path, .. }
        | Request::Truncate { path, .. }
        | Request::Chown { path, .. }
        | Request::Utimens { path, .. }
        | Request::Touch { path }
        | Request::Setxattr { path, .. }
        | Request::Removexattr { path, .. } => path,
        Request::Rename { from, .. } => from,
        Request::Symlink { linkpath, .. } => linkpath,
        _ => return None,
    })
}

/// The mount holding `path`: the longest mountpoint that is `path` or a parent of it.
fn mount_of<'a>(mounts: &'a [wire::Mount], path: &str) -> Option<&'a wire::Mount> {
    mounts
        .iter()
        .filter(|m| {
            let mp = m.mountpoint.trim_end_matches('/');
            mp.is_empty() || path == mp || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
        })
        .max_by_key(|m| m.mountpoint.len())
}

/// A message from the appliance, for an error message.
pub(super) fn what(msg: &ToHost) -> String {
    match msg {
        ToHost::Hello(h) => format!("Hello (version {})", h.version),
        ToHost::Reply { id, .. } => format!("a reply to call {id}"),
        ToHost::Panic(_) => "a panic".into(),
    }
}

/// A reply of the wrong kind for the request.
pub(crate) fn unexpected(reply: &Reply) -> Error {
    let name = format!("{reply:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or("?");
    Error::BadFrame(format!("unexpected reply {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_holding_a_path() {
        let m = |dev: &str, mp: &str| wire::Mount {
            device: dev.into(),
            mountpoint: mp.into(),
            fstype: "btrfs".into(),
            readonly: true,
        };
        let mounts = [
            m("/dev/sda1", "/"),
            m("/dev/sda2", "/home"),
            m("/dev/sda3", "/home/u"),
        ];
        let dev = |p: &str| mount_of(&mounts, p).map(|m| m.device.as_str());
        assert_eq!(dev("/etc/x"), Some("/dev/sda1"));
        assert_eq!(dev("/home"), Some("/dev/sda2"));
        assert_eq!(dev("/homes/x"), Some("/dev/sda1"));
        assert_eq!(dev("/home/u/.ssh"), Some("/dev/sda3"));
        assert_eq!(mount_of(&mounts[1..], "/etc"), None);
        let r = Request::Chown {
            path: "/a".into(),
            uid: 0,
            gid: 0,
        };
        assert_eq!(changed_path(&r), Some("/a"));
        assert_eq!(changed_path(&Request::Mounts), None);
    }
}
