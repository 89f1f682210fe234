//! Indonesian personal names, reduced to comparable keys.
//!
//! The same person is written many ways across the family card, the civil registry and a
//! village form: with or without titles (`H.`, `Hj.`, `Drs.`, `S.Pd.`), with abbreviations
//! (`Muh.`, `Moch.`, `M.` for Muhammad; `Abd.` for Abdul), in the old spelling (ejaan
//! lama: `oe`, `dj`, `tj`, `j` for `y`), with the parts in another order, or as a single
//! name. [`NameKey`] keeps two forms of a name: the canonical tokens (titles and
//! connectors gone, abbreviations expanded) and a phonetic form of each token that also
//! merges spelling variants.

/// Titles and degrees dropped wherever they stand (compared without dots).
const TITLES: &[&str] = &[
    "H", "HJ", "HAJI", "HAJAH", "HAJJAH", "DR", "DRS", "DRA", "IR", "PROF", "KH", "TGK", "TUAN",
    "NY", "NYONYA", "SDR", "SDRI", "BPK", "IBU", "SPD", "SPDI", "SAG", "SE", "SH", "SHI", "ST",
    "SKOM", "SKM", "SSOS", "SIP", "SSI", "SKEP", "SST", "MPD", "MM", "MSI", "MH", "MT", "MKES",
    "AMD", "AMK", "AMKEB", "AMA", "AMAPK", "BA", "BSC",
];

/// Words that join a name to a parent's and carry no identity of their own.
const CONNECTORS: &[&str] = &["BIN", "BINTI", "BT", "BN"];

/// Abbreviations and spellings of common name parts, to one canonical token.
const CANONICAL: &[(&str, &str)] = &[
    ("MUH", "MUHAMMAD"),
    ("MUHD", "MUHAMMAD"),
    ("MUHAMAD", "MUHAMMAD"),
    ("MUHAMMED", "MUHAMMAD"),
    ("MUHAMMAT", "MUHAMMAD"),
    ("MUCHAMAD", "MUHAMMAD"),
    ("MUCHAMMAD", "MUHAMMAD"),
    ("MOH", "MUHAMMAD"),
    ("MOHD", "MUHAMMAD"),
    ("MOCH", "MUHAMMAD"),
    ("MOHAMAD", "MUHAMMAD"),
    ("MOHAMMAD", "MUHAMMAD"),
    ("MOHAMMED", "MUHAMMAD"),
    ("MOCHAMAD", "MUHAMMAD"),
    ("MOCHAMMAD", "MUHAMMAD"),
    ("MHD", "MUHAMMAD"),
    ("MHMD", "MUHAMMAD"),
    ("ABD", "ABDUL"),
    ("ABDOEL", "ABDUL"),
    ("ACHMAD", "AHMAD"),
    ("AHMED", "AHMAD"),
    ("AHMAT", "AHMAD"),
    ("ACHMAT", "AHMAD"),
    ("SITTI", "SITI"),
    ("NOOR", "NUR"),
    ("NOER", "NUR"),
];

/// A name reduced for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameKey {
    /// Upper-case tokens without titles and connectors, abbreviations expanded.
    pub tokens: Vec<String>,
    /// One phonetic form per token (same order).
    pub phonetic: Vec<String>,
    joined: String,
    sorted: String,
    /// A hash of each phonetic token (same order), to tell whether one name's parts all
    /// occur in another's without comparing strings.
    token_hashes: Box<[u64]>,
    /// Hashes of the tokens, the joined and the sorted phonetic form: unequal hashes
    /// settle most comparisons without comparing strings.
    fingerprints: [u64; 3],
}

