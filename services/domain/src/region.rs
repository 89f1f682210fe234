//! Kemendagri region codes (kode wilayah): `32` province, `32.04` regency or city,
//! `32.04.01` district (kecamatan), `32.04.01.2001` village (desa/kelurahan).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RegionLevel {
    Province,
    Regency,
    District,
    Village,
}

/// A syntactically valid region code. Whether it exists is a question for the reference
/// data, not for the parser.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a region code (expected 32, 32.04, 32.04.01 or 32.04.01.2001)")]
pub struct RegionCodeError(String);

impl RegionCode {
    pub fn parse(input: &str) -> Result<Self, RegionCodeError> {
        let parts: Vec<&str> = input.split('.').collect();
        let widths = [2usize, 2, 2, 4];
        let ok = !parts.is_empty()
            && parts.len() <= 4
            && parts
                .iter()
                .zip(widths)
                .all(|(p, w)| p.len() == w && p.bytes().all(|b| b.is_ascii_digit()))
            && parts[0] != "00";
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            // A refusal names what it refused, but never echoes more than a few
            // characters of it back.
            let shown: String = input.chars().take(32).collect();
            let more = if input.chars().count() > 32 {
                "…"
            } else {
                ""
            };
            Err(RegionCodeError(format!("{shown}{more}")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn level(&self) -> RegionLevel {
        match self.0.len() {
            2 => RegionLevel::Province,
            5 => RegionLevel::Regency,
            8 => RegionLevel::District,
            _ => RegionLevel::Village,
        }
    }

    /// The enclosing region, `None` for a province.
    pub fn parent(&self) -> Option<RegionCode> {
        self.0
            .rfind('.')
            .map(|i| RegionCode(self.0[..i].to_owned()))
    }

    /// This region or its ancestor at `level` (`None` when `level` is finer than self).
    pub fn at_level(&self, level: RegionLevel) -> Option<RegionCode> {
        let len = match level {
            RegionLevel::Province => 2,
            RegionLevel::Regency => 5,
            RegionLevel::District => 8,
            RegionLevel::Village => 13,
        };
        (self.0.len() >= len).then(|| RegionCode(self.0[..len].to_owned()))
    }

    /// Whether `other` lies inside (or is) this region.
    pub fn contains(&self, other: &RegionCode) -> bool {
        other.0 == self.0
            || (other.0.starts_with(&self.0) && other.0.as_bytes()[self.0.len()] == b'.')
    }

    /// The six digits that open a NIK or KK number: province, regency, district.
    pub fn nik_prefix(&self) -> Option<String> {
        self.at_level(RegionLevel::District)
            .map(|d| d.0.replace('.', ""))
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RegionCode {
    type Err = RegionCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

checked_text!(RegionCode, RegionCodeError);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn levels_and_hierarchy() {
        let village = RegionCode::parse("32.04.01.2001").unwrap();
        assert_eq!(village.level(), RegionLevel::Village);
        assert_eq!(village.parent().unwrap().as_str(), "32.04.01");
        assert_eq!(
            village.at_level(RegionLevel::Regency).unwrap().as_str(),
            "32.04"
        );
        assert_eq!(village.nik_prefix().unwrap(), "320401");
        let regency = RegionCode::parse("32.04").unwrap();
        assert!(regency.contains(&village));
        assert!(RegionCode::parse("32.0").is_err());
        assert!(!RegionCode::parse("32.05").unwrap().contains(&village));
        assert!(RegionCode::parse("00").is_err());
        assert!(RegionCode::parse("32.04.01.2001.1").is_err());
        assert!(RegionCode::parse("").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = RegionCode::parse(&s);
        }

        #[test]
        fn valid_codes_round_trip(p in 11u32..99, r in 1u32..99, d in 1u32..99, v in 1000u32..9999) {
            let text = format!("{p:02}.{r:02}.{d:02}.{v:04}");
            let code = RegionCode::parse(&text).unwrap();
            prop_assert_eq!(code.as_str(), text.as_str());
            let parent = code.parent().unwrap();
            prop_assert!(parent.contains(&code));
            prop_assert_eq!(parent.level(), RegionLevel::District);
        }
    }
}
