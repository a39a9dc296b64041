//! A pool of pristine appliances, booted ahead of need with no disks, so that a request
//! pays for a hotplug instead of a boot; and [`SharedReader`], the explicit opt-in to reuse
//! one appliance for many read-only disks.
//!
//! A pooled appliance serves one acquisition only: [`Pool::acquire`] hot-adds the
//! caller's disks to a ready appliance, and dropping the [`PooledSession`] destroys it.
//! Background threads boot replacements. An appliance that has seen one guest's disk is
//! never handed to another (one guest's disk could have attacked the appliance).

use crate::appliance::{Builder, DriveOptions};
use crate::error::{Error, Result};
use crate::images::format::Format;
use crate::session::Session;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most this many appliances boot at once, whatever the pool size.
const MAX_BOOTING: usize = 4;

/// How a [`Pool`] launches and keeps its appliances.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// How many ready (booted, disk-less) appliances to keep.
    pub size: usize,
    /// How to launch each one (memory, timeouts, qemu, ...). Must have no drives; hotplug
    /// is switched on by the pool.
    pub builder: Builder,
    /// How long [`Pool::acquire`] waits for a ready appliance.
    pub acquire_timeout: Duration,
    /// The most appliances the pool boots in its life (`None`: no limit). A bulk run over
    /// N images sets N, so that no appliance boots only to be thrown away.
    pub max_launches: Option<usize>,
}

impl PoolOptions {
    /// `size` appliances from the default builder.
    pub fn new(size: usize) -> Self {
        PoolOptions {
            size,
            builder: Builder::default(),
            acquire_timeout: Duration::from_secs(60),
            max_launches: None,
        }
    }

    pub fn max_launches(mut self, n: usize) -> Self {
        self.max_launches = Some(n);
        self
    }

    pub fn builder(mut self, builder: Builder) -> Self {
        self.builder = builder;
        self
    }

    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }
}

struct State {
    ready: VecDeque<Session>,
    booting: usize,
    stop: bool,
    /// The last launch failure, and when.
    last_error: Option<(Instant, String)>,
    /// Launch failures in a row (backoff).
    failures: u32,
    /// Launches started and not failed.
    launched: usize,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    builder: Builder,
    size: usize,
    max_launches: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a change of state, until `deadline` at the latest.
    fn wait_until<'a>(
        &self,
        st: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> MutexGuard<'a, State> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.cond
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }
}

/// K pristine appliances kept ready, refilled in the background.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    acquire_timeout: Duration,
}

impl Pool {
    /// Starts booting `options.size` appliances in the background and returns at once.
    pub fn new(options: PoolOptions) -> Result<Pool> {
        if options.size == 0 {
            return Err(Error::Config("a pool needs at least one appliance".into()));
        }
        if !options.builder.drives.is_empty() {
            return Err(Error::Config(
                "pooled appliances boot with no disks: add them with acquire()".into(),
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                booting: 0,
                stop: false,
                last_error: None,
                failures: 0,
                launched: 0,
            }),
            cond: Condvar::new(),
            builder: options.builder.hotplug(true),
            size: options.size,
            max_launches: options.max_launches.unwrap_or(usize::MAX),
        });
        let workers = (0..options.size.min(MAX_BOOTING))
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || refill(&shared))
            })
            .collect();
        Ok(Pool {
            shared,
            workers,
            acquire_timeout: options.acquire_timeout,
        })
    }

    /// Takes a ready appliance, hot-adds `drives` (in order: the first becomes the
    /// lowest `/dev/sdX`) and returns it. Its disks are in [`Session::hot_drives`].
    /// Dropping the result destroys the appliance.
    pub fn acquire<P: AsRef<Path>>(&self, drives: &[(P, DriveOptions)]) -> Result<PooledSession> {
        // Errors the caller can fix do not use up an appliance.
        for (p, o) in drives {
            o.open(p.as_ref())?;
        }
        let deadline = Instant::now() + self.acquire_timeout;
        loop {
            let mut session = self.take(deadline)?;
            // One that died while waiting is thrown away; take the next.
            if session.has_exited() {
                continue;
            }
            if drives.len() > session.free_ports() {
                // Still pristine: back to the pool.
                let ports = session.free_ports();
                self.shared.lock().ready.push_front(session);
                self.shared.cond.notify_all();
                return Err(Error::NoFreePort { ports });
            }
            for (p, o) in drives {
                session.add_drive(p, *o)?;
            }
            return Ok(PooledSession {
                session: Some(session),
            });
        }
    }

    /// How many appliances are ready now.
    pub fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// Waits until `n` appliances (at most the pool size) are ready; false on timeout.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> bool {
        let n = n.min(self.shared.size);
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.ready.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.shared.wait_until(st, deadline);
        }
        true
    }

    fn take(&self, deadline: Instant) -> Result<Session> {
        let mut st = self.shared.lock();
        loop {
            if let Some(s) = st.ready.pop_front() {
                drop(st);
                self.shared.cond.notify_all();
                return Ok(s);
            }
            let now = Instant::now();
            let spent = st.booting == 0 && st.launched >= self.shared.max_launches;
            if now >= deadline || spent {
                return Err(Error::PoolEmpty {
                    timeout: self.acquire_timeout,
                    last_error: st.last_error.as_ref().map(|(_, e)| e.clone()),
                });
            }
            st = self.shared.wait_until(st, deadline);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cond.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // The ready appliances go with the state (their qemu is killed on drop).
        self.shared.lock().ready.clear();
    }
}

