//! A person as linkage compares them, and the comparison: one agreement level per field.

use chrono::{Datelike, NaiveDate};

use super::names::{NameKey, jaro_winkler};

/// The fields compared, in vector order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name = 0,
    BirthDate = 1,
    Sex = 2,
    Region = 3,
}

pub const FIELDS: [Field; 4] = [Field::Name, Field::BirthDate, Field::Sex, Field::Region];

/// The agreement levels of each field, best first.
pub const LEVELS: [&[&str]; 4] = [
    &[
        "exact",
        "same spelling variant",
        "same parts in another order",
        "close spelling",
        "one name contains the other",
        "different",
    ],
    &[
        "exact",
        "one-digit typo or day/month swapped",
        "within 13 months",
        "different",
    ],
    &["same", "different"],
    &[
        "same village",
        "same district",
        "same regency",
        "different regency",
    ],
];

impl Field {
    pub fn label(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::BirthDate => "birth date",
            Field::Sex => "sex",
            Field::Region => "region",
        }
    }
}

/// A field missing on either side.
pub const NULL: u8 = u8::MAX;

/// One agreement level per field of [`FIELDS`].
pub type Vector = [u8; 4];

/// The identifying fields of one person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Shared: one spelling reduced once serves every record that carries it.
    pub name: std::sync::Arc<NameKey>,
    pub birth_date: Option<NaiveDate>,
    /// 1 male, 2 female.
    pub sex: Option<u8>,
    /// Village code, `PP.RR.DD.VVVV`, held in the record itself: comparing millions of
    /// pairs then reads no memory elsewhere for it.
    pub village: Option<Village>,
    /// An identifier (the NIK) where one is known to be right: pairs that share it are
    /// labelled matches, from which m can be learned directly. Never compared.
    pub label: Option<String>,
}

impl Record {
    pub fn new(
        name: &str,
        birth_date: Option<NaiveDate>,
        sex: Option<u8>,
        village: Option<&str>,
    ) -> Self {
        Self::with_name(
            std::sync::Arc::new(NameKey::new(name)),
            birth_date,
            sex,
            village,
        )
    }

    /// As [`Record::new`], with the name already reduced.
    pub fn with_name(
        name: std::sync::Arc<NameKey>,
        birth_date: Option<NaiveDate>,
        sex: Option<u8>,
        village: Option<&str>,
    ) -> Self {
        Self {
            name,
            birth_date,
            sex: sex.filter(|s| matches!(s, 1 | 2)),
            village: village.filter(|v| !v.is_empty()).map(Village::new),
            label: None,
        }
    }

    /// The same record carrying `label`.
    pub fn labelled(mut self, label: Option<&str>) -> Self {
        self.label = label.filter(|l| !l.is_empty()).map(str::to_owned);
        self
    }
}

/// A village code of at most [`Village::MAX`] bytes (a valid one has 13), held inline;
/// a longer text keeps its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Village {
    bytes: [u8; Village::MAX],
    len: u8,
}

impl Village {
    pub const MAX: usize = 16;

    pub fn new(code: &str) -> Self {
        let code = &code[..code.floor_char_boundary(Self::MAX)];
        let mut bytes = [0u8; Self::MAX];
        bytes[..code.len()].copy_from_slice(code.as_bytes());
        Self {
            bytes,
            len: code.len() as u8,
        }
    }
}

impl std::ops::Deref for Village {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Village {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// Compares two records field by field.
pub fn compare(a: &Record, b: &Record) -> Vector {
    [
        if std::sync::Arc::ptr_eq(&a.name, &b.name) && !a.name.is_empty() {
            0
        } else {
            compare_names(&a.name, &b.name)
        },
        match (a.birth_date, b.birth_date) {
            (Some(x), Some(y)) => compare_dates(x, y),
            _ => NULL,
        },
        match (a.sex, b.sex) {
            (Some(x), Some(y)) => u8::from(x != y),
            _ => NULL,
        },
        match (&a.village, &b.village) {
            (Some(x), Some(y)) => compare_regions(
                &x.bytes[..usize::from(x.len)],
                &y.bytes[..usize::from(y.len)],
            ),
            _ => NULL,
        },
    ]
}

fn compare_names(a: &NameKey, b: &NameKey) -> u8 {
    if a.is_empty() || b.is_empty() {
        return NULL;
    }
    if a.same_tokens(b) {
        return 0;
    }
    if a.same_phonetic(b) {
        return 1;
    }
    if a.same_parts(b) {
        return 2;
    }
    let (ja, jb) = (a.phonetic_joined(), b.phonetic_joined());
    let (sa, sb) = (a.phonetic_sorted(), b.phonetic_sorted());
    let close = jaro_winkler(ja, jb);
    if close >= 0.92 || jaro_winkler(sa, sb) >= 0.92 {
        return 3;
    }
    let (short, long) = if a.phonetic.len() <= b.phonetic.len() {
        (a, b)
    } else {
        (b, a)
    };
    let contained = short.parts_within(long);
    if contained || close >= 0.80 {
        return 4;
    }
    5
}

fn compare_dates(a: NaiveDate, b: NaiveDate) -> u8 {
    if a == b {
        return 0;
    }
    // The eight digits of YYYYMMDD, without formatting.
    let digits = |d: NaiveDate| {
        let n = d.year().rem_euclid(10_000) as u32 * 10_000 + d.month() * 100 + d.day();
        let mut out = [0u8; 8];
        let mut rest = n;
        for slot in out.iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        out
    };
    let (x, y) = (digits(a), digits(b));
    let mut differing = [0usize; 8];
    let mut count = 0;
    for i in 0..8 {
        if x[i] != y[i] {
            differing[count] = i;
            count += 1;
        }
    }
    let one_digit = count == 1;
    let adjacent_swap = count == 2
        && differing[1] == differing[0] + 1
        && x[differing[0]] == y[differing[1]]
        && x[differing[1]] == y[differing[0]];
    let day_month_swapped = a.year() == b.year() && a.month() == b.day() && a.day() == b.month();
    if one_digit || adjacent_swap || day_month_swapped {
        return 1;
    }
    if (a - b).num_days().abs() <= 400 {
        return 2;
    }
    3
}

fn compare_regions(a: &[u8], b: &[u8]) -> u8 {
    // The shared prefix, byte by byte: codes are a dozen bytes, too short for memcmp.
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() && common == b.len() {
        0
    } else if common >= 8 {
        1
    } else if common >= 5 {
        2
    } else {
        3
    }
}
