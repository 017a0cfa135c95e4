//! `Guard`: what protects a run (the trigger's claim, see `claim.rs`), kept alive while the run works, given back when dropped.
//!
//! A guard renews what it holds in a task of its own. That task ends with
//! the guard: dropping it (an early `?`, say) stops the renewal and gives the
//! hold back in the background, so no renewer outlives the run. A renewal
//! that fails means the hold is lost: [`Guard::protect`] then stops the work
//! it protects. The run releases its guard only after its final record is
//! written (see `run.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::PipelineError;

/// Something a run holds while it works (the trigger's claim), that may need renewing.
#[async_trait]
pub trait Hold: Send + Sync {
    /// How often [`Hold::renew`] must be called; `None` when it keeps itself.
    fn renew_every(&self) -> Option<Duration>;

    /// Keep it a while longer; an error means it is lost.
    async fn renew(&self) -> Result<(), PipelineError>;

    /// Give it back. Called once.
    async fn release(&self) -> Result<(), PipelineError>;
}

/// Aborts its task when dropped (a `JoinHandle` dropped lets the task run on).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exclusive use of what a run works on, for as long as the guard lives.
pub struct Guard {
    hold: Arc<dyn Hold>,
    renewer: Option<AbortOnDrop>,
    /// `Some(why)` once a renewal failed.
    lost: watch::Receiver<Option<String>>,
    released: bool,
}

impl Guard {
    /// Guard `hold`, renewing it as often as it asks. Call inside a tokio runtime.
    pub fn new(hold: Box<dyn Hold>) -> Guard {
        let hold: Arc<dyn Hold> = Arc::from(hold);
        let (tx, lost) = watch::channel(None);
        let renewer = hold.renew_every().map(|every| {
            let hold = hold.clone();
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = hold.renew().await {
                        let _ = tx.send(Some(e.to_string()));
                        return;
                    }
                }
            }))
        });
        Guard { hold, renewer, lost, released: false }
    }

    /// Resolves when the hold is lost, with why; never while it is kept.
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        let why = rx.wait_for(|l| l.is_some()).await.map(|why| why.clone().unwrap_or_default());
        match why {
            Ok(why) => why,
            // No renewer (the hold keeps itself), or it is gone without a word: never lost.
            Err(_) => std::future::pending().await,
        }
    }

    /// Run `work` while the hold is kept; a lost hold stops (drops) it.
    pub async fn protect<T>(&self, work: impl Future<Output = T>) -> Result<T, PipelineError> {
        tokio::select! {
            biased;
            why = self.lost() => Err(PipelineError::Lost(format!("stopped: the run's claim was lost ({why})"))),
            r = work => Ok(r),
        }
    }

    /// Stop renewing and give the hold back.
    pub async fn release(mut self) -> Result<(), PipelineError> {
        self.renewer.take();
        self.released = true;
        self.hold.release().await
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.renewer.take();
        if self.released {
            return;
        }
        // Dropped on an early return: give the hold back in the background.
        let hold = self.hold.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = hold.release().await;
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A hold that counts renewals and fails the `fail_at`-th one.
    #[derive(Default)]
    pub struct Fake {
        pub renewals: AtomicUsize,
        pub released: AtomicBool,
        pub fail_at: Option<usize>,
    }

    pub struct FakeHold(pub Arc<Fake>, pub Duration);

    #[async_trait]
    impl Hold for FakeHold {
        fn renew_every(&self) -> Option<Duration> {
            Some(self.1)
        }
        async fn renew(&self) -> Result<(), PipelineError> {
            let n = self.0.renewals.fetch_add(1, Ordering::SeqCst) + 1;
            match self.0.fail_at {
                Some(f) if n >= f => Err(PipelineError::Conflict("the claim was taken over".into())),
                _ => Ok(()),
            }
        }
        async fn release(&self) -> Result<(), PipelineError> {
            self.0.released.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    fn fake(fail_at: Option<usize>) -> (Arc<Fake>, Guard) {
        let f = Arc::new(Fake { fail_at, ..Default::default() });
        let g = Guard::new(Box::new(FakeHold(f.clone(), Duration::from_millis(5))));
        (f, g)
    }

    /// Renewals stop, and nothing holds the hold any more, once the guard is gone.
    async fn renewals_have_stopped(f: &Arc<Fake>) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = f.renewals.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(f.renewals.load(Ordering::SeqCst), n, "a renewer outlived its guard");
        assert!(f.released.load(Ordering::SeqCst), "the hold was never given back");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_guard_stops_its_renewal_and_gives_it_back() {
        for _ in 0..20 {
            let (f, g) = fake(None);
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(f.renewals.load(Ordering::SeqCst) >= 2, "the guard does not renew");
            fn early(g: Guard) -> Result<(), PipelineError> {
                let _g = g;
                Err(PipelineError::Invalid("an early ?".into()))
            }
            let early = early(g);
            assert!(early.is_err());
            renewals_have_stopped(&f).await;
            // The renewer task's clone is gone too: only ours is left.
            assert_eq!(Arc::strong_count(&f), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn releasing_the_guard_stops_its_renewal() {
        let (f, g) = fake(None);
        tokio::time::sleep(Duration::from_millis(15)).await;
        g.release().await.unwrap();
        renewals_have_stopped(&f).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_stops_the_work_it_protects() {
        for _ in 0..20 {
            let (f, g) = fake(Some(2));
            let dropped = Arc::new(AtomicBool::new(false));
            struct OnDrop(Arc<AtomicBool>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let flag = OnDrop(dropped.clone());
            let work = async move {
                let _flag = flag;
                tokio::time::sleep(Duration::from_secs(60)).await;
            };
            let started = std::time::Instant::now();
            let r = g.protect(work).await;
            assert!(started.elapsed() < Duration::from_secs(5));
            match r {
                Err(PipelineError::Lost(m)) => assert!(m.contains("the claim was taken over"), "{m}"),
                _ => panic!("the work went on without its claim"),
            }
            assert!(dropped.load(Ordering::SeqCst), "the work was not stopped");
            assert_eq!(f.renewals.load(Ordering::SeqCst), 2, "renewals went on after one failed");
            drop(g);
            renewals_have_stopped(&f).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_hold_lets_the_work_finish() {
        let (f, g) = fake(None);
        let r = g
            .protect(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                7
            })
            .await
            .unwrap();
        assert_eq!(r, 7);
        g.release().await.unwrap();
        renewals_have_stopped(&f).await;
    }
}
