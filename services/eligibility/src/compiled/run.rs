//! A compiled rule run over one household of a month, following the interpreter's
//! semantics or answering [`Undecided`].

use std::rc::Rc;

use super::tree::{Bin, Field, Node};
use crate::month::{self, Month};

/// The compiled tree met something it does not decide like the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

type Out<'m> = Result<Val<'m>, Undecided>;

/// A list a rule walks: one of the month's, or one the rule made.
#[derive(Debug, Clone)]
pub(super) enum Seq<'m> {
    /// The persons of household `i` (every family's, in order).
    Members(u32),
    Families(u32),
    FamilyMembers(u32),
    Groups(u32),
    Programmes(u32),
    Items(Rc<Vec<Val<'m>>>),
}

/// A value while a rule runs.
#[derive(Debug, Clone)]
pub(super) enum Val<'m> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'m str),
    List(Seq<'m>),
    Household,
    Dwelling,
    Assets,
    Person(u32),
    Family(u32),
}

impl<'m> Val<'m> {
    fn is_map(&self) -> bool {
        matches!(
            self,
            Val::Household | Val::Dwelling | Val::Assets | Val::Person(_) | Val::Family(_)
        )
    }
}

/// Whether household `i` of `month` is eligible under `root`, or `Undecided`.
pub(super) fn eligible<'m>(
    root: &'m Node,
    month: &'m Month,
    i: usize,
    slots: &mut [Val<'m>],
) -> Result<bool, Undecided> {
    let run = Run { month, i: i as u32 };
    match run.eval(root, slots)? {
        Val::Bool(b) => Ok(b),
        _ => Err(Undecided),
    }
}

struct Run<'m> {
    month: &'m Month,
    i: u32,
}

fn truthy(v: &Val<'_>, m: &Month) -> bool {
    match v {
        Val::Null => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::Float(f) => *f != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::List(s) => seq_len(s, m) != 0,
        // Every map of the schema has fields.
        Val::Household | Val::Dwelling | Val::Assets | Val::Person(_) | Val::Family(_) => true,
    }
}

fn seq_len(s: &Seq<'_>, m: &Month) -> usize {
    match s {
        Seq::Members(i) => m.persons(*i as usize).len(),
        Seq::Families(i) => m.families(*i as usize).len(),
        Seq::FamilyMembers(f) => m.family_persons(*f as usize).len(),
        Seq::Groups(p) => m.person_groups(*p as usize).len(),
        Seq::Programmes(i) => m.programmes(*i as usize).len(),
        Seq::Items(v) => v.len(),
    }
}

fn seq_get<'m>(s: &Seq<'m>, k: usize, m: &'m Month) -> Val<'m> {
    match s {
        Seq::Members(i) => Val::Person((m.persons(*i as usize).start + k) as u32),
        Seq::Families(i) => Val::Family((m.families(*i as usize).start + k) as u32),
        Seq::FamilyMembers(f) => Val::Person((m.family_persons(*f as usize).start + k) as u32),
        Seq::Groups(p) => Val::Str(
            m.words
                .word(month::Coded::SpecialGroup, m.person_groups(*p as usize)[k]),
        ),
        Seq::Programmes(i) => Val::Str(&m.programme_codes[m.programmes(*i as usize)[k] as usize]),
        Seq::Items(v) => v[k].clone(),
    }
}

fn items<'m>(s: &Seq<'m>, m: &'m Month) -> Vec<Val<'m>> {
    (0..seq_len(s, m)).map(|k| seq_get(s, k, m)).collect()
}

/// `==` as the interpreter's `PartialEq` answers it; maps compared with maps are left
/// to the interpreter.
fn equal(a: &Val<'_>, b: &Val<'_>, m: &Month) -> Result<bool, Undecided> {
    Ok(match (a, b) {
        (Val::List(x), Val::List(y)) => {
            let n = seq_len(x, m);
            if n != seq_len(y, m) {
                return Ok(false);
            }
            for k in 0..n {
                if !equal(&seq_get(x, k, m), &seq_get(y, k, m), m)? {
                    return Ok(false);
                }
            }
            true
        }
        (x, y) if x.is_map() && y.is_map() => return Err(Undecided),
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Float(x), Val::Float(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Null, Val::Null) => true,
        (Val::Int(x), Val::Float(y)) | (Val::Float(y), Val::Int(x)) => (*x as f64) == *y,
        _ => false,
    })
}

/// The interpreter's `PartialOrd`; values it cannot order are an error there.
fn order(a: &Val<'_>, b: &Val<'_>) -> Result<std::cmp::Ordering, Undecided> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Null, Val::Null) => Some(std::cmp::Ordering::Equal),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        _ => None,
    }
    .ok_or(Undecided)
}

