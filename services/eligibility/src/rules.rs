//! Programme eligibility rules: CEL expressions over one household of a determined
//! month — its standing, dwelling, assets, families and members.
//!
//! A rule is checked when it is saved: it must parse, every field it names must exist
//! (the checker follows `household.…` and the variables of `exists`, `all`, `filter`
//! and `map` through the schema below), and it must answer true or false for a sample
//! household. Each refusal carries the line and column of the error.

use cel_interpreter::{Context, IdedExpr, Program, Value};

use crate::compiled::Compiled;
use crate::household::RuleHousehold;
use crate::month::Month;

/// The types of the rule environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Household,
    Family,
    Person,
    Dwelling,
    Assets,
    ListOf(Item),
    /// A number, string or boolean.
    Scalar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Family,
    Person,
    Scalar,
}

impl Item {
    fn ty(self) -> Ty {
        match self {
            Item::Family => Ty::Family,
            Item::Person => Ty::Person,
            Item::Scalar => Ty::Scalar,
        }
    }
}

/// The fields of each type, as a rule names them.
fn fields(ty: Ty) -> &'static [(&'static str, Ty)] {
    match ty {
        Ty::Household => &[
            ("region_code", Ty::Scalar),
            ("province_code", Ty::Scalar),
            ("regency_code", Ty::Scalar),
            ("decile", Ty::Scalar),
            ("province_decile", Ty::Scalar),
            ("national_rank", Ty::Scalar),
            ("score", Ty::Scalar),
            ("size", Ty::Scalar),
            ("dwelling", Ty::Dwelling),
            ("assets", Ty::Assets),
            ("families", Ty::ListOf(Item::Family)),
            ("members", Ty::ListOf(Item::Person)),
            ("assistance_programmes", Ty::ListOf(Item::Scalar)),
        ],
        // Identity numbers are not criteria: rules never read NIK or KK numbers.
        Ty::Family => &[("members", Ty::ListOf(Item::Person))],
        Ty::Person => &[
            ("age", Ty::Scalar),
            ("sex", Ty::Scalar),
            ("relationship", Ty::Scalar),
            ("marital_status", Ty::Scalar),
            ("education", Ty::Scalar),
            ("school_status", Ty::Scalar),
            ("work_status", Ty::Scalar),
            ("monthly_income", Ty::Scalar),
            ("chronic_illness", Ty::Scalar),
            ("disability", Ty::Scalar),
            ("has_health_insurance", Ty::Scalar),
            ("pregnant", Ty::Scalar),
            ("undernourished", Ty::Scalar),
            ("special_groups", Ty::ListOf(Item::Scalar)),
        ],
        Ty::Dwelling => &[
            ("tenure", Ty::Scalar),
            ("floor_area_m2", Ty::Scalar),
            ("floor", Ty::Scalar),
            ("wall", Ty::Scalar),
            ("roof", Ty::Scalar),
            ("water", Ty::Scalar),
            ("sanitation", Ty::Scalar),
            ("electricity", Ty::Scalar),
        ],
        Ty::Assets => &[
            ("land_m2", Ty::Scalar),
            ("house_elsewhere", Ty::Scalar),
            ("motorcycles", Ty::Scalar),
            ("cars", Ty::Scalar),
            ("livestock", Ty::Scalar),
            ("refrigerator", Ty::Scalar),
            ("productive_business", Ty::Scalar),
            ("savings", Ty::Scalar),
        ],
        Ty::ListOf(_) | Ty::Scalar => &[],
    }
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Household => "household",
        Ty::Family => "a family",
        Ty::Person => "a person",
        Ty::Dwelling => "household.dwelling",
        Ty::Assets => "household.assets",
        Ty::ListOf(_) => "a list",
        Ty::Scalar => "a value",
    }
}

