//! Isolation: every job runs in a fresh, sandboxed, one-job worker process.
//!
//! - [`pool`]: the parent side — keeps idle workers ready, sends a job, reads the result,
//!   re-checks it and kills a worker at its deadline ([`pool::Isolated`] implements
//!   [`crate::sanitize::Transform`]).
//! - [`worker`]: the child side (`mugai __worker`): installs the sandbox, reads one job, runs
//!   the same [`crate::sanitize::sanitize`] as the in-process path, writes one result.
//! - [`wire`]: the framed protocol between the two.
//! - [`sandbox`]: resource limits, privilege drop, Landlock and seccomp for workers.
//! - [`confine`]: the trampoline (`mugai __confine`) that confines helper programs such as
//!   LibreOffice.

pub mod confine;
pub mod pool;
pub mod sandbox;
pub mod wire;
pub mod worker;
