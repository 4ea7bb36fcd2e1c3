//! Per-core workers (`server.worker_mode = "per_core"`), like nginx's worker
//! processes: each worker is a thread with its own current-thread runtime,
//! serving its own listening sockets (the configured addresses bound again
//! with SO_REUSEPORT, so that the kernel spreads new connections across the
//! workers) with its own stack and upstream pool, which [`crate::app`]
//! builds inside the worker's runtime. A connection never leaves the thread
//! that accepted it; the accept loops are [`server::serve`]'s, one call per
//! worker.
//!
//! The admin endpoints, reloads, signals and the sweepers stay on the
//! caller's runtime. A worker that ends while the gateway serves (a panic
//! out of its runtime) stops the whole gateway: the other workers drain,
//! the store closes, and [`crate::app::run`] returns an error (the binary
//! exits 1). A half-alive gateway, whose kernel still hands new connections
//! to the dead worker's sockets, would be worse than a restart by the
//! supervisor.

use crate::server::{self, GatewayService, Listener};
use std::future::Future;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, watch};

/// How long past its drain time a worker may take to end before the
/// gateway stops waiting for it.
const GRACE: Duration = Duration::from_secs(5);

/// What a worker's thread tells the caller's runtime.
enum Event {
    /// Its listeners are closed and its connections drained (or its drain
    /// time is over).
    Drained(usize),
    /// Its thread is ending.
    Ended(usize),
}

/// Sends [`Event::Ended`] when a worker's thread ends, by return or by panic.
struct Ending {
    worker: usize,
    events: mpsc::UnboundedSender<Event>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(worker = self.worker, "a worker panicked");
        }
        let _ = self.events.send(Event::Ended(self.worker));
    }
}

