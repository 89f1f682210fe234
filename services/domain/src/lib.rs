//! The DTKS domain: identity numbers (NIK, KK), Kemendagri region codes, the household
//! (ruta) → family (KK) → person model with its attribute groups, the five data-integrity
//! criteria of Permensos 3/2021 (Pasal 8 ayat 3), and the proxy-means-test welfare score.
//!
//! Plain Rust only: no I/O, no async, no gRPC or database types. Every service parses its
//! input into these types at its edge and keeps its rules here.

/// A text newtype checked by its `parse`: `TryFrom<String>` through it and back into
/// `String`, which serde's `try_from`/`into` use, so a stored or received value is
/// checked like any other.
macro_rules! checked_text {
    ($ty:ident, $error:ty) => {
        impl TryFrom<String> for $ty {
            type Error = $error;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
    };
}

pub mod codes;
pub mod consistency;
#[cfg(test)]
mod extremes;
pub mod household;
pub mod integrity;
pub mod linkage;
pub mod minutes;
pub mod nik;
pub mod period;
pub mod pmt;
pub mod ranking;
pub mod region;
pub mod violation;

pub use household::{Family, Household, Person};
pub use nik::{KkNumber, Nik, NikError};
pub use period::Period;
pub use region::{RegionCode, RegionLevel};
pub use violation::{FieldViolation, Violations};