impl<'m> Run<'m> {
    fn select(&self, v: Val<'m>, f: Field) -> Out<'m> {
        let m = self.month;
        let i = self.i as usize;
        Ok(match (v, f) {
            (Val::Household, f) => match f {
                Field::RegionCode => Val::Str(m.region(i)),
                Field::ProvinceCode => Val::Str(m.region(i).get(..2).unwrap_or_default()),
                Field::RegencyCode => Val::Str(m.region(i).get(..5).unwrap_or_default()),
                Field::Decile => Val::Int(i64::from(m.deciles[i])),
                Field::ProvinceDecile => Val::Int(i64::from(m.province_deciles[i])),
                Field::NationalRank => Val::Int(m.ranks[i] as i64),
                Field::Score => Val::Float(m.scores[i]),
                Field::Size => Val::Int(m.persons(i).len() as i64),
                Field::Dwelling => Val::Dwelling,
                Field::Assets => Val::Assets,
                Field::Families => Val::List(Seq::Families(self.i)),
                Field::Members => Val::List(Seq::Members(self.i)),
                Field::AssistanceProgrammes => Val::List(Seq::Programmes(self.i)),
                _ => return Err(Undecided),
            },
            (Val::Dwelling, Field::DwellingCoded(k)) => Val::Str(m.dwelling_word(i, k)),
            (Val::Dwelling, Field::FloorArea) => Val::Float(m.floor_area[i]),
            (Val::Assets, f) => match f {
                Field::Land => Val::Float(m.land[i]),
                Field::AssetFlag(flag) => Val::Bool(m.asset_flags[i] & flag != 0),
                Field::AssetCount(k) => Val::Int(i64::from(m.asset_counts[i][k])),
                Field::Savings => Val::Int(m.savings[i]),
                _ => return Err(Undecided),
            },
            (Val::Person(p), f) => {
                let p = p as usize;
                match f {
                    Field::PersonCoded(k) => Val::Str(m.person_word(p, k)),
                    Field::Age => Val::Int(i64::from(m.ages[p])),
                    Field::MonthlyIncome => Val::Int(m.incomes[p]),
                    Field::PersonFlag(flag) => Val::Bool(m.person_flags[p] & flag != 0),
                    Field::SpecialGroups => Val::List(Seq::Groups(p as u32)),
                    _ => return Err(Undecided),
                }
            }
            (Val::Family(f), Field::Members) => Val::List(Seq::FamilyMembers(f)),
            _ => return Err(Undecided),
        })
    }

    fn eval(&self, n: &'m Node, slots: &mut [Val<'m>]) -> Out<'m> {
        let m = self.month;
        Ok(match n {
            Node::Null => Val::Null,
            Node::Bool(b) => Val::Bool(*b),
            Node::Int(i) => Val::Int(*i),
            Node::Float(f) => Val::Float(*f),
            Node::Str(s) => Val::Str(s),
            Node::Household => Val::Household,
            Node::Var(slot) => slots[*slot].clone(),
            Node::Select(operand, f) => {
                let v = self.eval(operand, slots)?;
                self.select(v, *f)?
            }
            Node::List(elements) => Val::List(Seq::Items(Rc::new(
                elements
                    .iter()
                    .map(|e| self.eval(e, slots))
                    .collect::<Result<_, _>>()?,
            ))),
            Node::Not(e) => Val::Bool(!truthy(&self.eval(e, slots)?, m)),
            Node::Neg(e) => match self.eval(e, slots)? {
                Val::Int(i) => Val::Int(i.checked_neg().ok_or(Undecided)?),
                Val::Float(f) => Val::Float(-f),
                _ => return Err(Undecided),
            },
            Node::NotStrictlyFalse(e) => match self.eval(e, slots)? {
                Val::Bool(b) => Val::Bool(b),
                _ => Val::Bool(true),
            },
            Node::And(l, r) => {
                if !truthy(&self.eval(l, slots)?, m) {
                    Val::Bool(false)
                } else {
                    Val::Bool(truthy(&self.eval(r, slots)?, m))
                }
            }
            Node::Or(l, r) => {
                let left = self.eval(l, slots)?;
                if truthy(&left, m) {
                    left
                } else {
                    self.eval(r, slots)?
                }
            }
            Node::Cond(c, a, b) => {
                if truthy(&self.eval(c, slots)?, m) {
                    self.eval(a, slots)?
                } else {
                    self.eval(b, slots)?
                }
            }
            Node::Bin(Bin::In, l, r) => {
                let left = self.eval(l, slots)?;
                // A list of literals is walked where it stands.
                if let Node::List(elements) = &**r
                    && elements.iter().all(|e| {
                        matches!(
                            e,
                            Node::Int(_)
                                | Node::Float(_)
                                | Node::Str(_)
                                | Node::Bool(_)
                                | Node::Null
                        )
                    })
                {
                    for e in elements {
                        if equal(&left, &self.eval(e, slots)?, m)? {
                            return Ok(Val::Bool(true));
                        }
                    }
                    return Ok(Val::Bool(false));
                }
                match (left, self.eval(r, slots)?) {
                    (Val::Str(needle), Val::Str(hay)) => Val::Bool(hay.contains(needle)),
                    (any, Val::List(s)) => {
                        for k in 0..seq_len(&s, m) {
                            if equal(&any, &seq_get(&s, k, m), m)? {
                                return Ok(Val::Bool(true));
                            }
                        }
                        Val::Bool(false)
                    }
                    _ => return Err(Undecided),
                }
            }
            Node::Bin(op, l, r) => {
                let left = self.eval(l, slots)?;
                let right = self.eval(r, slots)?;
                self.binary(*op, left, right)?
            }
            Node::Size(e) => match self.eval(e, slots)? {
                Val::List(s) => Val::Int(seq_len(&s, m) as i64),
                Val::Str(s) => Val::Int(s.len() as i64),
                _ => return Err(Undecided),
            },
            Node::ToDouble(e) => match self.eval(e, slots)? {
                Val::Float(f) => Val::Float(f),
                Val::Int(i) => Val::Float(i as f64),
                _ => return Err(Undecided),
            },
            Node::ToInt(e) => match self.eval(e, slots)? {
                Val::Int(i) => Val::Int(i),
                Val::Float(f) if f <= i64::MAX as f64 && f >= i64::MIN as f64 => Val::Int(f as i64),
                _ => return Err(Undecided),
            },
            Node::StartsWith(t, a) => match (self.eval(t, slots)?, self.eval(a, slots)?) {
                (Val::Str(s), Val::Str(p)) => Val::Bool(s.starts_with(p)),
                _ => return Err(Undecided),
            },
            Node::EndsWith(t, a) => match (self.eval(t, slots)?, self.eval(a, slots)?) {
                (Val::Str(s), Val::Str(p)) => Val::Bool(s.ends_with(p)),
                _ => return Err(Undecided),
            },
            Node::Contains(t, a) => match (self.eval(t, slots)?, self.eval(a, slots)?) {
                (Val::Str(s), Val::Str(p)) => Val::Bool(s.contains(p)),
                (Val::List(s), any) => {
                    for k in 0..seq_len(&s, m) {
                        if equal(&seq_get(&s, k, m), &any, m)? {
                            return Ok(Val::Bool(true));
                        }
                    }
                    Val::Bool(false)
                }
                (t, _) if t.is_map() => return Err(Undecided),
                _ => Val::Bool(false),
            },
            Node::Fold(f) => {
                let init = self.eval(&f.init, slots)?;
                let Val::List(seq) = self.eval(&f.range, slots)? else {
                    return Err(Undecided);
                };
                slots[f.accu] = init;
                for k in 0..seq_len(&seq, m) {
                    if !truthy(&self.eval(&f.cond, slots)?, m) {
                        break;
                    }
                    slots[f.item] = seq_get(&seq, k, m);
                    slots[f.accu] = self.eval(&f.step, slots)?;
                }
                self.eval(&f.result, slots)?
            }
        })
    }

    fn binary(&self, op: Bin, left: Val<'m>, right: Val<'m>) -> Out<'m> {
        use std::cmp::Ordering::{Greater, Less};
        let m = self.month;
        Ok(match op {
            Bin::Eq => Val::Bool(equal(&left, &right, m)?),
            Bin::Ne => Val::Bool(!equal(&left, &right, m)?),
            Bin::Lt => Val::Bool(order(&left, &right)? == Less),
            Bin::Le => Val::Bool(order(&left, &right)? != Greater),
            Bin::Gt => Val::Bool(order(&left, &right)? == Greater),
            Bin::Ge => Val::Bool(order(&left, &right)? != Less),
            Bin::Add => match (left, right) {
                (Val::Int(a), Val::Int(b)) => Val::Int(a.checked_add(b).ok_or(Undecided)?),
                (Val::Float(a), Val::Float(b)) => Val::Float(a + b),
                (Val::List(a), Val::List(b)) => {
                    let mut all = items(&a, m);
                    all.extend(items(&b, m));
                    Val::List(Seq::Items(Rc::new(all)))
                }
                _ => return Err(Undecided),
            },
            Bin::Sub => match (left, right) {
                (Val::Int(a), Val::Int(b)) => Val::Int(a.checked_sub(b).ok_or(Undecided)?),
                (Val::Float(a), Val::Float(b)) => Val::Float(a - b),
                _ => return Err(Undecided),
            },
            Bin::Mul => match (left, right) {
                (Val::Int(a), Val::Int(b)) => Val::Int(a.checked_mul(b).ok_or(Undecided)?),
                (Val::Float(a), Val::Float(b)) => Val::Float(a * b),
                _ => return Err(Undecided),
            },
            Bin::Div => match (left, right) {
                (Val::Int(a), Val::Int(b)) if b != 0 => {
                    Val::Int(a.checked_div(b).ok_or(Undecided)?)
                }
                (Val::Float(a), Val::Float(b)) => Val::Float(a / b),
                _ => return Err(Undecided),
            },
            Bin::Rem => match (left, right) {
                (Val::Int(a), Val::Int(b)) if b != 0 => {
                    Val::Int(a.checked_rem(b).ok_or(Undecided)?)
                }
                _ => return Err(Undecided),
            },
            Bin::In => return Err(Undecided),
        })
    }
}