/// A worker's runtime; dropped, it shuts down without waiting, which is
/// allowed anywhere (an unstarted worker's is dropped on the caller's
/// runtime when the start fails).
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn get(&self) -> Option<&Runtime> {
        self.0.as_ref()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The worker threads of the process, and their state as the caller's
/// runtime sees it. Dropped, it stops and ends every worker.
pub struct Workers {
    /// Each worker's runtime and listeners, until it starts.
    pending: Vec<(OwnRuntime, Vec<Listener>)>,
    count: usize,
    /// Stops the accept loops (graceful shutdown).
    stop: watch::Sender<bool>,
    /// Lets the runtimes end, after the store has closed.
    release: watch::Sender<bool>,
    sender: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    drained: Vec<bool>,
    ended: Vec<bool>,
}

impl Workers {
    /// A runtime for each set of listeners, the listeners moved onto it.
    pub fn prepare(sets: Vec<Vec<Listener>>) -> std::io::Result<Self> {
        let count = sets.len();
        let (sender, events) = mpsc::unbounded_channel();
        let mut workers = Self {
            pending: Vec::with_capacity(count),
            count,
            stop: watch::Sender::new(false),
            release: watch::Sender::new(false),
            sender,
            events,
            drained: vec![false; count],
            ended: vec![false; count],
        };
        for (i, set) in sets.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot start worker {i}'s runtime: {e}"))
                })?;
            let runtime = OwnRuntime(Some(runtime));
            let listeners = {
                // Registered with the worker's runtime, not the caller's.
                let _entered = runtime.get().map(Runtime::enter);
                set.into_iter()
                    .map(|l| {
                        let addr = l.tcp.local_addr()?;
                        let moved = l
                            .tcp
                            .into_std()
                            .and_then(tokio::net::TcpListener::from_std)
                            .map_err(|e| {
                                std::io::Error::new(
                                    e.kind(),
                                    format!("cannot listen on {addr} in worker {i}: {e}"),
                                )
                            })?;
                        Ok(Listener {
                            tcp: moved,
                            tls: l.tls,
                        })
                    })
                    .collect::<std::io::Result<Vec<_>>>()?
            };
            workers.pending.push((runtime, listeners));
        }
        Ok(workers)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The workers' runtimes, in order, before they start: a stack built
    /// with one entered runs its tasks there.
    pub fn runtimes(&self) -> impl Iterator<Item = Handle> + '_ {
        self.pending
            .iter()
            .filter_map(|(runtime, _)| Some(runtime.get()?.handle().clone()))
    }

    /// Starts every worker's thread, serving the service and options that
    /// `each` gives for its index until the workers are stopped.
    pub fn start<S>(
        &mut self,
        mut each: impl FnMut(usize) -> (S, server::Options),
    ) -> std::io::Result<()>
    where
        S: GatewayService,
    {
        for (i, (runtime, listeners)) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            let (service, options) = each(i);
            let mut stop = self.stop.subscribe();
            let stopped = async move { server::stopped(&mut stop).await };
            self.spawn(
                i,
                runtime,
                server::serve(listeners, service, stopped, options),
            )?;
        }
        Ok(())
    }

    /// Runs `work` (the serving and draining) on worker `i`'s own thread and
    /// runtime; then says it has drained, and keeps the runtime running
    /// until released.
    fn spawn(
        &self,
        i: usize,
        runtime: OwnRuntime,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut release = self.release.subscribe();
        let events = self.sender.clone();
        let ending = Ending {
            worker: i,
            events: self.sender.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ordergate-worker-{i}"))
            .spawn(move || {
                let _ending = ending;
                // Dropped before `_ending`: "ended" means its tasks are gone.
                let runtime = runtime;
                let Some(rt) = runtime.get() else { return };
                rt.block_on(async move {
                    work.await;
                    let _ = events.send(Event::Drained(i));
                    // Kept running until the store has closed: tasks started
                    // here (a shared Redis connection's) may still serve the
                    // other workers and the closing.
                    server::stopped(&mut release).await;
                });
            })
            .map(drop)
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot start worker {i}'s thread: {e}"))
            })
    }

    /// Waits for a worker to end while the gateway serves, and names it.
    pub async fn stopped(&mut self) -> usize {
        loop {
            match self.events.recv().await {
                Some(Event::Ended(worker)) => {
                    self.ended[worker] = true;
                    tracing::error!(
                        worker,
                        "a worker stopped; the gateway shuts down (exit status 1)"
                    );
                    return worker;
                }
                Some(Event::Drained(worker)) => self.drained[worker] = true,
                None => std::future::pending().await,
            }
        }
    }

    /// Stops every worker's accept loops and waits until each has drained
    /// (within `drain` and a grace); names a worker that ended instead.
    pub async fn drain(&mut self, drain: Duration) -> Option<usize> {
        let _ = self.stop.send(true);
        let mut failed = None;
        let all = async {
            while !(0..self.count).all(|i| self.drained[i] || self.ended[i]) {
                match self.events.recv().await {
                    Some(Event::Drained(worker)) => self.drained[worker] = true,
                    Some(Event::Ended(worker)) => {
                        self.ended[worker] = true;
                        if !self.drained[worker] {
                            tracing::error!(worker, "a worker stopped while draining");
                            failed = Some(worker);
                        }
                    }
                    None => break,
                }
            }
        };
        if tokio::time::timeout(drain + GRACE, all).await.is_err() {
            tracing::warn!("a worker did not end its drain in time; closing anyway");
        }
        failed
    }

    /// Lets the workers' runtimes end, and waits (briefly) until they have;
    /// whether they all have.
    pub async fn finish(mut self) -> bool {
        let _ = self.release.send(true);
        let all = async {
            while !self.ended.iter().all(|e| *e) {
                match self.events.recv().await {
                    Some(Event::Ended(worker)) => self.ended[worker] = true,
                    Some(Event::Drained(_)) => {}
                    None => break,
                }
            }
        };
        tokio::time::timeout(GRACE, all).await.is_ok()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.release.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two workers without listeners; `work` is each one's serving, given
    /// its index and the stop signal.
    fn two<F>(work: impl Fn(usize, watch::Receiver<bool>) -> F) -> Workers
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut workers = Workers::prepare(vec![Vec::new(), Vec::new()]).unwrap();
        for (i, (runtime, _)) in std::mem::take(&mut workers.pending).into_iter().enumerate() {
            let stop = workers.stop.subscribe();
            workers.spawn(i, runtime, work(i, stop)).unwrap();
        }
        workers
    }

    #[tokio::test]
    async fn a_worker_that_panics_while_serving_is_named_and_the_others_drain() {
        let mut workers = two(|i, mut stop| async move {
            if i == 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("worker 1 fails on purpose");
            }
            server::stopped(&mut stop).await;
            // A drain that takes a while: waited for.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let stopped = tokio::time::timeout(Duration::from_secs(5), workers.stopped()).await;
        assert_eq!(stopped.unwrap(), 1);
        let started = std::time::Instant::now();
        assert_eq!(workers.drain(Duration::from_secs(5)).await, None);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(workers.drained[0] && !workers.drained[1]);
        assert!(workers.finish().await);
    }

    #[tokio::test]
    async fn a_worker_that_panics_while_draining_is_named() {
        let mut workers = two(|i, mut stop| async move {
            server::stopped(&mut stop).await;
            assert!(i != 0, "worker 0 fails its drain on purpose");
        });
        let serving = tokio::time::timeout(Duration::from_millis(100), workers.stopped()).await;
        assert!(serving.is_err(), "no worker ends before the stop");
        assert_eq!(workers.drain(Duration::from_secs(5)).await, Some(0));
        assert!(workers.drained[1]);
        assert!(workers.finish().await);
    }
}
