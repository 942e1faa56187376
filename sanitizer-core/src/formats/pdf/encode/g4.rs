//! A CCITT Group 4 (ITU-T T.6) encoder that works on changing elements, not pixels.
//!
//! A row is given as the ascending positions where its colour changes (the row starts white,
//! so positions 0, 2, 4, … of the list start black runs and 1, 3, 5, … start white runs), the
//! same form hayro-ccitt's decoder hands back. The cost of a row is therefore proportional to
//! its number of changes, not its width: a blank row is a single `V0` code.
//!
//! The output is what PDF's `/CCITTFaxDecode` expects with `/K -1`, `/BlackIs1 false` (the
//! default), no end-of-line codes, no byte alignment; it ends with the EOFB marker.

/// Bit writer, MSB first.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// Appends the low `len` bits of `code` (`len` ≤ 32).
    #[inline]
    fn put(&mut self, code: u32, len: u32) {
        self.acc = (self.acc << len) | (u64::from(code) & ((1u64 << len) - 1));
        self.n += len;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put(0, pad);
        }
        self.out
    }
}

/// `(code, bit length)` of the terminating codes 0–63 for white runs (T.4 table 2).
const WHITE_TERM: [(u16, u8); 64] = [
    (0b00110101, 8),
    (0b000111, 6),
    (0b0111, 4),
    (0b1000, 4),
    (0b1011, 4),
    (0b1100, 4),
    (0b1110, 4),
    (0b1111, 4),
    (0b10011, 5),
    (0b10100, 5),
    (0b00111, 5),
    (0b01000, 5),
    (0b001000, 6),
    (0b000011, 6),
    (0b110100, 6),
    (0b110101, 6),
    (0b101010, 6),
    (0b101011, 6),
    (0b0100111, 7),
    (0b0001100, 7),
    (0b0001000, 7),
    (0b0010111, 7),
    (0b0000011, 7),
    (0b0000100, 7),
    (0b0101000, 7),
    (0b0101011, 7),
    (0b0010011, 7),
    (0b0100100, 7),
    (0b0011000, 7),
    (0b00000010, 8),
    (0b00000011, 8),
    (0b00011010, 8),
    (0b00011011, 8),
    (0b00010010, 8),
    (0b00010011, 8),
    (0b00010100, 8),
    (0b00010101, 8),
    (0b00010110, 8),
    (0b00010111, 8),
    (0b00101000, 8),
    (0b00101001, 8),
    (0b00101010, 8),
    (0b00101011, 8),
    (0b00101100, 8),
    (0b00101101, 8),
    (0b00000100, 8),
    (0b00000101, 8),
    (0b00001010, 8),
    (0b00001011, 8),
    (0b01010010, 8),
    (0b01010011, 8),
    (0b01010100, 8),
    (0b01010101, 8),
    (0b00100100, 8),
    (0b00100101, 8),
    (0b01011000, 8),
    (0b01011001, 8),
    (0b01011010, 8),
    (0b01011011, 8),
    (0b01001010, 8),
    (0b01001011, 8),
    (0b00110010, 8),
    (0b00110011, 8),
    (0b00110100, 8),
];

/// White make-up codes for 64, 128, …, 1728 (T.4 table 3a).
const WHITE_MAKEUP: [(u16, u8); 27] = [
    (0b11011, 5),
    (0b10010, 5),
    (0b010111, 6),
    (0b0110111, 7),
    (0b00110110, 8),
    (0b00110111, 8),
    (0b01100100, 8),
    (0b01100101, 8),
    (0b01101000, 8),
    (0b01100111, 8),
    (0b011001100, 9),
    (0b011001101, 9),
    (0b011010010, 9),
    (0b011010011, 9),
    (0b011010100, 9),
    (0b011010101, 9),
    (0b011010110, 9),
    (0b011010111, 9),
    (0b011011000, 9),
    (0b011011001, 9),
    (0b011011010, 9),
    (0b011011011, 9),
    (0b010011000, 9),
    (0b010011001, 9),
    (0b010011010, 9),
    (0b011000, 6),
    (0b010011011, 9),
];