/// A refill thread: boots an appliance whenever fewer than `size` are ready or booting.
fn refill(shared: &Shared) {
    loop {
        let mut st = shared.lock();
        while !st.stop
            && (st.ready.len() + st.booting >= shared.size || st.launched >= shared.max_launches)
        {
            st = shared.cond.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.stop {
            return;
        }
        st.booting += 1;
        st.launched += 1;
        drop(st);
        let r = shared.builder.launch();
        let mut st = shared.lock();
        st.booting -= 1;
        let backoff = match r {
            Ok(s) if !st.stop => {
                st.ready.push_back(s);
                st.failures = 0;
                None
            }
            Ok(_) => None,
            Err(e) => {
                st.launched -= 1;
                st.last_error = Some((Instant::now(), e.to_string()));
                st.failures += 1;
                Some(Duration::from_millis(100 << st.failures.min(6)))
            }
        };
        drop(st);
        shared.cond.notify_all();
        if let Some(d) = backoff {
            let st = shared.lock();
            if !st.stop {
                drop(shared.wait_until(st, Instant::now() + d));
            }
        }
    }
}

/// An appliance from a [`Pool`], serving one acquisition. Derefs to [`Session`].
/// Dropping it destroys the appliance (a clean shutdown first when a writable disk is
/// attached, so that its writes are flushed).
pub struct PooledSession {
    session: Option<Session>,
}

impl PooledSession {
    /// Flushes, powers the appliance off and waits for qemu to exit.
    pub fn shutdown(mut self) -> Result<()> {
        match self.session.take() {
            Some(s) => s.shutdown(),
            None => Ok(()),
        }
    }
}

impl Deref for PooledSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        // OK to unwrap: only shutdown() and drop take the session.
        self.session.as_ref().expect("pooled session present")
    }
}

impl DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Session {
        // OK to unwrap: only shutdown() and drop take the session.
        self.session.as_mut().expect("pooled session present")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && s.hot_drives().iter().any(|d| !d.readonly)
        {
            let _ = s.shutdown();
        }
    }
}

/// One appliance reused for many disks, one after another: add → work → remove,
/// repeated. **For a single trust domain only** (e.g. `df` over one owner's images): a
/// disk could attack the appliance and see the disks that come after it. Takes read-only
/// drives only. Derefs to [`Session`].
pub struct SharedReader {
    session: Session,
}

impl SharedReader {
    /// Launches the shared appliance (hotplug on, no cold-plugged disks).
    pub fn launch(builder: &Builder) -> Result<SharedReader> {
        if !builder.drives.is_empty() {
            return Err(Error::Config(
                "a shared reader boots with no disks: add them with add()".into(),
            ));
        }
        let mut session = builder.clone().hotplug(true).launch()?;
        session.restrict_to_readonly_drives();
        Ok(SharedReader { session })
    }

    /// Hot-adds `path` read-only; returns its device name.
    pub fn add(&mut self, path: impl AsRef<Path>, format: Option<Format>) -> Result<String> {
        let options = DriveOptions {
            format,
            ..DriveOptions::readonly()
        };
        self.session.add_drive(path, options)
    }

    /// Removes a disk added with [`SharedReader::add`]: returns once the appliance has
    /// synced and dropped it; qemu finishes the unplug in the background
    /// ([`Session::remove_drive_deferred`]), so with two or more root ports the next disk
    /// need not wait for it.
    pub fn remove(&mut self, device: &str) -> Result<()> {
        self.session.remove_drive_deferred(device)
    }

    /// Adds `path` read-only, runs `f` with its device name, and removes it again
    /// (also when `f` fails, as long as the session lives).
    pub fn with_disk<T>(
        &mut self,
        path: impl Into<PathBuf>,
        format: Option<Format>,
        f: impl FnOnce(&mut Session, &str) -> Result<T>,
    ) -> Result<T> {
        let device = self.add(path.into(), format)?;
        let r = f(&mut self.session, &device);
        let removed = self.remove(&device);
        let v = r?;
        removed?;
        Ok(v)
    }

    pub fn shutdown(self) -> Result<()> {
        self.session.shutdown()
    }
}

