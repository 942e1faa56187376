//! The one font of the text layer, generated here: a TrueType program with two empty glyphs
//! (the classic "glyph-less font"), wrapped as a Type0 font (`/Identity-H`, `CIDFontType2`)
//! whose `CIDToGIDMap` sends every CID to the empty glyph 1, and a `ToUnicode` CMap built per
//! document from the characters the layer uses. Every glyph is half an em wide
//! ([`ADVANCE`]), so a word's width is set with `Tz` alone.
//!
//! Nothing of the original's fonts is used: the layer's text is only the CIDs this module
//! hands out, and the CMap says which character each one is.

use std::collections::BTreeMap;
use std::io::Write;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Filter, Name, Pdf, Rect, Ref, Str};

use crate::error::SanitizeError;

use super::super::rasterize::RefAlloc;

/// Advance of every glyph, in units of 1/1000 em.
pub const ADVANCE: f32 = 500.0;
/// PostScript name of the font.
pub const FONT_NAME: &[u8] = b"MugaiGlyphLess";
/// Resource name of the font in every page.
pub const RESOURCE_NAME: &[u8] = b"T0";
/// Highest CID handed out (CID 0 is .notdef).
const MAX_CID: u16 = u16::MAX - 1;

/// Big-endian writer for the font tables.
#[derive(Default)]
struct Be(Vec<u8>);

impl Be {
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
}

fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, c| {
        let mut word = [0u8; 4];
        for (d, s) in word.iter_mut().zip(c) {
            *d = *s;
        }
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

/// The TrueType program: glyph 0 (.notdef) and glyph 1, both empty and [`ADVANCE`] wide,
/// 1000 units per em, ascent 800, descent -200.
pub fn glyphless_truetype() -> Vec<u8> {
    let advance = ADVANCE as u16;
    let mut head = Be::default();
    head.u32(0x0001_0000)
        .u32(0x0001_0000)
        .u32(0)
        .u32(0x5F0F_3CF5);
    head.u16(0x000B).u16(1000);
    head.u32(0).u32(0).u32(0).u32(0); // created, modified
    head.i16(0).i16(-200).i16(advance as i16).i16(800);
    head.u16(0).u16(8).i16(2).i16(0).i16(0);
    let mut hhea = Be::default();
    hhea.u32(0x0001_0000).i16(800).i16(-200).i16(0).u16(advance);
    hhea.i16(0).i16(0).i16(0).i16(1).i16(0).i16(0);
    hhea.i16(0).i16(0).i16(0).i16(0).i16(0).u16(2);
    let mut maxp = Be::default();
    maxp.u32(0x0001_0000).u16(2);
    for v in [0u16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0] {
        maxp.u16(v);
    }
    let mut hmtx = Be::default();
    hmtx.u16(advance).i16(0).u16(advance).i16(0);
    let mut loca = Be::default();
    loca.u16(0).u16(0).u16(0);
    let mut cmap = Be::default();
    cmap.u16(0).u16(1).u16(3).u16(1).u32(12);
    cmap.u16(4).u16(24).u16(0).u16(2).u16(2).u16(0).u16(0);
    cmap.u16(0xFFFF).u16(0).u16(0xFFFF).u16(1).u16(0);
    let mut post = Be::default();
    post.u32(0x0003_0000).u32(0).i16(-100).i16(50);
    post.u32(0).u32(0).u32(0).u32(0).u32(0);
    let mut name = Be::default();
    let family = "Mugai GlyphLess";
    let utf16: Vec<u8> = family
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    let len = utf16.len() as u16;
    name.u16(0).u16(2).u16(6 + 2 * 12);
    for id in [1u16, 4] {
        name.u16(3).u16(1).u16(0x0409).u16(id).u16(len).u16(0);
    }
    name.0.extend_from_slice(&utf16);
    let tables: [(&[u8; 4], Vec<u8>); 9] = [
        (b"cmap", cmap.0),
        (b"glyf", Vec::new()),
        (b"head", head.0),
        (b"hhea", hhea.0),
        (b"hmtx", hmtx.0),
        (b"loca", loca.0),
        (b"maxp", maxp.0),
        (b"name", name.0),
        (b"post", post.0),
    ];
    let n = tables.len() as u16;
    let mut out = Be::default();
    // 9 tables: searchRange 8*16, entrySelector 3, rangeShift 9*16 - 128.
    out.u32(0x0001_0000)
        .u16(n)
        .u16(128)
        .u16(3)
        .u16(n * 16 - 128);
    let mut offset = 12 + 16 * u32::from(n);
    let mut head_offset = 0usize;
    let mut body = Vec::new();
    for (tag, data) in &tables {
        if *tag == b"head" {
            head_offset = offset as usize;
        }
        out.0.extend_from_slice(*tag);
        out.u32(checksum(data)).u32(offset).u32(data.len() as u32);
        let mut padded = data.clone();
        padded.resize(data.len().div_ceil(4) * 4, 0);
        offset += padded.len() as u32;
        body.extend_from_slice(&padded);
    }
    out.0.extend_from_slice(&body);
    let adjust = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out.0));
    // checkSumAdjustment sits 8 bytes into head.
    if let Some(slot) = out.0.get_mut(head_offset + 8..head_offset + 12) {
        slot.copy_from_slice(&adjust.to_be_bytes());
    }
    out.0
}