/// `(code, bit length)` of the terminating codes 0–63 for black runs (T.4 table 2).
const BLACK_TERM: [(u16, u8); 64] = [
    (0b0000110111, 10),
    (0b010, 3),
    (0b11, 2),
    (0b10, 2),
    (0b011, 3),
    (0b0011, 4),
    (0b0010, 4),
    (0b00011, 5),
    (0b000101, 6),
    (0b000100, 6),
    (0b0000100, 7),
    (0b0000101, 7),
    (0b0000111, 7),
    (0b00000100, 8),
    (0b00000111, 8),
    (0b000011000, 9),
    (0b0000010111, 10),
    (0b0000011000, 10),
    (0b0000001000, 10),
    (0b00001100111, 11),
    (0b00001101000, 11),
    (0b00001101100, 11),
    (0b00000110111, 11),
    (0b00000101000, 11),
    (0b00000010111, 11),
    (0b00000011000, 11),
    (0b000011001010, 12),
    (0b000011001011, 12),
    (0b000011001100, 12),
    (0b000011001101, 12),
    (0b000001101000, 12),
    (0b000001101001, 12),
    (0b000001101010, 12),
    (0b000001101011, 12),
    (0b000011010010, 12),
    (0b000011010011, 12),
    (0b000011010100, 12),
    (0b000011010101, 12),
    (0b000011010110, 12),
    (0b000011010111, 12),
    (0b000001101100, 12),
    (0b000001101101, 12),
    (0b000011011010, 12),
    (0b000011011011, 12),
    (0b000001010100, 12),
    (0b000001010101, 12),
    (0b000001010110, 12),
    (0b000001010111, 12),
    (0b000001100100, 12),
    (0b000001100101, 12),
    (0b000001010010, 12),
    (0b000001010011, 12),
    (0b000000100100, 12),
    (0b000000110111, 12),
    (0b000000111000, 12),
    (0b000000100111, 12),
    (0b000000101000, 12),
    (0b000001011000, 12),
    (0b000001011001, 12),
    (0b000000101011, 12),
    (0b000000101100, 12),
    (0b000001011010, 12),
    (0b000001100110, 12),
    (0b000001100111, 12),
];

/// Black make-up codes for 64, 128, …, 1728 (T.4 table 3a).
const BLACK_MAKEUP: [(u16, u8); 27] = [
    (0b0000001111, 10),
    (0b000011001000, 12),
    (0b000011001001, 12),
    (0b000001011011, 12),
    (0b000000110011, 12),
    (0b000000110100, 12),
    (0b000000110101, 12),
    (0b0000001101100, 13),
    (0b0000001101101, 13),
    (0b0000001001010, 13),
    (0b0000001001011, 13),
    (0b0000001001100, 13),
    (0b0000001001101, 13),
    (0b0000001110010, 13),
    (0b0000001110011, 13),
    (0b0000001110100, 13),
    (0b0000001110101, 13),
    (0b0000001110110, 13),
    (0b0000001110111, 13),
    (0b0000001010010, 13),
    (0b0000001010011, 13),
    (0b0000001010100, 13),
    (0b0000001010101, 13),
    (0b0000001011010, 13),
    (0b0000001011011, 13),
    (0b0000001100100, 13),
    (0b0000001100101, 13),
];

/// Make-up codes shared by both colours for 1792, 1856, …, 2560 (T.4 table 3b).
const EXT_MAKEUP: [(u16, u8); 13] = [
    (0b00000001000, 11),
    (0b00000001100, 11),
    (0b00000001101, 11),
    (0b000000010010, 12),
    (0b000000010011, 12),
    (0b000000010100, 12),
    (0b000000010101, 12),
    (0b000000010110, 12),
    (0b000000010111, 12),
    (0b000000011100, 12),
    (0b000000011101, 12),
    (0b000000011110, 12),
    (0b000000011111, 12),
];

