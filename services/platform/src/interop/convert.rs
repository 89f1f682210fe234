//! Contract ↔ domain conversion, done once at the gRPC and event edge. Parsing collects
//! every violation with its field path (`household.families[0].members[1].nik`).

use chrono::NaiveDate;
use dtks_domain::household::*;
use dtks_domain::{KkNumber, Nik, RegionCode, Violations};
use dtks_proto::common::v1 as pb;

/// The calendar date a contract date stands for, if it is one.
pub fn naive_date(d: &pb::Date) -> Option<NaiveDate> {
    u32::try_from(d.month)
        .ok()
        .zip(u32::try_from(d.day).ok())
        .and_then(|(m, day)| NaiveDate::from_ymd_opt(d.year, m, day))
}

fn date(d: Option<&pb::Date>, (path, name): (&str, &str), v: &mut Violations) -> Option<NaiveDate> {
    let field = || format!("{path}.{name}");
    match d {
        None => {
            v.push(field(), "is required");
            None
        }
        Some(d) => {
            let parsed = naive_date(d);
            if parsed.is_none() {
                v.push(
                    field(),
                    format!(
                        "{:04}-{:02}-{:02} is not a calendar date",
                        d.year, d.month, d.day
                    ),
                );
            }
            parsed
        }
    }
}

/// A coded attribute; the field path (`{path}.{name}`) is only built for a violation.
fn coded<T>(
    code: i32,
    (path, name): (&str, &str),
    required: bool,
    from: fn(i32) -> Result<Option<T>, String>,
    v: &mut Violations,
) -> Option<T> {
    match from(code) {
        Ok(Some(value)) => Some(value),
        Ok(None) => {
            if required {
                v.push(format!("{path}.{name}"), "is required");
            }
            None
        }
        Err(e) => {
            v.push(format!("{path}.{name}"), e);
            None
        }
    }
}

fn person(p: &pb::Person, path: &str, v: &mut Violations) -> Option<Person> {
    let nik = if p.nik.is_empty() {
        Some(None)
    } else {
        match Nik::parse(&p.nik) {
            Ok(nik) => Some(Some(nik)),
            Err(e) => {
                v.push(format!("{path}.nik"), e.to_string());
                None
            }
        }
    };
    if p.full_name.trim().is_empty() {
        v.push(format!("{path}.full_name"), "is required");
    } else if p.full_name.chars().count() > 120 {
        v.push(
            format!("{path}.full_name"),
            "must be at most 120 characters",
        );
    }
    let birth_date = date(p.birth_date.as_ref(), (path, "birth_date"), v);
    let sex = coded(p.sex, (path, "sex"), true, Sex::from_code, v);
    let relationship = coded(
        p.relationship,
        (path, "relationship"),
        true,
        Relationship::from_code,
        v,
    );
    let marital_status = coded(
        p.marital_status,
        (path, "marital_status"),
        false,
        MaritalStatus::from_code,
        v,
    );
    let education = coded(
        p.education,
        (path, "education"),
        false,
        EducationLevel::from_code,
        v,
    );
    let school_status = coded(
        p.school_status,
        (path, "school_status"),
        false,
        SchoolStatus::from_code,
        v,
    );
    let work_status = coded(
        p.work_status,
        (path, "work_status"),
        false,
        WorkStatus::from_code,
        v,
    );
    if p.monthly_income < 0 {
        v.push(format!("{path}.monthly_income"), "must not be negative");
    }
    let health = p.health.unwrap_or_default();
    let disability = coded(
        health.disability,
        (path, "health.disability"),
        false,
        Disability::from_code,
        v,
    );
    let mut special_groups = Vec::new();
    for (i, g) in p.special_groups.iter().enumerate() {
        if let Some(g) = coded(
            *g,
            (path, &format!("special_groups[{i}]")),
            true,
            SpecialGroup::from_code,
            v,
        ) {
            special_groups.push(g);
        }
    }
    Some(Person {
        nik: nik?,
        full_name: p.full_name.trim().to_owned(),
        birth_place: p.birth_place.clone(),
        birth_date: birth_date?,
        sex: sex?,
        marital_status,
        relationship: relationship?,
        education,
        school_status,
        work_status,
        occupation: p.occupation.clone(),
        sector: p.sector.clone(),
        monthly_income: p.monthly_income,
        health: Health {
            chronic_illness: health.chronic_illness,
            disability,
            has_health_insurance: health.has_health_insurance,
            pregnant: health.pregnant,
            undernourished: health.undernourished,
        },
        special_groups,
        skills: p.skills.clone(),
        deceased: p.deceased,
    })
}