/// Why a rule is refused, and where (1-based line and column; 0 when unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// The line and column of the first occurrence of `needle` in `source`.
fn position_of(source: &str, needle: &str) -> (usize, usize) {
    let Some(at) = source.find(needle) else {
        return (0, 0);
    };
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted path of a select chain (`household.dwelling.floor`), for messages.
fn path(e: &IdedExpr) -> String {
    match &e.expr {
        cel_parser::ast::Expr::Ident(name) => name.clone(),
        cel_parser::ast::Expr::Select(s) => format!("{}.{}", path(&s.operand), s.field),
        _ => String::from("(expression)"),
    }
}

/// The longest rule text accepted, in bytes: programme rules are a few lines.
pub const MAX_RULE_BYTES: usize = 8 * 1024;
/// The deepest nesting of brackets (and of the expression tree) a rule may have. Real
/// rules nest a handful of levels; the parser and the interpreter recurse once per level.
pub const MAX_DEPTH: usize = 64;
/// The stack the parser and checker run on: ample for [`MAX_DEPTH`] levels.
const COMPILE_STACK: usize = 16 * 1024 * 1024;

/// Refuses, before any parsing, a rule too long or nested too deep in its text: runs of
/// brackets and of prefix operators (`!`, `-`) each add a level.
fn bounded(source: &str) -> Result<(), RuleError> {
    if source.len() > MAX_RULE_BYTES {
        return Err(RuleError {
            line: 1,
            column: 1,
            message: format!(
                "aturan terlalu panjang (the rule is {} bytes; at most {MAX_RULE_BYTES})",
                source.len()
            ),
        });
    }
    let (mut open, mut prefix, mut line, mut column) = (0usize, 0usize, 1usize, 0usize);
    let mut in_string: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        column += 1;
        if c == '\n' {
            line += 1;
            column = 0;
        }
        if let Some(quote) = in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => in_string = Some(c),
            '(' | '[' | '{' => open += 1,
            ')' | ']' | '}' => open = open.saturating_sub(1),
            _ => {}
        }
        prefix = match c {
            '!' | '-' => prefix + 1,
            c if c.is_whitespace() => prefix,
            _ => 0,
        };
        if open + prefix > MAX_DEPTH {
            return Err(RuleError {
                line,
                column,
                message: format!(
                    "aturan terlalu dalam (the rule nests deeper than {MAX_DEPTH} levels); split it into simpler conditions"
                ),
            });
        }
    }
    Ok(())
}

/// The depth of the expression tree (a leaf is 1).
fn depth(e: &IdedExpr) -> usize {
    use cel_parser::ast::{EntryExpr, Expr};
    let entry = |e: &cel_parser::ast::IdedEntryExpr| match &e.expr {
        EntryExpr::StructField(f) => depth(&f.value),
        EntryExpr::MapEntry(m) => depth(&m.key).max(depth(&m.value)),
    };
    1 + match &e.expr {
        Expr::Call(c) => c
            .target
            .iter()
            .map(|t| depth(t))
            .chain(c.args.iter().map(depth))
            .max()
            .unwrap_or(0),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .map(|e| depth(e))
        .max()
        .unwrap_or(0),
        Expr::List(l) => l.elements.iter().map(depth).max().unwrap_or(0),
        Expr::Map(m) => m.entries.iter().map(entry).max().unwrap_or(0),
        Expr::Struct(s) => s.entries.iter().map(entry).max().unwrap_or(0),
        Expr::Select(s) => depth(&s.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    }
}

/// Walks `e`, returning its type where the schema knows it.
fn check(e: &IdedExpr, scope: &mut Vec<(String, Ty)>, source: &str) -> Result<Ty, RuleError> {
    use cel_parser::ast::{EntryExpr, Expr};
    match &e.expr {
        Expr::Ident(name) => Ok(scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .or((name == "household").then_some(Ty::Household))
            .ok_or_else(|| {
                let (line, column) = position_of(source, name);
                RuleError {
                    line,
                    column,
                    message: format!("unknown name `{name}`: a rule reads `household`"),
                }
            })?),
        Expr::Select(s) => {
            let operand = check(&s.operand, scope, source)?;
            if operand == Ty::Scalar {
                return Ok(Ty::Scalar);
            }
            let known = fields(operand);
            match known.iter().find(|(f, _)| *f == s.field) {
                Some((_, ty)) => Ok(*ty),
                None => {
                    let full = format!("{}.{}", path(&s.operand), s.field);
                    let (line, column) = position_of(source, &full);
                    let (line, column) = if line == 0 {
                        position_of(source, &s.field)
                    } else {
                        (line, column)
                    };
                    let names: Vec<&str> = known.iter().map(|(f, _)| *f).collect();
                    Err(RuleError {
                        line,
                        column,
                        message: format!(
                            "unknown field `{full}`: {} has {}",
                            type_name(operand),
                            if names.is_empty() {
                                "no fields".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    })
                }
            }
        }
        Expr::Call(c) => {
            if let Some(target) = &c.target {
                check(target, scope, source)?;
            }
            for a in &c.args {
                check(a, scope, source)?;
            }
            Ok(Ty::Scalar)
        }
        Expr::Comprehension(c) => {
            let range = check(&c.iter_range, scope, source)?;
            let item = match range {
                Ty::ListOf(item) => item.ty(),
                _ => Ty::Scalar,
            };
            check(&c.accu_init, scope, source)?;
            let depth = scope.len();
            scope.push((c.iter_var.clone(), item));
            if let Some(second) = &c.iter_var2 {
                scope.push((second.clone(), Ty::Scalar));
            }
            scope.push((c.accu_var.clone(), Ty::Scalar));
            let result = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .try_for_each(|part| check(part, scope, source).map(|_| ()));
            scope.truncate(depth);
            result?;
            Ok(Ty::Scalar)
        }
        Expr::List(l) => {
            for item in &l.elements {
                check(item, scope, source)?;
            }
            Ok(Ty::Scalar)
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    check(&me.key, scope, source)?;
                    check(&me.value, scope, source)?;
                }
            }
            Ok(Ty::Scalar)
        }
        _ => Ok(Ty::Scalar),
    }
}

/// A checked rule, ready to run: the interpreter's program, and where the rule allows
/// it, the same rule compiled over a month's columns.
pub struct Rule {
    program: Program,
    compiled: Option<Compiled>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rule")
    }
}

