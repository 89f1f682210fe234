//! A parsed rule turned into the tree [`super::Compiled`] runs: every field it names
//! resolved to a column of the month, every variable to a slot.

use cel_parser::ast::{Expr, IdedExpr, operators};
use cel_parser::reference::Val as Lit;

use crate::month;

/// The tree of `parsed` and the slots its variables take, or `None` when it uses
/// something only the interpreter runs.
pub(super) fn build(parsed: &IdedExpr) -> Option<(Node, usize)> {
    let mut b = Builder {
        scope: Vec::new(),
        slots: 0,
    };
    let root = b.node(parsed)?;
    Some((root, b.slots))
}

/// Every field a rule may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
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
pub(super) enum Bin {
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
pub(super) enum Node {
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
    Fold(Fold),
}

/// A comprehension (`all`, `exists`, `map`, `filter`): `accu` starts at `init`; for each
/// element of `range` (put in slot `item`) while `cond` holds, `accu` becomes `step`;
/// the answer is `result`.
#[derive(Debug)]
pub struct Fold {
    pub range: Box<Node>,
    pub item: usize,
    pub accu: usize,
    pub init: Box<Node>,
    pub cond: Box<Node>,
    pub step: Box<Node>,
    pub result: Box<Node>,
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
                Node::Fold(Fold {
                    range,
                    item,
                    accu,
                    init,
                    cond,
                    step,
                    result,
                })
            }
            _ => return None,
        })
    }
}