const PASS: (u32, u32) = (0b0001, 4);
const HORIZONTAL: (u32, u32) = (0b001, 3);
/// Vertical mode codes for `a1 - b1` = -3 … 3.
const VERTICAL: [(u32, u32); 7] = [
    (0b0000010, 7),
    (0b000010, 6),
    (0b010, 3),
    (0b1, 1),
    (0b011, 3),
    (0b000011, 6),
    (0b0000011, 7),
];
/// End of facsimile block: two EOL codes.
const EOFB: (u32, u32) = (0b0000_0000_0001_0000_0000_0001, 24);

fn put_code(bits: &mut Bits, (code, len): (u16, u8)) {
    bits.put(u32::from(code), u32::from(len));
}

/// One run of `len` pixels of one colour: make-up codes, then a terminating code.
fn put_run(bits: &mut Bits, mut len: u32, black: bool) {
    let (term, makeup) = if black {
        (&BLACK_TERM, &BLACK_MAKEUP)
    } else {
        (&WHITE_TERM, &WHITE_MAKEUP)
    };
    while len >= 2560 {
        put_code(bits, (0b000000011111, 12));
        len -= 2560;
    }
    if len >= 64 {
        let k = (len / 64) as usize; // 1..=39
        let code = if k <= 27 {
            makeup.get(k - 1)
        } else {
            EXT_MAKEUP.get(k - 28)
        };
        if let Some(c) = code {
            put_code(bits, *c);
        }
        len %= 64;
    }
    if let Some(c) = term.get(len as usize) {
        put_code(bits, *c);
    }
}

/// Encodes rows of changing elements into a G4 stream.
pub struct G4Encoder {
    width: u32,
    bits: Bits,
    reference: Vec<u32>,
    scratch: Vec<u32>,
}