/// Parses a contract household; `Err` lists every violation.
pub fn household_from_proto(h: &pb::Household, today: NaiveDate) -> Result<Household, Violations> {
    let mut v = Violations::default();
    let address = h.address.clone().unwrap_or_default();
    let village = if address.village_code.is_empty() {
        v.push("household.address.village_code", "is required");
        None
    } else {
        v.check(
            "household.address.village_code",
            RegionCode::parse(&address.village_code),
        )
    };
    if let Some(code) = &village
        && code.level() != dtks_domain::RegionLevel::Village
    {
        v.push(
            "household.address.village_code",
            "must be a village (desa/kelurahan) code such as 32.04.01.2001",
        );
    }
    if h.families.len() > 20 {
        v.push("household.families", "at most 20 families in one household");
    }
    let mut families = Vec::new();
    for (fi, f) in h.families.iter().enumerate() {
        let path = format!("household.families[{fi}]");
        let kk_number = if f.kk_number.is_empty() {
            None
        } else {
            v.check(&format!("{path}.kk_number"), KkNumber::parse(&f.kk_number))
        };
        if f.members.len() > 30 {
            v.push(
                format!("{path}.members"),
                "at most 30 members in one family",
            );
        }
        let members: Vec<Person> = f
            .members
            .iter()
            .enumerate()
            .filter_map(|(mi, p)| person(p, &format!("{path}.members[{mi}]"), &mut v))
            .collect();
        families.push(Family { kk_number, members });
    }
    let d = h.dwelling.unwrap_or_default();
    let dwelling = Dwelling {
        tenure: coded(
            d.tenure,
            ("household.dwelling", "tenure"),
            false,
            Tenure::from_code,
            &mut v,
        ),
        floor_area_m2: d.floor_area_m2,
        floor: coded(
            d.floor,
            ("household.dwelling", "floor"),
            false,
            FloorMaterial::from_code,
            &mut v,
        ),
        wall: coded(
            d.wall,
            ("household.dwelling", "wall"),
            false,
            WallMaterial::from_code,
            &mut v,
        ),
        roof: coded(
            d.roof,
            ("household.dwelling", "roof"),
            false,
            RoofMaterial::from_code,
            &mut v,
        ),
        water: coded(
            d.water,
            ("household.dwelling", "water"),
            false,
            WaterSource::from_code,
            &mut v,
        ),
        sanitation: coded(
            d.sanitation,
            ("household.dwelling", "sanitation"),
            false,
            Sanitation::from_code,
            &mut v,
        ),
        electricity: coded(
            d.electricity,
            ("household.dwelling", "electricity"),
            false,
            Electricity::from_code,
            &mut v,
        ),
    };
    if !(0.0..=10_000.0).contains(&d.floor_area_m2) || d.floor_area_m2.is_nan() {
        v.push(
            "household.dwelling.floor_area_m2",
            "must be between 0 and 10000",
        );
    }
    let a = h.assets.unwrap_or_default();
    let household = Household {
        household_id: (!h.household_id.is_empty()).then(|| h.household_id.clone()),
        address: Address {
            village,
            rt: address.rt,
            rw: address.rw,
            street: address.street,
            postal_code: address.postal_code,
        },
        location: h.location.map(|g| GeoPoint {
            latitude: g.latitude,
            longitude: g.longitude,
        }),
        families,
        dwelling,
        assets: Assets {
            land_m2: a.land_m2,
            house_elsewhere: a.house_elsewhere,
            motorcycles: a.motorcycles,
            cars: a.cars,
            livestock: a.livestock,
            refrigerator: a.refrigerator,
            productive_business: a.productive_business,
            savings: a.savings,
        },
        assistance_history: h
            .assistance_history
            .iter()
            .map(|r| AssistanceRecord {
                programme_code: r.programme_code.clone(),
                year: r.period.map(|p| p.year).unwrap_or_default(),
                month: r.period.map(|p| p.month as u32).unwrap_or_default(),
                amount: r.amount,
            })
            .collect(),
        psks_potential: h.psks_potential.clone(),
    };
    if !v.is_empty() {
        return Err(v);
    }
    household
        .structural_violations(today)
        .into_result(household)
}

pub fn pb_date(d: NaiveDate) -> pb::Date {
    use chrono::Datelike;
    pb::Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    }
}

fn code<T: Copy>(value: Option<T>, f: fn(T) -> i32) -> i32 {
    value.map(f).unwrap_or(0)
}

/// A musdes proposal to add `household`, keyed by its external `reference` (also its
/// idempotency key), with the minutes numbered `minutes`, held on `held` by 30
/// villagers: what `dtksctl cycle` and the tests send for a generated household.
pub fn musdes_proposal(
    household: &Household,
    reference: &str,
    minutes: &str,
    held: NaiveDate,
) -> dtks_proto::intake::v1::SubmitProposalRequest {
    use dtks_proto::events::v1::{Channel, ProposalKind};
    dtks_proto::intake::v1::SubmitProposalRequest {
        idempotency_key: reference.to_owned(),
        channel: Channel::Musdes as i32,
        kind: ProposalKind::Add as i32,
        external_reference: reference.to_owned(),
        household: Some(household_to_proto(household)),
        minutes: Some(dtks_proto::intake::v1::Minutes {
            number: minutes.to_owned(),
            date: Some(pb_date(held)),
            attendees: 30,
        }),
        ..Default::default()
    }
}

