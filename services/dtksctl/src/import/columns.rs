//! The columns of each table of a proposal file, and the codes a coded column takes.

use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;

/// The columns of each table, with what goes in them (the template's `columns` sheet).
pub const HOUSEHOLD_COLUMNS: &[(&str, &str)] = &[
    (
        "household_ref",
        "your reference for the household, unique in the file (e.g. the SIKS-NG row id); required",
    ),
    (
        "kind",
        "ADD (new household), CHANGE or REMOVE; ADD when empty",
    ),
    (
        "change_type",
        "for CHANGE: NEW_MEMBER, DEATH, MOVED or CORRECTION",
    ),
    (
        "household_id",
        "for CHANGE and REMOVE: the DTKS household id",
    ),
    ("reason", "for CHANGE and REMOVE: why"),
    (
        "removal_reason",
        "for REMOVE: NOT_ELIGIBLE, MOVED_AWAY, DUPLICATE, ALL_DECEASED or NOT_FOUND",
    ),
    (
        "village_code",
        "Kemendagri village code, e.g. 32.04.05.2001; required",
    ),
    ("rt", "RT"),
    ("rw", "RW"),
    ("street", "street and house number"),
    ("postal_code", "postal code"),
    ("latitude", "decimal degrees, e.g. -6.9412"),
    ("longitude", "decimal degrees, e.g. 107.7573"),
    (
        "minutes_number",
        "musdes/muskel minutes (berita acara) number; required for musdes",
    ),
    (
        "minutes_date",
        "date of the deliberation, YYYY-MM-DD; required for musdes",
    ),
    (
        "minutes_attendees",
        "number of attendees; required for musdes",
    ),
    ("tenure", "status of the dwelling: see codes"),
    ("floor_area_m2", "floor area in m²"),
    ("floor", "floor material: see codes"),
    ("wall", "wall material: see codes"),
    ("roof", "roof material: see codes"),
    ("water", "drinking water source: see codes"),
    ("sanitation", "sanitation: see codes"),
    ("electricity", "electricity: see codes"),
    ("land_m2", "land owned, m²"),
    ("house_elsewhere", "owns a house elsewhere: 1/0"),
    ("motorcycles", "number of motorcycles"),
    ("cars", "number of cars"),
    ("livestock", "number of large livestock"),
    ("refrigerator", "owns a refrigerator: 1/0"),
    ("productive_business", "runs a productive business: 1/0"),
    ("savings", "savings in rupiah"),
    ("psks_potential", "PSKS potential, separated by ;"),
    (
        "assistance_history",
        "assistance received: PROGRAMME:YYYY-MM:AMOUNT, separated by ;",
    ),
];

pub const FAMILY_COLUMNS: &[(&str, &str)] = &[
    ("household_ref", "the household this family (KK) lives in"),
    ("family_no", "1, 2, … within the household"),
    ("kk_number", "16-digit family card (KK) number, as text"),
];

pub const PERSON_COLUMNS: &[(&str, &str)] = &[
    ("household_ref", "the household"),
    ("family_no", "the family (KK) within the household"),
    (
        "nik",
        "16-digit NIK as text; empty when the person has none yet",
    ),
    ("full_name", "full name; required"),
    ("birth_place", "place of birth"),
    ("birth_date", "YYYY-MM-DD; required"),
    ("sex", "MALE or FEMALE (or 1/2)"),
    (
        "relationship",
        "to the head of household: see codes; exactly one HEAD",
    ),
    ("marital_status", "see codes; required"),
    ("education", "highest level: see codes; required"),
    ("school_status", "see codes"),
    ("work_status", "see codes; required"),
    ("occupation", "occupation"),
    ("sector", "sector of work"),
    ("monthly_income", "monthly income in rupiah"),
    ("disability", "see codes; NONE when none; required"),
    ("chronic_illness", "1/0"),
    ("has_health_insurance", "1/0"),
    ("pregnant", "1/0"),
    (
        "undernourished",
        "child under five with a nutrition problem: 1/0",
    ),
    ("special_groups", "see codes, separated by ;"),
    ("skills", "skills (PSKS), separated by ;"),
    (
        "deceased",
        "1 when the person has died (for a DEATH change)",
    ),
];

pub(super) type NameOf = fn(i32) -> Option<&'static str>;

macro_rules! names {
    ($t:ty) => {
        (|code| <$t>::try_from(code).ok().map(|e| e.as_str_name())) as NameOf
    };
}

/// Coded columns: the column, the enum's name prefix and its names.
pub(super) fn coded_columns() -> Vec<(&'static str, &'static str, NameOf)> {
    vec![
        ("kind", "PROPOSAL_KIND_", names!(ev::ProposalKind)),
        ("change_type", "CHANGE_TYPE_", names!(ev::ChangeType)),
        (
            "removal_reason",
            "REMOVAL_REASON_",
            names!(ev::RemovalReason),
        ),
        ("tenure", "TENURE_", names!(pb::Tenure)),
        ("floor", "FLOOR_MATERIAL_", names!(pb::FloorMaterial)),
        ("wall", "WALL_MATERIAL_", names!(pb::WallMaterial)),
        ("roof", "ROOF_MATERIAL_", names!(pb::RoofMaterial)),
        ("water", "WATER_SOURCE_", names!(pb::WaterSource)),
        ("sanitation", "SANITATION_", names!(pb::Sanitation)),
        ("electricity", "ELECTRICITY_", names!(pb::Electricity)),
        ("sex", "SEX_", names!(pb::Sex)),
        ("relationship", "RELATIONSHIP_", names!(pb::Relationship)),
        (
            "marital_status",
            "MARITAL_STATUS_",
            names!(pb::MaritalStatus),
        ),
        ("education", "EDUCATION_LEVEL_", names!(pb::EducationLevel)),
        ("school_status", "SCHOOL_STATUS_", names!(pb::SchoolStatus)),
        ("work_status", "WORK_STATUS_", names!(pb::WorkStatus)),
        ("disability", "DISABILITY_", names!(pb::Disability)),
        ("special_groups", "SPECIAL_GROUP_", names!(pb::SpecialGroup)),
    ]
}

/// Every (code, short name) of a coded column, 1 upwards.
pub(super) fn codes_of(name_of: NameOf, prefix: &str) -> Vec<(i32, String)> {
    (1..64)
        .filter_map(|c| name_of(c).map(|n| (c, n.trim_start_matches(prefix).to_owned())))
        .collect()
}
