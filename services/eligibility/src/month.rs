//! The determined month as lists read it (*bulan penetapan*): every household of a
//! month's snapshot, in national-rank order, with exactly the fields a programme rule
//! may name, held column by column in memory so that a rule runs over ten million
//! households in about a second and a list never goes back to the determination service.
//!
//! Categorical fields are kept as their contract codes; a rule reads them as the same
//! lower-case words [`crate::household::RuleHousehold`] gives (`earth`, `pln450`), from one
//! table per field.

use std::collections::HashMap;

use chrono::NaiveDate;
use dtks_domain::household::{self as dom, Household, Person};

use crate::household::{self as rules, RuleHousehold, Standing};

/// A categorical field of a person or a dwelling, as the month keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coded {
    Sex,
    Relationship,
    MaritalStatus,
    Education,
    SchoolStatus,
    WorkStatus,
    Disability,
    SpecialGroup,
    Tenure,
    Floor,
    Wall,
    Roof,
    Water,
    Sanitation,
    Electricity,
}

const CODED: usize = 15;

/// The word of every code of every categorical field (`words[field][code]`; code 0, and
/// the disability `none`, read as the empty word).
pub struct Words {
    tables: [Vec<String>; CODED],
}

fn table<T: Copy + std::fmt::Debug>(all: &[T], code: impl Fn(T) -> i32) -> Vec<String> {
    let top = all.iter().map(|v| code(*v)).max().unwrap_or(0).max(0) as usize;
    let mut words = vec![String::new(); top + 1];
    for v in all {
        words[code(*v) as usize] = rules::word(Some(*v));
    }
    words
}

impl Words {
    fn new() -> Self {
        let mut disability = table(dom::Disability::ALL, |v| v.code());
        disability[dom::Disability::None.code() as usize] = String::new();
        Self {
            tables: [
                table(dom::Sex::ALL, |v| v.code()),
                table(dom::Relationship::ALL, |v| v.code()),
                table(dom::MaritalStatus::ALL, |v| v.code()),
                table(dom::EducationLevel::ALL, |v| v.code()),
                table(dom::SchoolStatus::ALL, |v| v.code()),
                table(dom::WorkStatus::ALL, |v| v.code()),
                disability,
                table(dom::SpecialGroup::ALL, |v| v.code()),
                table(dom::Tenure::ALL, |v| v.code()),
                table(dom::FloorMaterial::ALL, |v| v.code()),
                table(dom::WallMaterial::ALL, |v| v.code()),
                table(dom::RoofMaterial::ALL, |v| v.code()),
                table(dom::WaterSource::ALL, |v| v.code()),
                table(dom::Sanitation::ALL, |v| v.code()),
                table(dom::Electricity::ALL, |v| v.code()),
            ],
        }
    }

    pub fn word(&self, field: Coded, code: u8) -> &str {
        self.tables[field as usize]
            .get(code as usize)
            .map_or("", String::as_str)
    }
}

/// `flag` when `on`.
fn flag(on: bool, flag: u8) -> u8 {
    if on { flag } else { 0 }
}

fn code<T: Copy>(value: Option<T>, code: impl Fn(T) -> i32) -> u8 {
    value.map_or(0, |v| code(v) as u8)
}

/// Person flags.
pub const CHRONIC: u8 = 1;
pub const INSURED: u8 = 2;
pub const PREGNANT: u8 = 4;
pub const UNDERNOURISHED: u8 = 8;
/// Asset flags.
pub const HOUSE_ELSEWHERE: u8 = 1;
pub const REFRIGERATOR: u8 = 2;
pub const BUSINESS: u8 = 4;