pub fn household_to_proto(h: &Household) -> pb::Household {
    pb::Household {
        household_id: h.household_id.clone().unwrap_or_default(),
        address: Some(pb::Address {
            village_code: h
                .address
                .village
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            rt: h.address.rt.clone(),
            rw: h.address.rw.clone(),
            street: h.address.street.clone(),
            postal_code: h.address.postal_code.clone(),
        }),
        location: h.location.map(|g| pb::GeoPoint {
            latitude: g.latitude,
            longitude: g.longitude,
        }),
        families: h
            .families
            .iter()
            .map(|f| pb::Family {
                kk_number: f
                    .kk_number
                    .as_ref()
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_default(),
                members: f
                    .members
                    .iter()
                    .map(|p| pb::Person {
                        nik: p
                            .nik
                            .as_ref()
                            .map(|n| n.as_str().to_owned())
                            .unwrap_or_default(),
                        full_name: p.full_name.clone(),
                        birth_place: p.birth_place.clone(),
                        birth_date: Some(pb_date(p.birth_date)),
                        sex: p.sex.code(),
                        marital_status: code(p.marital_status, MaritalStatus::code),
                        relationship: p.relationship.code(),
                        education: code(p.education, EducationLevel::code),
                        school_status: code(p.school_status, SchoolStatus::code),
                        work_status: code(p.work_status, WorkStatus::code),
                        occupation: p.occupation.clone(),
                        sector: p.sector.clone(),
                        monthly_income: p.monthly_income,
                        health: Some(pb::Health {
                            chronic_illness: p.health.chronic_illness,
                            disability: code(p.health.disability, Disability::code),
                            has_health_insurance: p.health.has_health_insurance,
                            pregnant: p.health.pregnant,
                            undernourished: p.health.undernourished,
                        }),
                        special_groups: p.special_groups.iter().map(|g| g.code()).collect(),
                        skills: p.skills.clone(),
                        deceased: p.deceased,
                    })
                    .collect(),
            })
            .collect(),
        dwelling: Some(pb::Dwelling {
            tenure: code(h.dwelling.tenure, Tenure::code),
            floor_area_m2: h.dwelling.floor_area_m2,
            floor: code(h.dwelling.floor, FloorMaterial::code),
            wall: code(h.dwelling.wall, WallMaterial::code),
            roof: code(h.dwelling.roof, RoofMaterial::code),
            water: code(h.dwelling.water, WaterSource::code),
            sanitation: code(h.dwelling.sanitation, Sanitation::code),
            electricity: code(h.dwelling.electricity, Electricity::code),
        }),
        assets: Some(pb::Assets {
            land_m2: h.assets.land_m2,
            house_elsewhere: h.assets.house_elsewhere,
            motorcycles: h.assets.motorcycles,
            cars: h.assets.cars,
            livestock: h.assets.livestock,
            refrigerator: h.assets.refrigerator,
            productive_business: h.assets.productive_business,
            savings: h.assets.savings,
        }),
        assistance_history: h
            .assistance_history
            .iter()
            .map(|r| pb::AssistanceRecord {
                programme_code: r.programme_code.clone(),
                period: Some(pb::Period {
                    year: r.year,
                    month: r.month as i32,
                }),
                amount: r.amount,
            })
            .collect(),
        psks_potential: h.psks_potential.clone(),
    }
}

/// [`period_key`] for a month that must have begun by `now` (the month to determine, the
/// list to build): a month in the future is refused, naming the current one.
pub fn begun_period_key(
    p: Option<&pb::Period>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(i32, i32), tonic::Status> {
    let (year, month) = period_key(p)?;
    let asked = dtks_domain::Period::new(year, month as u32);
    let current = dtks_domain::Period::containing(now);
    if let (Some(asked), Some(current)) = (asked, current)
        && asked > current
    {
        return Err(crate::grpc::invalid_field(
            "period",
            format!("{asked} has not begun: the current month is {current}"),
        ));
    }
    Ok((year, month))
}

pub fn period_key(p: Option<&pb::Period>) -> Result<(i32, i32), tonic::Status> {
    match p {
        Some(p) if (2000..=2100).contains(&p.year) && (1..=12).contains(&p.month) => {
            Ok((p.year, p.month))
        }
        _ => Err(crate::grpc::invalid_field(
            "period",
            "a year 2000..2100 and a month 1..12 are required",
        )),
    }
}