impl G4Encoder {
    /// An encoder for rows `width` pixels wide.
    pub fn new(width: u32) -> Self {
        G4Encoder {
            width,
            bits: Bits {
                out: Vec::new(),
                acc: 0,
                n: 0,
            },
            reference: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Encodes one row. `changes` must be strictly ascending and below the width; the row
    /// starts white. Positions out of order or range are clamped, never a panic.
    pub fn row(&mut self, changes: &[u32]) {
        let w = self.width;
        // Normalised: strictly ascending and inside the row, so every step below moves a0 right.
        let mut clean = std::mem::take(&mut self.scratch);
        clean.clear();
        for &c in changes {
            if c < w && clean.last().is_none_or(|&l| c > l) {
                clean.push(c);
            }
        }
        let changes = clean.as_slice();
        let at = |list: &[u32], i: usize| list.get(i).copied().unwrap_or(w).min(w);
        let refs = &self.reference;
        // a0 as a signed position (-1 before the row); `ai` is the index of a1 in `changes`;
        // `rk` the index of the first reference change right of a0.
        let mut a0: i64 = -1;
        let mut ai = 0usize;
        let mut rk = 0usize;
        loop {
            let a1 = at(changes, ai);
            // The colour of a0 is white when an even number of changes lie before a1.
            while rk < refs.len() && i64::from(at(refs, rk)) <= a0 {
                rk += 1;
            }
            // b1: first reference change right of a0 whose colour is opposite to a0's, i.e.
            // with the same parity as a1's index.
            let b1i = if rk % 2 == ai % 2 { rk } else { rk + 1 };
            let b1 = at(refs, b1i);
            let b2 = at(refs, b1i + 1);
            if b2 < a1 {
                self.bits.put(PASS.0, PASS.1);
                a0 = i64::from(b2);
            } else {
                let d = i64::from(a1) - i64::from(b1);
                if (-3..=3).contains(&d) {
                    let (c, l) = VERTICAL.get((d + 3) as usize).copied().unwrap_or((1, 1));
                    self.bits.put(c, l);
                    a0 = i64::from(a1);
                    ai += 1;
                } else {
                    let a2 = at(changes, ai + 1);
                    let start = a0.max(0) as u32;
                    let black = ai % 2 == 1;
                    self.bits.put(HORIZONTAL.0, HORIZONTAL.1);
                    put_run(&mut self.bits, a1.saturating_sub(start), black);
                    put_run(&mut self.bits, a2.saturating_sub(a1), !black);
                    a0 = i64::from(a2);
                    ai += 2;
                }
            }
            if a0 >= i64::from(w) {
                break;
            }
        }
        // The coded row becomes the next reference; the old reference is reused as scratch.
        self.scratch = std::mem::replace(&mut self.reference, clean);
    }

    /// Ends the block and returns the stream.
    pub fn finish(mut self) -> Vec<u8> {
        self.bits.put(EOFB.0, EOFB.1);
        self.bits.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rows(Vec<Vec<u32>>);

    impl hayro_ccitt::Decoder for Rows {
        fn push_row(&mut self, changes: &[u32]) {
            self.0.push(changes.to_vec());
        }
    }

    /// Decodes with hayro's own CCITT decoder (the one that will draw our output), strictly.
    fn decode(data: &[u8], width: u32, rows: u32) -> Vec<Vec<u32>> {
        let mut ctx = hayro_ccitt::DecoderContext::new(hayro_ccitt::DecodeSettings {
            columns: width,
            rows,
            end_of_block: true,
            end_of_line: false,
            rows_are_byte_aligned: false,
            encoding: hayro_ccitt::EncodingMode::Group4,
            strict: true,
        });
        let mut out = Rows(Vec::new());
        hayro_ccitt::decode(data, &mut out, &mut ctx).unwrap();
        out.0
    }

    fn roundtrip(width: u32, rows: &[Vec<u32>]) {
        let mut enc = G4Encoder::new(width);
        for r in rows {
            enc.row(r);
        }
        let data = enc.finish();
        let got = decode(&data, width, rows.len() as u32);
        assert_eq!(got.len(), rows.len());
        for (y, (g, want)) in got.iter().zip(rows).enumerate() {
            assert_eq!(g, want, "row {y} of width {width}");
        }
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn random_rows_decode_to_the_same_changes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for width in [1u32, 2, 7, 64, 1275, 1728, 3000] {
            let mut rows = Vec::new();
            for y in 0..60 {
                let mut row = Vec::new();
                let mut x = 0u32;
                // Alternate dense rows (vertical/pass modes), sparse rows (long horizontal runs)
                // and copies of the previous row (V0 everywhere).
                let step = match y % 4 {
                    0 => 4,
                    1 => 300,
                    _ => 40,
                };
                if y % 5 == 4 {
                    rows.push(rows.last().cloned().unwrap_or_default());
                    continue;
                }
                loop {
                    x += 1 + (rng(&mut seed) % step) as u32;
                    if x >= width {
                        break;
                    }
                    row.push(x);
                }
                if rng(&mut seed).is_multiple_of(3) {
                    row.insert(0, 0); // a row starting black
                    row.dedup();
                }
                rows.push(row);
            }
            roundtrip(width, &rows);
        }
    }

    #[test]
    fn every_run_length_up_to_beyond_the_largest_code() {
        // One black run of each length n and a white run of each length, on rows wide enough
        // for make-up codes, the shared extended codes and repeated 2560 codes.
        let width = 6000u32;
        let mut rows = Vec::new();
        for n in (1..=5990u32).step_by(7).chain(1..70) {
            rows.push(vec![3, 3 + n]);
            rows.push(vec![n.min(width - 1)]);
            rows.push(Vec::new());
        }
        roundtrip(width, &rows);
    }

    #[test]
    fn blank_page_is_tiny_and_bad_input_does_not_panic() {
        let mut enc = G4Encoder::new(1000);
        for _ in 0..1000 {
            enc.row(&[]);
        }
        assert!(enc.finish().len() < 140);
        // Unsorted, duplicate and out-of-range positions are dropped, not trusted.
        let mut enc = G4Encoder::new(10);
        enc.row(&[5, 3, 3, 99, 7]);
        enc.row(&[u32::MAX, 0]);
        let data = enc.finish();
        assert_eq!(decode(&data, 10, 2), vec![vec![5, 7], vec![0]]);
    }
}