impl Rule {
    /// Parses and checks `source` (see the module's documentation).
    pub fn compile(source: &str) -> Result<Self, RuleError> {
        if source.trim().is_empty() {
            return Err(RuleError {
                line: 1,
                column: 1,
                message: "the rule is empty".into(),
            });
        }
        bounded(source)?;
        // Parsing, checking and compiling recurse over the rule's nesting: they run on a
        // thread with a known stack, and the bounds above keep them well inside it.
        let source_owned = source.to_owned();
        std::thread::Builder::new()
            .name("rule-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn(move || Self::compile_here(&source_owned))
            .map_err(|e| RuleError {
                line: 0,
                column: 0,
                message: format!("the rule could not be checked now: {e}"),
            })?
            .join()
            .map_err(|_| RuleError {
                line: 0,
                column: 0,
                message: "the rule could not be checked".into(),
            })?
    }

    fn compile_here(source: &str) -> Result<Self, RuleError> {
        // The parser panics on some malformed input (an expression cut short); a rule is
        // the caller's text, so that is caught and refused like any parse error, placed
        // at the end of the text.
        let parsed = std::panic::catch_unwind(|| cel_parser::Parser::default().parse(source))
            .map_err(|_| {
                let line = source.matches('\n').count() + 1;
                let column = source.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                RuleError {
                    line,
                    column,
                    message: "the rule ends before its expression is complete".into(),
                }
            })?
            .map_err(|errors| {
                let first = errors.errors.first();
                RuleError {
                    line: first.map_or(0, |e| e.pos.0.max(0) as usize),
                    column: first.map_or(0, |e| e.pos.1.max(0) as usize + 1),
                    message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
                }
            })?;
        if depth(&parsed) > MAX_DEPTH {
            return Err(RuleError {
                line: 1,
                column: 1,
                message: format!(
                    "aturan terlalu dalam (the rule nests deeper than {MAX_DEPTH} levels); split it into simpler conditions"
                ),
            });
        }
        check(&parsed, &mut Vec::new(), source)?;
        let program = Program::compile(source).map_err(|e| RuleError {
            line: 0,
            column: 0,
            message: e.to_string(),
        })?;
        let compiled = Compiled::new(&parsed);
        let rule = Self { program, compiled };
        // It must answer yes or no for a household.
        let sample = RuleHousehold::sample();
        rule.eligible(&sample).map_err(|message| RuleError {
            line: 1,
            column: 1,
            message,
        })?;
        Ok(rule)
    }

    /// Whether the household is eligible; an error when the rule does not answer true
    /// or false for it.
    pub fn eligible(&self, household: &RuleHousehold) -> Result<bool, String> {
        let mut context = Context::default();
        let value = cel_interpreter::to_value(household).map_err(|e| e.to_string())?;
        context.add_variable_from_value("household", value);
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "the rule must answer true or false; it answers {other:?}"
            )),
            Err(e) => Err(format!("the rule fails on a household: {e}")),
        }
    }

    /// Whether the rule runs compiled over a month (otherwise every household goes
    /// through the interpreter).
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    /// The eligible households among `range` of `month`, in order; the first household
    /// the rule cannot judge stops it, with why. Each household is judged by the compiled
    /// rule, and by the interpreter where the compiled rule leaves it undecided.
    pub fn judge(
        &self,
        month: &Month,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<u32>, (usize, String)> {
        let start = range.start;
        let answers = match &self.compiled {
            Some(compiled) => compiled.judge(month, range),
            None => vec![Err(crate::compiled::Undecided); range.len()],
        };
        let mut eligible = Vec::new();
        for (k, answer) in answers.into_iter().enumerate() {
            let i = start + k;
            let yes = match answer {
                Ok(yes) => yes,
                Err(_) => self
                    .eligible(&month.rule_household(i))
                    .map_err(|e| (i, e))?,
            };
            if yes {
                eligible.push(i as u32);
            }
        }
        Ok(eligible)
    }
}

#[cfg(test)]
mod tests;
