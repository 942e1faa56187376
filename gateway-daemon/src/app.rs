//! The composition root: config → policy → fonts and converter → transform (pool or
//! in-process) → sinks.
//!
//! Every source is started from here with the same pieces, so a new source is a new file
//! under `sources/` plus one call here. Start-up errors carry their context (`anyhow`), so an
//! operator reads which file or program was the problem.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sanitizer_core::pipeline::Ocr;
use sanitizer_core::{Converter, Policy};

use crate::config::Config;
use crate::convert::LibreOffice;
use crate::fonts::FileFonts;
use crate::isolate::pool::{Isolated, PoolConfig};
use crate::ocr::Tesseract;
use crate::sanitize::{InProcess, Transform};
use crate::sinks::quarantine::DirStore;

/// What one run needs, built once at start-up.
pub struct App {
    /// The transform every item goes through.
    pub transform: Arc<dyn Transform>,
    /// Where originals that were not clean are kept, when configured.
    pub quarantine: Option<DirStore>,
    /// The policy's input limit (sources read at most one byte more).
    pub max_input: u64,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("quarantine", &self.quarantine)
            .field("max_input", &self.max_input)
            .finish_non_exhaustive()
    }
}

/// Reads and validates a policy file; the error names the file (and, from the parser, the key).
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("policy file {}", path.display()))?;
    Policy::from_toml(&text).with_context(|| format!("policy file {}", path.display()))
}

impl App {
    /// Builds the transform for `policy` with the machine settings of `config` (its own
    /// `[policy]` is not used here: the caller chose which policy applies) and opens
    /// `quarantine`, if any.
    pub fn build(
        policy: Policy,
        config: &Config,
        quarantine: Option<&Path>,
        no_isolation: bool,
    ) -> anyhow::Result<App> {
        let quarantine = match quarantine {
            Some(dir) => {
                Some(DirStore::open(dir).with_context(|| format!("quarantine {}", dir.display()))?)
            }
            None => None,
        };
        let max_input = policy.limits.max_input_bytes;
        let transform = transform(policy, config, no_isolation)?;
        Ok(App {
            transform,
            quarantine,
            max_input,
        })
    }
}

/// In-process with `no_isolation`, else a pool of sandboxed workers started from this
/// executable; either way with the configured fonts lent to the core.
///
/// LibreOffice, when installed and the policy wants it, is lent as the document converter; it
/// always runs confined (`mugai __confine`), in this process's care, never inside a worker.
/// Tesseract is lent the same way as the text recogniser when the policy has `pdf.ocr` on.
pub fn transform(
    policy: Policy,
    config: &Config,
    no_isolation: bool,
) -> anyhow::Result<Arc<dyn Transform>> {
    let exe = std::env::current_exe().context("cannot find the mugai executable")?;
    let wants_office = policy.office.convert_legacy || policy.office.rasterize;
    let converter: Option<Arc<dyn Converter + Send + Sync>> = if wants_office {
        LibreOffice::find(
            &config.host.soffice,
            Duration::from_millis(policy.limits.deadline_ms),
        )
        .map(|lo| {
            let lo = lo
                .confined(&exe)
                .allow_without_landlock(config.pool.allow_without_landlock);
            Arc::new(lo) as Arc<dyn Converter + Send + Sync>
        })
    } else {
        None
    };
    let ocr = ocr_engine(&policy, config, &exe);
    if no_isolation {
        let mut t = InProcess::new(policy).with_fonts(Arc::new(FileFonts::new(&config.host)));
        if let Some(c) = converter {
            t = t.with_converter(c);
        }
        if let Some(o) = ocr {
            t = t.with_ocr(o);
        }
        return Ok(Arc::new(t));
    }
    let mut pool = PoolConfig::new(exe);
    pool.host = config.host.clone();
    pool.sandbox.allow_without_landlock = config.pool.allow_without_landlock;
    if config.pool.workers > 0 {
        pool.size = config.pool.workers;
    }
    let mut pool = Isolated::new(policy, pool, converter)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot start the sandboxed worker pool")?;
    if let Some(o) = ocr {
        pool = pool.with_ocr(o);
    }
    Ok(Arc::new(pool))
}

/// Tesseract, confined, when the policy has `pdf.ocr` on and `host.tesseract` is found. When it
/// is not, pages are delivered without a text layer (the core warns per page), so a missing
/// engine is said once here, at start-up.
fn ocr_engine(policy: &Policy, config: &Config, exe: &Path) -> Option<Arc<dyn Ocr + Send + Sync>> {
    if !policy.pdf.ocr {
        return None;
    }
    let timeout = Duration::from_secs(u64::from(policy.pdf.ocr_page_secs.max(1)));
    match Tesseract::find(&config.host.tesseract, timeout) {
        Some(t) => Some(Arc::new(
            t.confined(exe)
                .allow_without_landlock(config.pool.allow_without_landlock),
        )),
        None => {
            tracing::warn!(
                tesseract = %config.host.tesseract,
                "Tesseract not found; pages without text get no text layer."
            );
            None
        }
    }
}
