//! A programme rule compiled for a whole determined month: the CEL expression turned
//! into a tree that reads the month's columns directly, with no household copied into
//! CEL values. It follows the `cel-interpreter` crate's semantics — its truthiness, its
//! mixed-number comparisons, its checked integer arithmetic — and where it meets
//! anything it does not decide the same way (an error, a map compared with a map, a
//! string built at run time) it answers `Err(Undecided)`, and the caller asks the
//! interpreter about that household. The interpreter stays the definition; this is the
//! fast road to the same answers (a property test holds the two together).

use std::rc::Rc;

use cel_parser::ast::{Expr, IdedExpr, operators};
use cel_parser::reference::Val as Lit;

use crate::month::{self, Month};

/// The compiled tree met something it does not decide like the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

type Out<'m> = Result<Val<'m>, Undecided>;

/// Every field a rule may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    RegionCode,
    ProvinceCode,
    RegencyCode,
    Decile,
    ProvinceDecile,
    NationalRank,
    Score,
    Size,
    Dwelling,
    Assets,
    Families,
    Members,
    AssistanceProgrammes,
    /// A person's categorical field (index into `Month::person_codes`).
    PersonCoded(usize),
    Age,
    MonthlyIncome,
    /// A person's flag (`month::CHRONIC`, …).
    PersonFlag(u8),
    SpecialGroups,
    /// A dwelling's categorical field (index into `Month::dwelling`).
    DwellingCoded(usize),
    FloorArea,
    Land,
    /// An asset flag (`month::HOUSE_ELSEWHERE`, …).
    AssetFlag(u8),
    /// Motorcycles, cars, livestock.
    AssetCount(usize),
    Savings,
}

