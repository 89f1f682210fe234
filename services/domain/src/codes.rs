//! The categorical attributes of persons and dwellings, each with the numeric code the
//! `dtks.common.v1` contract gives it, so that the gRPC edge converts them by code
//! without a table per enum. The household model re-exports them.

use serde::{Deserialize, Serialize};

/// Declares a categorical attribute with its contract code; code 0 (unspecified) is not a
/// value of the enum, so a missing attribute is `None` in the model.
macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($variant = $code),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value for a contract code; `Ok(None)` for 0 (unspecified).
            pub fn from_code(code: i32) -> Result<Option<Self>, String> {
                match code {
                    0 => Ok(None),
                    $($code => Ok(Some($name::$variant)),)+
                    other => Err(format!("{} is not a valid {} code", other, stringify!($name))),
                }
            }

            pub fn code(self) -> i32 {
                self as i32
            }
        }
    };
}

coded_enum!(Sex { Male = 1, Female = 2 });
coded_enum!(
    /// Relationship to the head of household (hubungan dengan KRT).
    Relationship { Head = 1, Spouse = 2, Child = 3, ChildInLaw = 4, Grandchild = 5, Parent = 6, OtherRelative = 7, Other = 8 }
);
coded_enum!(MaritalStatus { Single = 1, Married = 2, Divorced = 3, Widowed = 4 });
coded_enum!(EducationLevel { None = 1, Primary = 2, Junior = 3, Senior = 4, Tertiary = 5 });
coded_enum!(SchoolStatus { Never = 1, Attending = 2, Left = 3 });
coded_enum!(WorkStatus { NotWorking = 1, Informal = 2, Formal = 3, SelfEmployed = 4 });
coded_enum!(Disability { None = 1, Physical = 2, Sensory = 3, Intellectual = 4, Mental = 5, Multiple = 6, Severe = 7 });
coded_enum!(SpecialGroup { ElderlyAlone = 1, Orphan = 2, DisasterVictim = 3, FormerPrisoner = 4, RemoteIndigenous = 5, Homeless = 6 });
coded_enum!(Tenure { Owned = 1, Rented = 2, RentFree = 3, Other = 4 });
coded_enum!(FloorMaterial { Earth = 1, BambooWood = 2, Cement = 3, Tile = 4 });
coded_enum!(WallMaterial { Bamboo = 1, Wood = 2, BrickUnplastered = 3, BrickPlastered = 4 });
coded_enum!(RoofMaterial { Thatch = 1, Zinc = 2, Tile = 3, Concrete = 4 });
coded_enum!(WaterSource { Unprotected = 1, ProtectedWell = 2, Piped = 3, Bottled = 4 });
coded_enum!(Sanitation { None = 1, Shared = 2, Private = 3 });
coded_enum!(Electricity { None = 1, NonPln = 2, Pln450 = 3, Pln900 = 4, PlnAbove900 = 5 });