/// FNV-1a over `parts`, each followed by a separator, from `seed`: stable across runs
/// and processes (name fingerprints and blocking keys).
pub(crate) fn fnv<'p>(seed: u64, parts: impl IntoIterator<Item = &'p [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for byte in part.iter().chain(&[0x1f]) {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl NameKey {
    pub fn new(name: &str) -> Self {
        let tokens = canonical_tokens(name);
        let phonetic: Vec<String> = tokens.iter().map(|t| phonetic(t)).collect();
        let joined = phonetic.join(" ");
        let mut parts: Vec<&str> = phonetic.iter().map(String::as_str).collect();
        parts.sort_unstable();
        let sorted = parts.join(" ");
        let fingerprints = [
            fnv(0, tokens.iter().map(String::as_bytes)),
            fnv(0, [joined.as_bytes()]),
            fnv(0, [sorted.as_bytes()]),
        ];
        let token_hashes = phonetic.iter().map(|t| fnv(0, [t.as_bytes()])).collect();
        Self {
            tokens,
            phonetic,
            joined,
            sorted,
            token_hashes,
            fingerprints,
        }
    }

    /// Same tokens (titles, connectors and abbreviations aside).
    pub fn same_tokens(&self, other: &Self) -> bool {
        self.fingerprints[0] == other.fingerprints[0] && self.tokens == other.tokens
    }

    /// Same phonetic form, parts in the same order.
    pub fn same_phonetic(&self, other: &Self) -> bool {
        self.fingerprints[1] == other.fingerprints[1] && self.joined == other.joined
    }

    /// A hash of the phonetic parts in any order (for blocking).
    pub fn parts_fingerprint(&self) -> u64 {
        self.fingerprints[2]
    }

    /// Same phonetic parts in any order.
    pub fn same_parts(&self, other: &Self) -> bool {
        self.fingerprints[2] == other.fingerprints[2] && self.sorted == other.sorted
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether every phonetic part of `self` is also a part of `other`.
    pub fn parts_within(&self, other: &Self) -> bool {
        self.token_hashes.iter().zip(&self.phonetic).all(|(h, t)| {
            other
                .token_hashes
                .iter()
                .zip(&other.phonetic)
                .any(|(oh, ot)| oh == h && ot == t)
        })
    }

    /// The phonetic tokens joined by a space.
    pub fn phonetic_joined(&self) -> &str {
        &self.joined
    }

    /// The phonetic tokens sorted, then joined: the same for transposed name parts.
    pub fn phonetic_sorted(&self) -> &str {
        &self.sorted
    }
}

/// Splits, upper-cases, strips punctuation, drops degrees after a comma, titles and
/// connectors, and expands abbreviations.
pub fn canonical_tokens(name: &str) -> Vec<String> {
    // "Budi Santoso, S.Pd., M.M." — what follows the first comma is degrees.
    let name = name.split(',').next().unwrap_or_default();
    let mut raw: Vec<String> = Vec::new();
    for word in name.split_whitespace() {
        // Plain letters (most names): one upper-cased copy and nothing more.
        if word.bytes().all(|b| b.is_ascii_alphabetic()) {
            raw.push(word.to_ascii_uppercase());
            continue;
        }
        let upper = word.to_uppercase();
        if upper.contains('.') {
            let undotted: String = upper.chars().filter(|c| c.is_alphanumeric()).collect();
            if TITLES.contains(&undotted.as_str()) {
                raw.push(undotted);
                continue;
            }
        }
        // "H.Ahmad" or "Moch.Rizky": dots also separate parts.
        for part in upper.split(['.', '-', '/']) {
            let part: String = part.chars().filter(|c| c.is_alphabetic()).collect();
            if !part.is_empty() {
                raw.push(part);
            }
        }
    }
    let count = raw.len();
    let mut tokens = Vec::with_capacity(count);
    for (i, token) in raw.into_iter().enumerate() {
        if CONNECTORS.contains(&token.as_str()) {
            continue;
        }
        // A title is dropped only when something else remains: "Haji" alone is a name.
        if TITLES.contains(&token.as_str()) && count > 1 {
            continue;
        }
        // "M. Rizky": a leading single M is Muhammad.
        if token == "M" && i == 0 && count > 1 {
            tokens.push("MUHAMMAD".to_owned());
            continue;
        }
        let canonical = CANONICAL
            .iter()
            .find(|(from, _)| *from == token)
            .map(|(_, to)| (*to).to_owned())
            .unwrap_or(token);
        tokens.push(canonical);
    }
    tokens
}

/// A phonetic form of one upper-case token: old spelling to new (OE→U, DJ→J, TJ→C,
/// NJ→NY, SJ→SY, CH/KH→H), J and Y merged, V→F, Q→K, doubled letters collapsed, and a
/// final H after a vowel dropped (Aminah / Amina).
pub fn phonetic(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    let mut last: Option<char> = None;
    let mut push = |c: char, out: &mut String| {
        if last != Some(c) {
            out.push(c);
            last = Some(c);
        }
    };
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let pair = |n: char| next == Some(n);
        match c {
            'O' if pair('E') => {
                chars.next();
                push('U', &mut out);
            }
            'D' if pair('J') => {
                chars.next();
                push('Y', &mut out);
            }
            'T' if pair('J') => {
                chars.next();
                push('C', &mut out);
            }
            'N' | 'S' if pair('J') => {
                chars.next();
                push(c, &mut out);
                push('Y', &mut out);
            }
            'C' | 'K' if pair('H') => {
                chars.next();
                push('H', &mut out);
            }
            'J' => push('Y', &mut out),
            'V' => push('F', &mut out),
            'Q' => push('K', &mut out),
            other => push(other, &mut out),
        }
    }
    let vowel = |c: char| matches!(c, 'A' | 'E' | 'I' | 'O' | 'U');
    let bytes = out.as_bytes();
    if out.len() > 2 && out.ends_with('H') && vowel(bytes[bytes.len() - 2] as char) {
        out.pop();
    }
    out
}

/// Jaro–Winkler similarity in [0, 1] (prefix scale 0.1, at most four characters),
/// over bytes: names reach it upper-cased and almost always ASCII.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    if a.len() <= 64 && b.len() <= 64 {
        return jaro_winkler_bits(a, b);
    }
    jaro_winkler_scan(a, b)
}

