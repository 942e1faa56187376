//! The 詳細 page's safe preview: the held item's **sanitized** form as page pictures.
//!
//! The original is read from the vault and sanitized again in a sandboxed worker, which also
//! draws the output (never the original) as raw RGB pictures
//! ([`crate::sanitize::Transform::preview`]); the worker pool checks every size before it keeps
//! a byte, and this module encodes the PNGs itself, so the browser only ever receives pixels the
//! parent wrote. Pictures are cached per report id (the most recent [`MAX_CACHED`] items), and
//! one preview is made at a time: a reviewer clicking through items costs at most one worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use sanitizer_core::preview::{PreviewLimits, Thumbnail};

use crate::actor::Actor;
use crate::release::{Release, ReleaseError};
use crate::sanitize::Current;

/// Items whose pictures are kept in memory.
pub const MAX_CACHED: usize = 32;
/// Pictures per item and their size: a glance, not a reader.
pub const LIMITS: PreviewLimits = PreviewLimits {
    max_images: 8,
    max_side: 360,
};

/// One picture, ready to serve.
#[derive(Debug, Clone)]
pub struct Picture {
    /// What it shows (`p.1`, `report.pdf p.2`): from the worker, shown escaped.
    pub label: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The PNG file.
    pub png: Bytes,
}

/// An item's pictures and when they were last asked for.
type Cached = (Instant, Arc<Vec<Picture>>);

/// The pictures of recently viewed items.
#[derive(Debug, Default)]
pub struct Previews {
    cache: Mutex<HashMap<String, Cached>>,
    making: tokio::sync::Mutex<()>,
}

impl Previews {
    fn cached(&self, id: &str) -> Option<Arc<Vec<Picture>>> {
        let mut map = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = map.get_mut(id)?;
        hit.0 = Instant::now();
        Some(Arc::clone(&hit.1))
    }

    fn keep(&self, id: &str, pictures: Arc<Vec<Picture>>) {
        let mut map = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CACHED && !map.contains_key(id) {
            let oldest = map.iter().min_by_key(|(_, v)| v.0).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(id.to_owned(), (Instant::now(), pictures));
    }

    /// The pictures of `report_id` as `actor` may see it (the same rules as the detail page):
    /// from the cache, or made now in a worker.
    pub async fn get(
        &self,
        release: &Release,
        transform: &Current,
        actor: &Actor,
        report_id: &str,
    ) -> Result<Arc<Vec<Picture>>, ReleaseError> {
        // Visibility first, every time: a cached picture is never a way around it.
        let job = {
            let (release, actor, id) = (release.clone(), actor.clone(), report_id.to_owned());
            tokio::task::spawn_blocking(move || release.preview_job(&actor, &id))
                .await
                .map_err(|e| ReleaseError::Internal(format!("preview lookup failed: {e}")))??
        };
        if let Some(hit) = self.cached(report_id) {
            return Ok(hit);
        }
        let _one_at_a_time = self.making.lock().await;
        if let Some(hit) = self.cached(report_id) {
            return Ok(hit);
        }
        let transform = transform.get();
        let thumbs = tokio::task::spawn_blocking(move || transform.preview(&job, &LIMITS))
            .await
            .map_err(|e| ReleaseError::Internal(format!("preview task failed: {e}")))?
            .map_err(|e| ReleaseError::Transient(e.message))?;
        let pictures: Vec<Picture> = thumbs.iter().filter_map(encode).collect();
        let pictures = Arc::new(pictures);
        self.keep(report_id, Arc::clone(&pictures));
        Ok(pictures)
    }
}

/// Encodes a checked picture as PNG (here, in the parent: the worker's bytes are pixels only).
fn encode(t: &Thumbnail) -> Option<Picture> {
    let expected = (t.width as usize)
        .checked_mul(t.height as usize)?
        .checked_mul(3)?;
    if t.rgb.len() != expected || t.width == 0 || t.height == 0 {
        return None;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, t.width, t.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().ok()?;
        w.write_image_data(&t.rgb).ok()?;
        w.finish().ok()?;
    }
    Some(Picture {
        label: t.label.clone(),
        width: t.width,
        height: t.height,
        png: Bytes::from(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_encoded_here_and_bad_sizes_dropped() {
        let t = Thumbnail {
            label: "p.1".into(),
            width: 2,
            height: 1,
            rgb: vec![255, 0, 0, 0, 0, 255],
        };
        let p = encode(&t).unwrap();
        assert!(p.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let decoded = png::Decoder::new(std::io::Cursor::new(p.png.to_vec()))
            .read_info()
            .unwrap();
        assert_eq!((decoded.info().width, decoded.info().height), (2, 1));
        let short = Thumbnail {
            rgb: vec![0; 5],
            ..t.clone()
        };
        assert!(encode(&short).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_the_recent() {
        let p = Previews::default();
        for i in 0..MAX_CACHED + 5 {
            p.keep(&format!("id{i}"), Arc::new(Vec::new()));
        }
        let map = p.cache.lock().unwrap();
        assert_eq!(map.len(), MAX_CACHED);
        assert!(map.contains_key(&format!("id{}", MAX_CACHED + 4)));
    }
}