pub(crate) fn flate(data: &[u8]) -> Result<Vec<u8>, SanitizeError> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data)
        .and_then(|()| e.finish())
        .map_err(|e| SanitizeError::Internal(format!("flate: {e}")))
}

/// The layer font of one document: CIDs handed out per character, objects written at the end.
#[derive(Debug)]
pub struct LayerFont {
    type0: Ref,
    cids: BTreeMap<char, u16>,
    next: u16,
}

impl LayerFont {
    /// Reserves the font's object number (the pages refer to it before it is written).
    pub fn new(alloc: &mut RefAlloc) -> Result<LayerFont, SanitizeError> {
        Ok(LayerFont {
            type0: alloc.bump()?,
            cids: BTreeMap::new(),
            next: 1,
        })
    }

    /// The Type0 font object the pages name as `/T0`.
    pub fn font_ref(&self) -> Ref {
        self.type0
    }

    /// The `Identity-H` bytes of `text` (2 bytes per character), or `None` when the document
    /// ran out of CIDs.
    pub fn encode(&mut self, text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let cid = match self.cids.get(&c) {
                Some(cid) => *cid,
                None => {
                    if self.next > MAX_CID {
                        return None;
                    }
                    let cid = self.next;
                    self.cids.insert(c, cid);
                    self.next += 1;
                    cid
                }
            };
            out.extend_from_slice(&cid.to_be_bytes());
        }
        Some(out)
    }

    /// Writes the font, its descendant, descriptor, program, CID-to-GID map and ToUnicode map.
    pub fn write(self, out: &mut Pdf, alloc: &mut RefAlloc) -> Result<(), SanitizeError> {
        let cid_ref = alloc.bump()?;
        let descriptor_ref = alloc.bump()?;
        let file_ref = alloc.bump()?;
        let map_ref = alloc.bump()?;
        let cmap_ref = alloc.bump()?;
        let info = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };
        out.type0_font(self.type0)
            .base_font(Name(FONT_NAME))
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid_ref)
            .to_unicode(cmap_ref);
        out.cid_font(cid_ref)
            .subtype(CidFontType::Type2)
            .base_font(Name(FONT_NAME))
            .system_info(info)
            .font_descriptor(descriptor_ref)
            .default_width(ADVANCE)
            .cid_to_gid_map_stream(map_ref);
        out.font_descriptor(descriptor_ref)
            .name(Name(FONT_NAME))
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(0.0, -200.0, ADVANCE, 800.0))
            .italic_angle(0.0)
            .ascent(800.0)
            .descent(-200.0)
            .cap_height(700.0)
            .stem_v(80.0)
            .font_file2(file_ref);
        let program = glyphless_truetype();
        let program_len = i32::try_from(program.len())
            .map_err(|_| SanitizeError::Internal("font size".into()))?;
        out.stream(file_ref, &flate(&program)?)
            .filter(Filter::FlateDecode)
            .pair(Name(b"Length1"), program_len);
        // Every CID up to the highest used maps to glyph 1.
        let mut map = Vec::with_capacity(usize::from(self.next) * 2);
        map.extend_from_slice(&[0, 0]);
        for _ in 1..self.next {
            map.extend_from_slice(&[0, 1]);
        }
        out.stream(map_ref, &flate(&map)?)
            .filter(Filter::FlateDecode);
        let mut cmap = UnicodeCmap::new(Name(b"Mugai-UTF16"), info);
        for (c, cid) in &self.cids {
            cmap.pair(*cid, *c);
        }
        out.stream(cmap_ref, &flate(&cmap.finish())?)
            .filter(Filter::FlateDecode);
        Ok(())
    }
}
