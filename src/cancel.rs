//! Cooperative cancellation of a long computation.
//!
//! An embedding (the Python bindings) runs a computation on a thread of its own under a
//! [`Token`]; when the user interrupts, it sets the token. The computation looks at the token at
//! its [`checkpoint`]s (stage boundaries, optimiser epochs and iterations, all on the thread that
//! drives the computation, never inside a parallel loop) and, once the token is set, unwinds to
//! [`run`], dropping everything it holds: the thread ends within one checkpoint interval instead
//! of computing a result nobody will read.
//!
//! The unwind carries a private payload through [`std::panic::resume_unwind`], which does not
//! call the panic hook (no message is printed), and [`run`] turns exactly that payload into
//! `None`; any other panic passes through unchanged. Outside [`run`] (the CLI and batch runs)
//! a checkpoint is one thread-local read and never unwinds.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag that asks a computation to stop; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Token(Arc<AtomicBool>);

impl Token {
    /// A token not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the computation running under this token to stop at its next checkpoint.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Token::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Token>> = const { RefCell::new(None) };
}

/// The unwinding payload of a cancelled computation.
struct Cancelled;

/// Runs `f` on this thread under `token`: `Some(result)`, or `None` when the token was set and
/// a checkpoint inside `f` stopped it. A panic in `f` propagates as a panic.
pub fn run<T>(token: &Token, f: impl FnOnce() -> T) -> Option<T> {
    struct Restore(Option<Token>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(token.clone())));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) if payload.is::<Cancelled>() => None,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Stops the computation here when this thread runs under a token that has been set.
pub fn checkpoint() {
    let cancelled = CURRENT.with(|c| c.borrow().as_ref().is_some_and(Token::is_cancelled));
    if cancelled {
        std::panic::resume_unwind(Box::new(Cancelled));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_token_stops_at_the_next_checkpoint() {
        let token = Token::new();
        let mut steps = 0;
        let got = run(&token, || {
            for i in 0..10 {
                checkpoint();
                steps += 1;
                if i == 3 {
                    token.cancel();
                }
            }
            "done"
        });
        assert_eq!(got, None);
        assert_eq!(steps, 4);
        // Outside `run` (and after it) checkpoints do nothing, even with the token set.
        checkpoint();
        assert_eq!(run(&Token::new(), || 7), Some(7));
    }

    #[test]
    fn other_panics_pass_through_and_the_token_is_restored() {
        let outer = Token::new();
        let inner = Token::new();
        let r = run(&outer, || {
            let p = std::panic::catch_unwind(|| run(&inner, || panic!("boom")));
            assert!(p.is_err());
            // The inner token is gone: cancelling it does not stop the outer computation.
            inner.cancel();
            checkpoint();
            1
        });
        assert_eq!(r, Some(1));
    }

    #[test]
    fn checkpoints_on_other_threads_do_not_see_the_token() {
        let token = Token::new();
        token.cancel();
        let r = run(&token, || {
            std::thread::scope(|s| s.spawn(checkpoint).join().is_ok())
        });
        assert_eq!(r, Some(true));
    }
}