impl Deref for SharedReader {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl DerefMut for SharedReader {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// [`crate::bulk::df::df_images`] through a pool of `jobs` pristine appliances (each image
/// still gets an appliance of its own, hot-added instead of cold-booted); `done` is
/// called on the calling thread as each image finishes, with its index.
pub fn df_images_pooled(
    builder: &Builder,
    images: &[PathBuf],
    jobs: usize,
    done: impl FnMut(usize, Result<crate::bulk::df::Df>),
) -> Result<()> {
    let jobs = jobs.clamp(1, images.len().max(1));
    // One image, one disk, one port.
    let options = PoolOptions::new(jobs)
        .builder(builder.clone().hotplug_ports(1))
        .max_launches(images.len());
    let pool = Pool::new(options)?;
    crate::bulk::each::run_parallel(
        images.len(),
        jobs,
        |i| {
            let mut s = pool.acquire(&[(&images[i], DriveOptions::readonly())])?;
            crate::bulk::df::df(&mut s)
        },
        done,
    );
    Ok(())
}

/// [`crate::bulk::df::df_images`] with `jobs` [`SharedReader`]s: each worker boots one
/// appliance and hot-adds its share of the images one after another (add → df →
/// remove), like `virt-df` batching many disks per appliance. **For a single trust
/// domain only** (see [`SharedReader`]). Device names in the results are reported as
/// the image's own `/dev/sda...`, as in the one-appliance-per-image mode. `done` is
/// called on the calling thread as each image finishes, with its index.
pub fn df_images_shared(
    builder: &Builder,
    images: &[PathBuf],
    jobs: usize,
    mut done: impl FnMut(usize, Result<crate::bulk::df::Df>),
) -> Result<()> {
    let jobs = jobs.clamp(1, images.len().max(1));
    // One disk attached at a time, but qemu finishes an unplug ~60 ms after the appliance
    // has dropped the disk: with a few ports the next image never waits for that.
    let builder = &builder.clone().hotplug_ports(4);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for w in 0..jobs {
            let tx = tx.clone();
            scope.spawn(move || {
                let mut reader: Option<SharedReader> = None;
                for i in (w..images.len()).step_by(jobs) {
                    if reader.is_none() {
                        match SharedReader::launch(builder) {
                            Ok(r) => reader = Some(r),
                            Err(e) => {
                                let _ = tx.send((i, Err(e)));
                                continue;
                            }
                        }
                    }
                    // OK to unwrap: set just above.
                    let r = reader.as_mut().unwrap();
                    let result = r.with_disk(images[i].clone(), None, |s, dev| {
                        let mut d = crate::bulk::df::df(s)?;
                        for f in &mut d.filesystems {
                            f.device = rename_device(&f.device, dev);
                        }
                        for f in &mut d.skipped {
                            f.device = rename_device(&f.device, dev);
                        }
                        Ok(d)
                    });
                    // A failure that closed the session (a crashed appliance): the next
                    // image gets a fresh one.
                    if result.is_err() && r.ping().is_err() {
                        reader = None;
                    }
                    let _ = tx.send((i, result));
                }
                if let Some(r) = reader {
                    let _ = r.shutdown();
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            done(i, r);
        }
    });
    Ok(())
}

/// `/dev/sdc2` seen through shared-reader disk `/dev/sdc` → `/dev/sda2`.
fn rename_device(name: &str, disk: &str) -> String {
    match name.strip_prefix(disk) {
        Some(rest) => format!("/dev/sda{rest}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_device_names_read_as_the_image_own() {
        assert_eq!(rename_device("/dev/sdc2", "/dev/sdc"), "/dev/sda2");
        assert_eq!(rename_device("/dev/sdc", "/dev/sdc"), "/dev/sda");
        assert_eq!(rename_device("/dev/sdb1", "/dev/sdc"), "/dev/sdb1");
    }

    #[test]
    fn pool_options_are_checked() {
        assert!(matches!(
            Pool::new(PoolOptions::new(0)),
            Err(Error::Config(_))
        ));
        let b = Builder::default().add_drive("/x.img", DriveOptions::readonly());
        assert!(matches!(
            Pool::new(PoolOptions::new(1).builder(b.clone())),
            Err(Error::Config(_))
        ));
        assert!(matches!(SharedReader::launch(&b), Err(Error::Config(_))));
    }

    #[test]
    fn pool_reports_launch_failures() {
        let b = Builder::default().qemu_binary("/nonexistent/qemu");
        let pool = Pool::new(
            PoolOptions::new(1)
                .builder(b)
                .acquire_timeout(Duration::from_millis(300)),
        )
        .unwrap();
        let none: &[(PathBuf, DriveOptions)] = &[];
        match pool.acquire(none) {
            Err(Error::PoolEmpty { last_error, .. }) => {
                let e = last_error.unwrap_or_default();
                assert!(
                    e.contains("qemu not found") || e.contains("no appliance kernel"),
                    "{e}"
                );
            }
            Ok(_) => panic!("acquired from a pool that cannot launch"),
            Err(e) => panic!("{e}"),
        }
    }
}
