//! One way to stop: a shutdown signal every source watches.
//!
//! The composition root creates one [`Shutdown`], hands clones to every source, and turns
//! SIGINT and SIGTERM into [`Shutdown::trigger`] ([`Shutdown::on_signals`]). A source stops
//! taking new work when it sees the signal, finishes (and delivers, and reports) what it has
//! in flight, and returns. A second signal while stopping ends the process at once (exit
//! 130), for the operator who really means it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cloneable stop flag shared by every source.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder to stop taking new work.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// SIGINT and SIGTERM trigger this signal; a second one while stopping exits with 130.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            // Order matters: the exit is armed on the flag's current value, so the first
            // signal only sets the flag, the second exits.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&self.0))?;
            signal_hook::flag::register(sig, Arc::clone(&self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_signal() {
        let a = Shutdown::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        a.trigger();
        assert!(b.is_triggered());
    }
}