/// Every household of one determined month, in national-rank order.
pub struct Month {
    pub year: i32,
    pub month: u32,
    /// The day ages are counted on (the first of the month).
    pub on: NaiveDate,
    /// How long loading the month took.
    pub load_seconds: f64,
    pub words: Words,
    // Households.
    pub ids: Vec<uuid::Uuid>,
    pub ranks: Vec<u64>,
    pub deciles: Vec<u8>,
    pub province_deciles: Vec<u8>,
    pub scores: Vec<f64>,
    /// Index of the household's village in `places`.
    pub villages: Vec<u32>,
    /// Distinct village codes, and the index of each one's regency in `regencies`.
    pub places: Vec<String>,
    pub place_regency: Vec<u32>,
    pub regencies: Vec<String>,
    place_index: HashMap<String, u32>,
    /// The head of household's NIK and name (`heads[i]..heads[i + 1]` of `head_text`,
    /// NIK then a tab then the name; both empty when there is no head).
    heads: Vec<u64>,
    head_text: String,
    /// `dwelling[field]` for tenure, floor, wall, roof, water, sanitation, electricity.
    pub dwelling: [Vec<u8>; 7],
    pub floor_area: Vec<f64>,
    pub land: Vec<f64>,
    pub asset_flags: Vec<u8>,
    /// Motorcycles, cars, livestock.
    pub asset_counts: Vec<[u32; 3]>,
    pub savings: Vec<i64>,
    /// Families of household `i`: `family_start[i]..family_start[i + 1]`; persons of
    /// family `f`: `person_start[f]..person_start[f + 1]` (one family's persons follow
    /// the previous family's, so a household's persons are one range too).
    pub family_start: Vec<u32>,
    pub person_start: Vec<u32>,
    /// Assistance programmes of household `i`: `programme_start[i]..programme_start[i + 1]`
    /// of `programme_ids`, each an index into `programme_codes`.
    pub programme_start: Vec<u32>,
    pub programme_ids: Vec<u16>,
    pub programme_codes: Vec<String>,
    // Persons.
    pub ages: Vec<i32>,
    /// `person_codes[field]` for sex, relationship, marital status, education, school
    /// status, work status, disability.
    pub person_codes: [Vec<u8>; 7],
    pub incomes: Vec<i64>,
    pub person_flags: Vec<u8>,
    /// Special groups of person `p`: `group_start[p]..group_start[p + 1]` of `groups`.
    pub group_start: Vec<u32>,
    pub groups: Vec<u8>,
}