fn field(name: &str) -> Option<Field> {
    Some(match name {
        "region_code" => Field::RegionCode,
        "province_code" => Field::ProvinceCode,
        "regency_code" => Field::RegencyCode,
        "decile" => Field::Decile,
        "province_decile" => Field::ProvinceDecile,
        "national_rank" => Field::NationalRank,
        "score" => Field::Score,
        "size" => Field::Size,
        "dwelling" => Field::Dwelling,
        "assets" => Field::Assets,
        "families" => Field::Families,
        "members" => Field::Members,
        "assistance_programmes" => Field::AssistanceProgrammes,
        "sex" => Field::PersonCoded(0),
        "relationship" => Field::PersonCoded(1),
        "marital_status" => Field::PersonCoded(2),
        "education" => Field::PersonCoded(3),
        "school_status" => Field::PersonCoded(4),
        "work_status" => Field::PersonCoded(5),
        "disability" => Field::PersonCoded(6),
        "age" => Field::Age,
        "monthly_income" => Field::MonthlyIncome,
        "chronic_illness" => Field::PersonFlag(month::CHRONIC),
        "has_health_insurance" => Field::PersonFlag(month::INSURED),
        "pregnant" => Field::PersonFlag(month::PREGNANT),
        "undernourished" => Field::PersonFlag(month::UNDERNOURISHED),
        "special_groups" => Field::SpecialGroups,
        "tenure" => Field::DwellingCoded(0),
        "floor" => Field::DwellingCoded(1),
        "wall" => Field::DwellingCoded(2),
        "roof" => Field::DwellingCoded(3),
        "water" => Field::DwellingCoded(4),
        "sanitation" => Field::DwellingCoded(5),
        "electricity" => Field::DwellingCoded(6),
        "floor_area_m2" => Field::FloorArea,
        "land_m2" => Field::Land,
        "house_elsewhere" => Field::AssetFlag(month::HOUSE_ELSEWHERE),
        "refrigerator" => Field::AssetFlag(month::REFRIGERATOR),
        "productive_business" => Field::AssetFlag(month::BUSINESS),
        "motorcycles" => Field::AssetCount(0),
        "cars" => Field::AssetCount(1),
        "livestock" => Field::AssetCount(2),
        "savings" => Field::Savings,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Household,
    Var(usize),
    Select(Box<Node>, Field),
    List(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    NotStrictlyFalse(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Bin(Bin, Box<Node>, Box<Node>),
    Size(Box<Node>),
    ToDouble(Box<Node>),
    ToInt(Box<Node>),
    StartsWith(Box<Node>, Box<Node>),
    EndsWith(Box<Node>, Box<Node>),
    Contains(Box<Node>, Box<Node>),
    Fold {
        range: Box<Node>,
        item: usize,
        accu: usize,
        init: Box<Node>,
        cond: Box<Node>,
        step: Box<Node>,
        result: Box<Node>,
    },
}

/// A list a rule walks: one of the month's, or one the rule made.
#[derive(Debug, Clone)]
enum Seq<'m> {
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
enum Val<'m> {
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

/// A rule ready to run over a month.
#[derive(Debug)]
pub struct Compiled {
    root: Node,
    slots: usize,
}

struct Builder {
    scope: Vec<(String, usize)>,
    slots: usize,
}

impl Builder {
    fn slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    fn one(&mut self, e: &IdedExpr) -> Option<Box<Node>> {
        self.node(e).map(Box::new)
    }

    fn node(&mut self, e: &IdedExpr) -> Option<Node> {
        Some(match &e.expr {
            Expr::Literal(l) => match l {
                Lit::Null => Node::Null,
                Lit::Boolean(b) => Node::Bool(*b),
                Lit::Int(i) => Node::Int(*i),
                Lit::Double(d) => Node::Float(*d),
                Lit::String(s) => Node::Str(s.clone()),
                _ => return None,
            },
            Expr::Ident(name) => match self.scope.iter().rev().find(|(n, _)| n == name) {
                Some((_, slot)) => Node::Var(*slot),
                None if name == "household" => Node::Household,
                None => return None,
            },
            Expr::Select(s) if !s.test => Node::Select(self.one(&s.operand)?, field(&s.field)?),
            Expr::List(l) => Node::List(
                l.elements
                    .iter()
                    .map(|e| self.node(e))
                    .collect::<Option<_>>()?,
            ),
            Expr::Call(c) => {
                let args = &c.args;
                let two = |b: &mut Self| Some((b.one(&args[0])?, b.one(&args[1])?));
                match (c.func_name.as_str(), &c.target, args.len()) {
                    (operators::CONDITIONAL, None, 3) => Node::Cond(
                        self.one(&args[0])?,
                        self.one(&args[1])?,
                        self.one(&args[2])?,
                    ),
                    (operators::LOGICAL_AND, None, 2) => {
                        let (l, r) = two(self)?;
                        Node::And(l, r)
                    }
                    (operators::LOGICAL_OR, None, 2) => {
                        let (l, r) = two(self)?;
                        Node::Or(l, r)
                    }
                    (operators::LOGICAL_NOT, None, 1) => Node::Not(self.one(&args[0])?),
                    (operators::NEGATE, None, 1) => Node::Neg(self.one(&args[0])?),
                    (operators::NOT_STRICTLY_FALSE, None, 1) => {
                        Node::NotStrictlyFalse(self.one(&args[0])?)
                    }
                    (name, None, 2) => {
                        let op = match name {
                            operators::ADD => Bin::Add,
                            operators::SUBSTRACT => Bin::Sub,
                            operators::MULTIPLY => Bin::Mul,
                            operators::DIVIDE => Bin::Div,
                            operators::MODULO => Bin::Rem,
                            operators::EQUALS => Bin::Eq,
                            operators::NOT_EQUALS => Bin::Ne,
                            operators::LESS => Bin::Lt,
                            operators::LESS_EQUALS => Bin::Le,
                            operators::GREATER => Bin::Gt,
                            operators::GREATER_EQUALS => Bin::Ge,
                            operators::IN => Bin::In,
                            _ => return None,
                        };
                        let (l, r) = two(self)?;
                        Node::Bin(op, l, r)
                    }
                    ("size", Some(t), 0) => Node::Size(self.one(t)?),
                    ("size", None, 1) => Node::Size(self.one(&args[0])?),
                    ("double", Some(t), 0) => Node::ToDouble(self.one(t)?),
                    ("double", None, 1) => Node::ToDouble(self.one(&args[0])?),
                    ("int", Some(t), 0) => Node::ToInt(self.one(t)?),
                    ("int", None, 1) => Node::ToInt(self.one(&args[0])?),
                    ("startsWith", Some(t), 1) => {
                        Node::StartsWith(self.one(t)?, self.one(&args[0])?)
                    }
                    ("endsWith", Some(t), 1) => Node::EndsWith(self.one(t)?, self.one(&args[0])?),
                    ("contains", Some(t), 1) => Node::Contains(self.one(t)?, self.one(&args[0])?),
                    _ => return None,
                }
            }
            Expr::Comprehension(c) if c.iter_var2.is_none() => {
                let init = self.one(&c.accu_init)?;
                let range = self.one(&c.iter_range)?;
                let depth = self.scope.len();
                let (item, accu) = (self.slot(), self.slot());
                self.scope.push((c.iter_var.clone(), item));
                self.scope.push((c.accu_var.clone(), accu));
                let parts = (|| {
                    Some((
                        self.one(&c.loop_cond)?,
                        self.one(&c.loop_step)?,
                        self.one(&c.result)?,
                    ))
                })();
                self.scope.truncate(depth);
                let (cond, step, result) = parts?;
                Node::Fold {
                    range,
                    item,
                    accu,
                    init,
                    cond,
                    step,
                    result,
                }
            }
            _ => return None,
        })
    }
}

impl Compiled {
    /// The compiled form of a parsed rule, or `None` when it uses something only the
    /// interpreter runs (maps, indexing, `has`, unsigned numbers, other functions).
    pub fn new(parsed: &IdedExpr) -> Option<Self> {
        let mut b = Builder {
            scope: Vec::new(),
            slots: 0,
        };
        let root = b.node(parsed)?;
        Some(Self {
            root,
            slots: b.slots,
        })
    }

    /// Whether household `i` of `month` is eligible, or `Undecided`.
    #[cfg(test)]
    pub fn eligible(&self, month: &Month, i: usize) -> Result<bool, Undecided> {
        let mut slots = vec![Val::Null; self.slots];
        self.eligible_with(month, i, &mut slots)
    }

    fn eligible_with<'m>(
        &'m self,
        month: &'m Month,
        i: usize,
        slots: &mut [Val<'m>],
    ) -> Result<bool, Undecided> {
        let run = Run { month, i: i as u32 };
        match run.eval(&self.root, slots)? {
            Val::Bool(b) => Ok(b),
            _ => Err(Undecided),
        }
    }

    /// Every household of `month` from `range`, judged: `Ok(answer)` or `Undecided`.
    pub fn judge(
        &self,
        month: &Month,
        range: std::ops::Range<usize>,
    ) -> Vec<Result<bool, Undecided>> {
        let mut slots = vec![Val::Null; self.slots];
        range
            .map(|i| self.eligible_with(month, i, &mut slots))
            .collect()
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
            Node::Fold {
                range,
                item,
                accu,
                init,
                cond,
                step,
                result,
            } => {
                let init = self.eval(init, slots)?;
                let Val::List(seq) = self.eval(range, slots)? else {
                    return Err(Undecided);
                };
                slots[*accu] = init;
                for k in 0..seq_len(&seq, m) {
                    if !truthy(&self.eval(cond, slots)?, m) {
                        break;
                    }
                    slots[*item] = seq_get(&seq, k, m);
                    slots[*accu] = self.eval(step, slots)?;
                }
                self.eval(result, slots)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleHousehold, Standing};
    use cel_interpreter::{Context, Program, Value};
    use chrono::NaiveDate;
    use dtks_domain::household::*;
    use proptest::prelude::*;

    fn some<T: Clone + std::fmt::Debug + 'static>(
        all: &'static [T],
    ) -> impl Strategy<Value = Option<T>> {
        prop::option::of(prop::sample::select(all))
    }

    fn person() -> impl Strategy<Value = Person> {
        (
            (
                0u32..30_000,
                prop::sample::select(Sex::ALL),
                some(MaritalStatus::ALL),
                prop::sample::select(Relationship::ALL),
                some(EducationLevel::ALL),
                some(SchoolStatus::ALL),
                some(WorkStatus::ALL),
            ),
            (
                -1_000i64..5_000_000,
                any::<[bool; 4]>(),
                some(Disability::ALL),
                prop::collection::vec(prop::sample::select(SpecialGroup::ALL), 0..3),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (days, sex, marital, relationship, education, school, work),
                    (income, [chronic, insured, pregnant, undernourished], disability, groups, nik),
                )| Person {
                    nik: nik
                        .then(|| dtks_domain::nik::Nik::parse("3204011203800001").expect("nik")),
                    full_name: "Dewi Lestari".into(),
                    birth_place: "Bandung".into(),
                    birth_date: NaiveDate::from_ymd_opt(1945, 1, 1).expect("date")
                        + chrono::Days::new(u64::from(days)),
                    sex,
                    marital_status: marital,
                    relationship,
                    education,
                    school_status: school,
                    work_status: work,
                    occupation: String::new(),
                    sector: String::new(),
                    monthly_income: income,
                    health: Health {
                        chronic_illness: chronic,
                        disability,
                        has_health_insurance: insured,
                        pregnant,
                        undernourished,
                    },
                    special_groups: groups,
                    skills: vec![],
                    deceased: false,
                },
            )
    }

    fn household() -> impl Strategy<Value = (Household, Standing, String)> {
        (
            prop::collection::vec(prop::collection::vec(person(), 1..4), 1..3),
            (
                some(Tenure::ALL),
                some(FloorMaterial::ALL),
                some(WallMaterial::ALL),
                some(RoofMaterial::ALL),
                some(WaterSource::ALL),
                some(Sanitation::ALL),
                some(Electricity::ALL),
                0.0f64..120.0,
            ),
            (
                0.0f64..2_000.0,
                any::<[bool; 3]>(),
                any::<[u8; 3]>(),
                -10i64..50_000_000,
                prop::collection::vec(prop::sample::select(&["PKH", "BPNT", "KIP"][..]), 0..3),
            ),
            (1u32..=10, 1u32..=10, 1u64..1_000_000, -50.0f64..50.0),
            prop::sample::select(&["32.04.05.2001", "32.73.01.1001", "33.01.02.2003"][..]),
        )
            .prop_map(
                |(
                    families,
                    (tenure, floor, wall, roof, water, sanitation, electricity, area),
                    (land, flags, counts, savings, programmes),
                    (decile, province_decile, rank, score),
                    village,
                )| {
                    let h = Household {
                        household_id: None,
                        address: Address::default(),
                        location: None,
                        families: families
                            .into_iter()
                            .map(|members| Family {
                                kk_number: None,
                                members,
                            })
                            .collect(),
                        dwelling: Dwelling {
                            tenure,
                            floor_area_m2: area,
                            floor,
                            wall,
                            roof,
                            water,
                            sanitation,
                            electricity,
                        },
                        assets: Assets {
                            land_m2: land,
                            house_elsewhere: flags[0],
                            motorcycles: u32::from(counts[0]),
                            cars: u32::from(counts[1]),
                            livestock: u32::from(counts[2]),
                            refrigerator: flags[1],
                            productive_business: flags[2],
                            savings,
                        },
                        assistance_history: programmes
                            .into_iter()
                            .map(|code| AssistanceRecord {
                                programme_code: code.into(),
                                year: 2025,
                                month: 1,
                                amount: 100_000,
                            })
                            .collect(),
                        psks_potential: vec![],
                    };
                    let standing = Standing {
                        decile,
                        province_decile,
                        national_rank: rank,
                        score,
                    };
                    (h, standing, village.to_owned())
                },
            )
    }

    /// A condition on person `p`.
    fn person_condition() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]),
                0i32..90
            )
                .prop_map(|(op, n)| format!("p.age {op} {n}")),
            (0i32..90).prop_map(|n| format!("p.age < {n}.5")),
            prop::sample::select(
                &[
                    "p.sex == 'female'",
                    "p.school_status == 'attending'",
                    "p.school_status == ''",
                    "p.disability == 'severe'",
                    "p.disability != ''",
                    "p.pregnant",
                    "!p.has_health_insurance",
                    "p.chronic_illness || p.undernourished",
                    "p.relationship in ['head', 'spouse']",
                    "p.education in ['none', 'primary']",
                    "p.work_status == 'not_working'",
                    "p.marital_status == 'widowed'",
                    "'orphan' in p.special_groups",
                    "p.special_groups.exists(g, g == 'elderly_alone')",
                    "p.special_groups.size() > 0",
                    "p.special_groups == ['orphan']",
                    "p.sex",
                    "p.monthly_income / 0 > 1",
                    "p.monthly_income * 1000000000000 > 1",
                ][..]
            )
            .prop_map(String::from),
            (0i64..3_000_000).prop_map(|n| format!("p.monthly_income < {n}")),
        ]
    }

    /// A condition on the household.
    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                prop::sample::select(
                    &[
                        "household.decile",
                        "household.province_decile",
                        "household.size",
                        "household.national_rank",
                        "household.assets.motorcycles",
                        "household.assets.savings",
                        "size(household.members)",
                        "household.families.size()",
                        "household.assistance_programmes.size()",
                        "household.score",
                        "household.dwelling.floor_area_m2",
                        "household.assets.land_m2",
                        "double(household.size)",
                        "int(household.score)",
                        "-household.decile",
                        "household.decile + household.size",
                        "household.decile - 3",
                        "household.decile % 3",
                        "household.score / 2.0",
                    ][..]
                ),
                prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]),
                prop_oneof![
                    (0i64..20).prop_map(|n| n.to_string()),
                    (0i64..200).prop_map(|n| format!("{n}.5")),
                ],
            )
                .prop_map(|(term, op, literal)| format!("{term} {op} {literal}")),
            (
                prop::sample::select(
                    &[
                        "household.dwelling.floor",
                        "household.dwelling.wall",
                        "household.dwelling.roof",
                        "household.dwelling.tenure",
                        "household.dwelling.electricity",
                        "household.regency_code",
                    ][..]
                ),
                prop::sample::select(
                    &[
                        "'earth'", "'bamboo'", "'thatch'", "'owned'", "'pln450'", "''", "'32.04'"
                    ][..]
                ),
            )
                .prop_map(|(term, word)| format!("{term} == {word}")),
            person_condition().prop_map(|c| format!("household.members.exists(p, {c})")),
            person_condition().prop_map(|c| format!("household.members.all(p, {c})")),
            person_condition().prop_map(|c| format!("household.members.exists_one(p, {c})")),
            person_condition()
                .prop_map(|c| format!("household.members.filter(p, {c}).size() >= 2")),
            person_condition()
                .prop_map(|c| format!("household.families.exists(f, f.members.exists(p, {c}))")),
            prop::sample::select(
                &[
                    "household.assets.house_elsewhere",
                    "household.assets.refrigerator",
                    "household.region_code.startsWith('32.0')",
                    "household.region_code.contains('73')",
                    "household.regency_code in ['32.04', '33.01']",
                    "'PKH' in household.assistance_programmes",
                    "household.assistance_programmes.contains('KIP')",
                    "household.members.map(p, p.age).exists(a, a >= 60)",
                    "household.families.all(f, size(f.members) >= 2)",
                    "household.dwelling.floor_area_m2 < 8.0 * double(household.size)",
                    "household.members[0].age > 20",
                    "household.members",
                    "household.size",
                    "household.dwelling",
                    "household.dwelling == household.dwelling",
                    "household.decile / 0 == 1",
                    "null == null",
                    "household.dwelling.floor + 'x' == 'earthx'",
                ][..]
            )
            .prop_map(String::from),
        ]
    }

    fn rule() -> impl Strategy<Value = String> {
        leaf().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
                inner.clone().prop_map(|a| format!("!({a})")),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(a, b, c)| format!("({a} ? {b} : {c})")),
            ]
        })
    }

    fn month(households: &[(Household, Standing, String)]) -> Month {
        let mut m = Month::new(2026, 11).expect("month");
        for (k, (h, standing, village)) in households.iter().enumerate() {
            m.push(uuid::Uuid::from_u128(k as u128 + 1), village, *standing, h)
                .expect("push");
        }
        m
    }

    fn interpret(program: &Program, h: &RuleHousehold) -> Option<Value> {
        let mut context = Context::default();
        context.add_variable_from_value("household", cel_interpreter::to_value(h).ok()?);
        program.execute(&context).ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Where the compiled rule answers, the interpreter answers the same; and the
        /// month's columns give back exactly the household the interpreter would read.
        #[test]
        fn compiled_rules_answer_as_the_interpreter(
            source in rule(),
            households in prop::collection::vec(household(), 1..6),
        ) {
            let parsed = cel_parser::Parser::default().parse(&source).expect("parses");
            let program = Program::compile(&source).expect("compiles");
            let compiled = Compiled::new(&parsed);
            let m = month(&households);
            let on = m.on;
            for (i, (h, standing, village)) in households.iter().enumerate() {
                let mut expected = RuleHousehold::new(h, *standing, on);
                expected.region_code = village.clone();
                expected.province_code = village[..2].to_owned();
                expected.regency_code = village[..5].to_owned();
                let columns = m.rule_household(i);
                prop_assert_eq!(&columns, &expected);
                if let Some(answer) = compiled.as_ref().and_then(|c| c.eligible(&m, i).ok()) {
                    prop_assert_eq!(interpret(&program, &columns), Some(Value::Bool(answer)), "{}", source);
                }
            }
        }
    }

    #[test]
    fn the_shipped_rules_are_compiled_and_decide_every_household() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let households: Vec<_> = (0..500)
            .map(|_| household().new_tree(&mut runner).expect("tree").current())
            .collect();
        let m = month(&households);
        for p in crate::programmes::shipped().expect("shipped") {
            let parsed = cel_parser::Parser::default()
                .parse(&p.rule)
                .expect("parses");
            let compiled =
                Compiled::new(&parsed).unwrap_or_else(|| panic!("{} is compiled", p.code));
            let program = Program::compile(&p.rule).expect("compiles");
            let mut yes = 0;
            for i in 0..m.households() {
                let answer = compiled
                    .eligible(&m, i)
                    .unwrap_or_else(|_| panic!("{} decides household {i}", p.code));
                assert_eq!(
                    interpret(&program, &m.rule_household(i)),
                    Some(Value::Bool(answer)),
                    "{} on household {i}",
                    p.code
                );
                yes += usize::from(answer);
            }
            assert!(
                yes > 0 && yes < m.households(),
                "{}: {yes} eligible",
                p.code
            );
        }
    }
}
