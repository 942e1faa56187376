//! Picture regions: from a map of picture tiles to a few page rectangles.
//!
//! Tiles are grouped into 8-connected components. Components smaller than [`MIN_SIDE`] tiles
//! in either direction (a coloured link, a stray mid-tone smudge) are left to the text layer,
//! which thresholds them. The others become their bounding boxes, widened by one tile so that
//! anti-aliased borders stay inside, then overlapping boxes are merged until they are disjoint
//! and at most [`super::MAX_REGIONS`].

/// Least width and height, in tiles, of a component kept as a picture.
const MIN_SIDE: usize = 3;
/// Above this many components the page is treated as one picture region (bounded work).
const MAX_COMPONENTS: usize = 64;

/// Which tiles of a `tw` x `th` grid look like pictures.
#[derive(Debug)]
pub struct TileMap {
    /// Tiles per row.
    pub tw: usize,
    /// Tile rows.
    pub th: usize,
    /// Row-major flags.
    pub picture: Vec<bool>,
}

/// A rectangle in tile units, half open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x0: usize,
    /// Top row.
    pub y0: usize,
    /// One past the right column.
    pub x1: usize,
    /// One past the bottom row.
    pub y1: usize,
}

impl Rect {
    fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }

    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn union(&self, o: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

impl TileMap {
    fn get(&self, x: usize, y: usize) -> bool {
        x < self.tw && self.picture.get(y * self.tw + x).copied().unwrap_or(false)
    }

    /// The picture rectangles, disjoint, at most `max` of them.
    pub fn rects(&self, max: usize) -> Vec<Rect> {
        let mut seen = vec![false; self.picture.len()];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let mut boxes: Vec<Rect> = Vec::new();
        for y in 0..self.th {
            for x in 0..self.tw {
                let i = y * self.tw + x;
                if !self.get(x, y) || seen.get(i).copied().unwrap_or(true) {
                    continue;
                }
                let mut b = Rect {
                    x0: x,
                    y0: y,
                    x1: x + 1,
                    y1: y + 1,
                };
                if let Some(s) = seen.get_mut(i) {
                    *s = true;
                }
                stack.push((x, y));
                while let Some((cx, cy)) = stack.pop() {
                    b = b.union(&Rect {
                        x0: cx,
                        y0: cy,
                        x1: cx + 1,
                        y1: cy + 1,
                    });
                    for ny in cy.saturating_sub(1)..=(cy + 1).min(self.th - 1) {
                        for nx in cx.saturating_sub(1)..=(cx + 1).min(self.tw - 1) {
                            let j = ny * self.tw + nx;
                            if self.get(nx, ny) && !seen.get(j).copied().unwrap_or(true) {
                                if let Some(s) = seen.get_mut(j) {
                                    *s = true;
                                }
                                stack.push((nx, ny));
                            }
                        }
                    }
                }
                if b.x1 - b.x0 >= MIN_SIDE && b.y1 - b.y0 >= MIN_SIDE {
                    boxes.push(Rect {
                        x0: b.x0.saturating_sub(1),
                        y0: b.y0.saturating_sub(1),
                        x1: (b.x1 + 1).min(self.tw),
                        y1: (b.y1 + 1).min(self.th),
                    });
                }
            }
        }
        if boxes.len() > MAX_COMPONENTS
            && let Some(all) = boxes.iter().copied().reduce(|a, b| a.union(&b))
        {
            return vec![all];
        }
        merge(boxes, max)
    }
}

/// Merges overlapping boxes, then the pair whose union wastes least, until at most `max`.
fn merge(mut boxes: Vec<Rect>, max: usize) -> Vec<Rect> {
    loop {
        let mut best: Option<(usize, usize, usize)> = None;
        for (i, a) in boxes.iter().enumerate() {
            for (j, b) in boxes.iter().enumerate().skip(i + 1) {
                let waste = if a.overlaps(b) {
                    0
                } else if boxes.len() > max {
                    a.union(b).area().saturating_sub(a.area() + b.area())
                } else {
                    continue;
                };
                if best.is_none_or(|(_, _, w)| waste < w) {
                    best = Some((i, j, waste));
                }
            }
        }
        let Some((i, j, _)) = best else {
            return boxes;
        };
        let b = boxes.swap_remove(j);
        if let Some(a) = boxes.get_mut(i) {
            *a = a.union(&b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(tw: usize, th: usize, on: &[(usize, usize)]) -> TileMap {
        let mut picture = vec![false; tw * th];
        for &(x, y) in on {
            picture[y * tw + x] = true;
        }
        TileMap { tw, th, picture }
    }

    #[test]
    fn small_components_stay_text_and_large_ones_become_padded_boxes() {
        let mut on = vec![(0, 0), (1, 0)]; // a coloured link: too small
        for y in 4..8 {
            for x in 5..9 {
                on.push((x, y));
            }
        }
        let r = map(20, 20, &on).rects(8);
        assert_eq!(
            r,
            vec![Rect {
                x0: 4,
                y0: 3,
                x1: 10,
                y1: 9
            }]
        );
    }

    #[test]
    fn overlapping_boxes_merge_and_the_count_is_capped() {
        let mut on = Vec::new();
        for k in 0..12 {
            for y in 0..3 {
                for x in 0..3 {
                    on.push((k * 6 + x, y + (k % 2) * 10));
                }
            }
        }
        let r = map(80, 20, &on).rects(4);
        assert!(r.len() <= 4);
        for (i, a) in r.iter().enumerate() {
            for b in r.iter().skip(i + 1) {
                assert!(!a.overlaps(b));
            }
        }
    }
}