/// The dwelling fields in `Month::dwelling` order.
pub const DWELLING: [Coded; 7] = [
    Coded::Tenure,
    Coded::Floor,
    Coded::Wall,
    Coded::Roof,
    Coded::Water,
    Coded::Sanitation,
    Coded::Electricity,
];
/// The person fields in `Month::person_codes` order.
pub const PERSON: [Coded; 7] = [
    Coded::Sex,
    Coded::Relationship,
    Coded::MaritalStatus,
    Coded::Education,
    Coded::SchoolStatus,
    Coded::WorkStatus,
    Coded::Disability,
];

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        let on = NaiveDate::from_ymd_opt(year, month, 1)?;
        Some(Self {
            year,
            month,
            on,
            load_seconds: 0.0,
            words: Words::new(),
            ids: Vec::new(),
            ranks: Vec::new(),
            deciles: Vec::new(),
            province_deciles: Vec::new(),
            scores: Vec::new(),
            villages: Vec::new(),
            places: Vec::new(),
            place_regency: Vec::new(),
            regencies: Vec::new(),
            place_index: HashMap::new(),
            heads: vec![0],
            head_text: String::new(),
            dwelling: Default::default(),
            floor_area: Vec::new(),
            land: Vec::new(),
            asset_flags: Vec::new(),
            asset_counts: Vec::new(),
            savings: Vec::new(),
            family_start: vec![0],
            person_start: vec![0],
            programme_start: vec![0],
            programme_ids: Vec::new(),
            programme_codes: Vec::new(),
            ages: Vec::new(),
            person_codes: Default::default(),
            incomes: Vec::new(),
            person_flags: Vec::new(),
            group_start: vec![0],
            groups: Vec::new(),
        })
    }

    pub fn households(&self) -> usize {
        self.ids.len()
    }

    fn place(&mut self, code: &str) -> u32 {
        if let Some(&i) = self.place_index.get(code) {
            return i;
        }
        let regency = code.get(..5).unwrap_or(code);
        let r = match self.regencies.iter().position(|r| r == regency) {
            Some(r) => r as u32,
            None => {
                self.regencies.push(regency.to_owned());
                (self.regencies.len() - 1) as u32
            }
        };
        let i = self.places.len() as u32;
        self.places.push(code.to_owned());
        self.place_regency.push(r);
        self.place_index.insert(code.to_owned(), i);
        i
    }

    fn programme(&mut self, code: &str) -> u16 {
        match self.programme_codes.iter().position(|c| c == code) {
            Some(i) => i as u16,
            None => {
                self.programme_codes.push(code.to_owned());
                (self.programme_codes.len() - 1) as u16
            }
        }
    }

    fn push_person(&mut self, p: &Person) {
        self.ages.push(p.age_on(self.on));
        let codes = [
            p.sex.code() as u8,
            p.relationship.code() as u8,
            code(p.marital_status, |v| v.code()),
            code(p.education, |v| v.code()),
            code(p.school_status, |v| v.code()),
            code(p.work_status, |v| v.code()),
            code(p.health.disability, |v| v.code()),
        ];
        for (column, c) in self.person_codes.iter_mut().zip(codes) {
            column.push(c);
        }
        self.incomes.push(p.monthly_income);
        let h = &p.health;
        self.person_flags.push(
            flag(h.chronic_illness, CHRONIC)
                | flag(h.has_health_insurance, INSURED)
                | flag(h.pregnant, PREGNANT)
                | flag(h.undernourished, UNDERNOURISHED),
        );
        self.groups
            .extend(p.special_groups.iter().map(|g| g.code() as u8));
        self.group_start.push(self.groups.len() as u32);
    }

    /// Appends the household ranked next. `region_code` is the snapshot's (the village
    /// the household was determined in).
    pub fn push(
        &mut self,
        id: uuid::Uuid,
        region_code: &str,
        standing: Standing,
        h: &Household,
    ) -> Result<(), String> {
        if self.programme_codes.len() >= usize::from(u16::MAX) {
            return Err("too many distinct assistance programmes in one month".into());
        }
        self.ids.push(id);
        self.ranks.push(standing.national_rank);
        self.deciles.push(standing.decile as u8);
        self.province_deciles.push(standing.province_decile as u8);
        self.scores.push(standing.score);
        let place = self.place(region_code);
        self.villages.push(place);
        if let Some(head) = h.head() {
            if let Some(nik) = &head.nik {
                self.head_text.push_str(nik.as_str());
            }
            self.head_text.push('\t');
            self.head_text.push_str(&head.full_name);
        }
        self.heads.push(self.head_text.len() as u64);
        let d = &h.dwelling;
        let codes = [
            code(d.tenure, |v| v.code()),
            code(d.floor, |v| v.code()),
            code(d.wall, |v| v.code()),
            code(d.roof, |v| v.code()),
            code(d.water, |v| v.code()),
            code(d.sanitation, |v| v.code()),
            code(d.electricity, |v| v.code()),
        ];
        for (column, c) in self.dwelling.iter_mut().zip(codes) {
            column.push(c);
        }
        self.floor_area.push(d.floor_area_m2);
        let a = &h.assets;
        self.land.push(a.land_m2);
        self.asset_flags.push(
            flag(a.house_elsewhere, HOUSE_ELSEWHERE)
                | flag(a.refrigerator, REFRIGERATOR)
                | flag(a.productive_business, BUSINESS),
        );
        self.asset_counts.push([a.motorcycles, a.cars, a.livestock]);
        self.savings.push(a.savings);
        for f in &h.families {
            for p in &f.members {
                self.push_person(p);
            }
            self.person_start.push(self.ages.len() as u32);
        }
        self.family_start.push((self.person_start.len() - 1) as u32);
        for record in &h.assistance_history {
            let id = self.programme(&record.programme_code);
            self.programme_ids.push(id);
        }
        self.programme_start.push(self.programme_ids.len() as u32);
        Ok(())
    }

    /// The snapshot's village code of household `i`.
    pub fn region(&self, i: usize) -> &str {
        &self.places[self.villages[i] as usize]
    }

    /// The index of household `i`'s regency in `regencies`.
    pub fn regency(&self, i: usize) -> u32 {
        self.place_regency[self.villages[i] as usize]
    }

    /// The head of household's NIK and name.
    pub fn head(&self, i: usize) -> (Option<&str>, Option<&str>) {
        let text = &self.head_text[self.heads[i] as usize..self.heads[i + 1] as usize];
        match text.split_once('\t') {
            Some((nik, name)) => (
                (!nik.is_empty()).then_some(nik),
                (!name.is_empty()).then_some(name),
            ),
            None => (None, None),
        }
    }

    pub fn families(&self, i: usize) -> std::ops::Range<usize> {
        self.family_start[i] as usize..self.family_start[i + 1] as usize
    }

    pub fn family_persons(&self, f: usize) -> std::ops::Range<usize> {
        self.person_start[f] as usize..self.person_start[f + 1] as usize
    }

    /// The persons of household `i`, every family's in order.
    pub fn persons(&self, i: usize) -> std::ops::Range<usize> {
        let families = self.families(i);
        self.person_start[families.start] as usize..self.person_start[families.end] as usize
    }

    pub fn programmes(&self, i: usize) -> &[u16] {
        &self.programme_ids[self.programme_start[i] as usize..self.programme_start[i + 1] as usize]
    }

    pub fn person_groups(&self, p: usize) -> &[u8] {
        &self.groups[self.group_start[p] as usize..self.group_start[p + 1] as usize]
    }

    pub fn person_word(&self, p: usize, field: usize) -> &str {
        self.words.word(PERSON[field], self.person_codes[field][p])
    }

    pub fn dwelling_word(&self, i: usize, field: usize) -> &str {
        self.words.word(DWELLING[field], self.dwelling[field][i])
    }

    fn rule_person(&self, p: usize) -> rules::RulePerson {
        let flags = self.person_flags[p];
        rules::RulePerson {
            age: i64::from(self.ages[p]),
            sex: self.person_word(p, 0).to_owned(),
            relationship: self.person_word(p, 1).to_owned(),
            marital_status: self.person_word(p, 2).to_owned(),
            education: self.person_word(p, 3).to_owned(),
            school_status: self.person_word(p, 4).to_owned(),
            work_status: self.person_word(p, 5).to_owned(),
            monthly_income: self.incomes[p],
            chronic_illness: flags & CHRONIC != 0,
            disability: self.person_word(p, 6).to_owned(),
            has_health_insurance: flags & INSURED != 0,
            pregnant: flags & PREGNANT != 0,
            undernourished: flags & UNDERNOURISHED != 0,
            special_groups: self
                .person_groups(p)
                .iter()
                .map(|g| self.words.word(Coded::SpecialGroup, *g).to_owned())
                .collect(),
        }
    }

    /// Household `i` as the CEL interpreter reads it: the same values the month's
    /// columns give a compiled rule.
    pub fn rule_household(&self, i: usize) -> RuleHousehold {
        let region = self.region(i).to_owned();
        let families: Vec<rules::RuleFamily> = self
            .families(i)
            .map(|f| rules::RuleFamily {
                members: self
                    .family_persons(f)
                    .map(|p| self.rule_person(p))
                    .collect(),
            })
            .collect();
        let [motorcycles, cars, livestock] = self.asset_counts[i];
        let flags = self.asset_flags[i];
        RuleHousehold {
            province_code: region.get(..2).unwrap_or_default().to_owned(),
            regency_code: region.get(..5).unwrap_or_default().to_owned(),
            region_code: region,
            decile: i64::from(self.deciles[i]),
            province_decile: i64::from(self.province_deciles[i]),
            national_rank: self.ranks[i] as i64,
            score: self.scores[i],
            size: self.persons(i).len() as i64,
            dwelling: rules::RuleDwelling {
                tenure: self.dwelling_word(i, 0).to_owned(),
                floor_area_m2: self.floor_area[i],
                floor: self.dwelling_word(i, 1).to_owned(),
                wall: self.dwelling_word(i, 2).to_owned(),
                roof: self.dwelling_word(i, 3).to_owned(),
                water: self.dwelling_word(i, 4).to_owned(),
                sanitation: self.dwelling_word(i, 5).to_owned(),
                electricity: self.dwelling_word(i, 6).to_owned(),
            },
            assets: rules::RuleAssets {
                land_m2: self.land[i],
                house_elsewhere: flags & HOUSE_ELSEWHERE != 0,
                motorcycles: i64::from(motorcycles),
                cars: i64::from(cars),
                livestock: i64::from(livestock),
                refrigerator: flags & REFRIGERATOR != 0,
                productive_business: flags & BUSINESS != 0,
                savings: self.savings[i],
            },
            members: families.iter().flat_map(|f| f.members.clone()).collect(),
            families,
            assistance_programmes: self
                .programmes(i)
                .iter()
                .map(|p| self.programme_codes[*p as usize].clone())
                .collect(),
        }
    }

    /// Approximate bytes held, for the log.
    pub fn bytes(&self) -> usize {
        let n = self.households();
        n * (16 + 8 + 1 + 1 + 8 + 4 + 8 + 7 + 8 + 8 + 1 + 12 + 8 + 4 + 4)
            + self.head_text.len()
            + self.ages.len() * (4 + 7 + 8 + 1 + 4)
            + self.groups.len()
            + self.programme_ids.len() * 2
    }
}