/// The bits below `n` (all 64 for `n` ≥ 64).
fn bits_below(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

fn winkler(a: &[u8], b: &[u8], matches: usize, transpositions: usize) -> f64 {
    let m = matches as f64;
    let jaro =
        (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64 / 2.0) / m) / 3.0;
    let prefix = a
        .iter()
        .zip(b.iter())
        .take(4)
        .take_while(|(x, y)| x == y)
        .count() as f64;
    jaro + prefix * 0.1 * (1.0 - jaro)
}

/// Jaro–Winkler for names of at most 64 bytes, with the matched positions as bits: the
/// positions of `b` holding each byte (by its low five bits, checked) are looked up
/// instead of scanned, and the same greedy matching as [`jaro_winkler_scan`] results.
fn jaro_winkler_bits(a: &[u8], b: &[u8]) -> f64 {
    let mut at = [0u64; 32];
    for (j, c) in b.iter().enumerate() {
        at[usize::from(c & 31)] |= 1 << j;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let (mut a_matched, mut b_matched, mut matches) = (0u64, 0u64, 0usize);
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        if lo >= hi {
            continue;
        }
        let mut free = at[usize::from(ca & 31)] & bits_below(hi) & !bits_below(lo) & !b_matched;
        while free != 0 {
            let j = free.trailing_zeros() as usize;
            if b[j] == *ca {
                a_matched |= 1 << i;
                b_matched |= 1 << j;
                matches += 1;
                break;
            }
            free &= free - 1;
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    while a_matched != 0 {
        let (i, j) = (a_matched.trailing_zeros(), b_matched.trailing_zeros());
        if a[i as usize] != b[j as usize] {
            transpositions += 1;
        }
        a_matched &= a_matched - 1;
        b_matched &= b_matched - 1;
    }
    winkler(a, b, matches, transpositions)
}

/// Jaro–Winkler by scanning each window (any length).
fn jaro_winkler_scan(a: &[u8], b: &[u8]) -> f64 {
    const STACK: usize = 128;
    let mut a_stack = [false; STACK];
    let mut b_stack = [false; STACK];
    let (mut a_heap, mut b_heap) = (Vec::new(), Vec::new());
    let (a_matched, b_matched): (&mut [bool], &mut [bool]) = if a.len() <= STACK && b.len() <= STACK
    {
        (&mut a_stack[..a.len()], &mut b_stack[..b.len()])
    } else {
        a_heap.resize(a.len(), false);
        b_heap.resize(b.len(), false);
        (&mut a_heap, &mut b_heap)
    };
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut matches = 0usize;
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_matched[j] && b[j] == *ca {
                a_matched[i] = true;
                b_matched[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0;
    for (i, ca) in a.iter().enumerate() {
        if !a_matched[i] {
            continue;
        }
        while !b_matched[j] {
            j += 1;
        }
        if *ca != b[j] {
            transpositions += 1;
        }
        j += 1;
    }
    winkler(a, b, matches, transpositions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        NameKey::new(name).phonetic_joined().to_owned()
    }

    #[test]
    fn titles_degrees_and_connectors_go() {
        assert_eq!(
            canonical_tokens("H. Ahmad Hidayat, S.Pd."),
            ["AHMAD", "HIDAYAT"]
        );
        assert_eq!(
            canonical_tokens("Hj.Siti Aminah binti Rohman"),
            ["SITI", "AMINAH", "ROHMAN"]
        );
        assert_eq!(
            canonical_tokens("Drs. Bambang Susilo, M.M."),
            ["BAMBANG", "SUSILO"]
        );
        // A title alone is the name.
        assert_eq!(canonical_tokens("Haji"), ["HAJI"]);
    }

    #[test]
    fn abbreviations_of_muhammad_and_friends_agree() {
        let full = key("Muhammad Rizky");
        for variant in [
            "Muh. Rizky",
            "Moch. Rizky",
            "Mochammad Rizky",
            "Mohamad Rizky",
            "M. Rizky",
            "MHD Rizky",
            "Muhamad Rizki",
        ] {
            let v = key(variant);
            assert!(
                v == full || jaro_winkler(&v, &full) > 0.95,
                "{variant}: {v} vs {full}"
            );
        }
        assert_eq!(key("Abd. Rohman"), key("Abdul Rohman"));
        assert_eq!(key("Achmad Yusuf"), key("Ahmad Yusuf"));
    }

    #[test]
    fn old_spelling_and_new_spelling_agree() {
        assert_eq!(key("Djoko Soesilo"), key("Joko Susilo"));
        assert_eq!(key("Tjahjadi"), key("Cahyadi"));
        assert_eq!(key("Jusuf Hidajat"), key("Yusuf Hidayat"));
        assert_eq!(key("Njoman"), key("Nyoman"));
        assert_eq!(key("Chairul"), key("Khairul"));
        assert_eq!(key("Siti Aminah"), key("Siti Amina"));
    }

    #[test]
    fn transposed_parts_share_the_sorted_form() {
        assert_eq!(
            NameKey::new("Hidayat Asep").phonetic_sorted(),
            NameKey::new("Asep Hidayat").phonetic_sorted()
        );
    }

    #[test]
    fn jaro_winkler_by_bits_is_jaro_winkler_by_scanning() {
        use proptest::prelude::*;
        let word = proptest::collection::vec(
            prop_oneof![
                Just(b'A'),
                Just(b'N'),
                Just(b' '),
                Just(b'Q'),
                Just(b'1'),
                0x41u8..0x5b,
                any::<u8>()
            ],
            1..64,
        );
        proptest!(ProptestConfig::with_cases(1000), |(a in word.clone(), b in word)| {
            prop_assert_eq!(jaro_winkler_bits(&a, &b), jaro_winkler_scan(&a, &b));
        });
    }

    #[test]
    fn jaro_winkler_known_values() {
        assert!((jaro_winkler("MARTHA", "MARHTA") - 0.9611).abs() < 1e-3);
        assert!((jaro_winkler("DWAYNE", "DUANE") - 0.84).abs() < 1e-3);
        assert_eq!(jaro_winkler("ASEP", "ASEP"), 1.0);
        assert_eq!(jaro_winkler("", "ASEP"), 0.0);
        assert_eq!(jaro_winkler("ABC", "XYZ"), 0.0);
    }
}
