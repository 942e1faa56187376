//! The daemon's own configuration (TOML): what belongs to the machine — host paths (LibreOffice,
//! font files and directories), the worker pool size, the quarantine directory — and the
//! sanitizing policy as a `[policy]` table of the same shape as a policy file.
//!
//! The core receives none of these paths: the daemon reads the fonts
//! ([`crate::fonts::FileFonts`]) and starts LibreOffice, and lends them to the core as
//! services, so `sanitizer-core` reads no files itself. `mugai config` prints the defaults
//! ([`DEFAULT_CONFIG_TOML`]); `mugai check-config FILE` checks a file, including what would
//! fail at run time on this machine ([`Config::runtime_problems`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sanitizer_core::Policy;
use serde::{Deserialize, Serialize};

/// The defaults, commented (what `mugai config` prints).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// Paths on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Host {
    /// The LibreOffice binary (a name is looked up in `PATH` once, at start-up).
    pub soffice: String,
    /// CJK font collection for text a PDF does not embed (sans; serif too when
    /// `cjk_serif_font` is empty).
    pub cjk_font: PathBuf,
    /// CJK serif (Mincho) font collection; empty = `cjk_font`.
    pub cjk_serif_font: PathBuf,
    /// The only directory SVG text is drawn with fonts from.
    pub svg_font_dir: PathBuf,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            soffice: "soffice".into(),
            cjk_font: "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc".into(),
            cjk_serif_font: "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc".into(),
            svg_font_dir: "/usr/share/fonts".into(),
        }
    }
}

impl Host {
    /// Directories the sandboxed workers must be able to read for these fonts.
    pub fn font_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let files = [&self.cjk_font, &self.cjk_serif_font];
        let parents = files
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .filter_map(|p| p.parent().map(Path::to_path_buf));
        let svg = (!self.svg_font_dir.as_os_str().is_empty()).then(|| self.svg_font_dir.clone());
        for d in parents.chain(svg) {
            if !dirs.iter().any(|k| d.starts_with(k)) {
                dirs.retain(|k| !k.starts_with(&d));
                dirs.push(d);
            }
        }
        dirs
    }
}

/// The worker pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Idle sandboxed workers kept ready; 0 = one per CPU.
    pub workers: usize,
    /// Let workers and the LibreOffice helper run where Landlock cannot be enforced (a kernel
    /// without it). Default false: they refuse to start there, because without Landlock a
    /// compromised worker could read any file the `nobody` user can.
    pub allow_without_landlock: bool,
}

/// The quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineSettings {
    /// Directory of the store; empty = none.
    pub dir: PathBuf,
}

/// Everything but the policy, as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Machine {
    host: Host,
    pool: PoolSettings,
    quarantine: QuarantineSettings,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Host paths.
    pub host: Host,
    /// The worker pool.
    pub pool: PoolSettings,
    /// The quarantine.
    pub quarantine: QuarantineSettings,
    /// The sanitizing policy (`[policy]`).
    pub policy: Policy,
}

impl Config {
    /// Parses a configuration; unknown keys are errors, missing keys take their defaults.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let mut table: toml::Table = text.parse().context("not valid TOML")?;
        let policy = match table.remove("policy") {
            None => Policy::default(),
            Some(toml::Value::Table(t)) => Policy::from_toml(&t.to_string()).context("[policy]")?,
            Some(_) => anyhow::bail!("policy must be a table ([policy])"),
        };
        let machine: Machine = table.try_into().context("invalid configuration")?;
        Ok(Config {
            host: machine.host,
            pool: machine.pool,
            quarantine: machine.quarantine,
            policy,
        })
    }

    /// Reads and parses a configuration file; errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("configuration file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("configuration file {}", path.display()))
    }

    /// What in this configuration would fail at run time on this machine: fonts that cannot
    /// be read, a missing font directory, LibreOffice not found while the policy needs it.
    pub fn runtime_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let readable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file()) && std::fs::File::open(p).is_ok()
        };
        let h = &self.host;
        if !readable(&h.cjk_font) {
            problems.push(format!(
                "host.cjk_font: cannot read {}: Japanese text that a PDF does not embed would be \
                 missing from rasterized pages (install fonts-noto-cjk, or set the path)",
                h.cjk_font.display()
            ));
        }
        if !h.cjk_serif_font.as_os_str().is_empty() && !readable(&h.cjk_serif_font) {
            problems.push(format!(
                "host.cjk_serif_font: cannot read {} (install fonts-noto-cjk, set the path, or \
                 set \"\" to use host.cjk_font)",
                h.cjk_serif_font.display()
            ));
        }
        if !h.svg_font_dir.is_dir() {
            problems.push(format!(
                "host.svg_font_dir: {} is not a directory: SVG text would be drawn without fonts",
                h.svg_font_dir.display()
            ));
        }
        let office = &self.policy.office;
        if (office.convert_legacy || office.rasterize)
            && crate::convert::LibreOffice::find(&h.soffice, std::time::Duration::from_secs(60))
                .is_none()
        {
            problems.push(format!(
                "host.soffice: LibreOffice ({:?}) not found: legacy .doc/.xls/.ppt files would be \
                 removed (install libreoffice-writer-nogui, -calc-nogui, -impress-nogui, or set \
                 policy.office.convert_legacy = false and policy.office.rasterize = false)",
                h.soffice
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_are_the_defaults() {
        assert_eq!(
            Config::from_toml(DEFAULT_CONFIG_TOML).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn policy_table_and_unknown_keys() {
        let c = Config::from_toml(
            "[host]\nsoffice = \"/opt/lo/soffice\"\n[policy.pdf]\nmode = \"clean\"\n",
        )
        .unwrap();
        assert_eq!(c.host.soffice, "/opt/lo/soffice");
        assert_eq!(c.policy.pdf.mode, sanitizer_core::policy::PdfMode::Clean);
        let err = Config::from_toml("[host]\nsofice = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("sofice"), "{err:#}");
        let err = Config::from_toml("[policy.pdf]\ndpi = 5\n").unwrap_err();
        assert!(format!("{err:#}").contains("pdf.dpi"), "{err:#}");
    }

    #[test]
    fn font_dirs_are_deduplicated_parents() {
        let h = Host::default();
        assert_eq!(h.font_dirs(), [PathBuf::from("/usr/share/fonts")]);
        let h = Host {
            cjk_font: "/opt/fonts/a.ttc".into(),
            cjk_serif_font: "".into(),
            svg_font_dir: "/srv/svgfonts".into(),
            ..Host::default()
        };
        assert_eq!(
            h.font_dirs(),
            [PathBuf::from("/opt/fonts"), PathBuf::from("/srv/svgfonts")]
        );
    }
}
