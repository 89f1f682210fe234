//! `dtksctl verivali`: an officer's verivali work from the command line — the work
//! queue, case listings and one case's file, and the batch steps (sign-off, forwarding,
//! the ministry's automatic assessment, returns) for case ids given as arguments or one
//! per line in a file (`-` for standard input).

use std::io::BufRead;

use dtks_proto::common::v1 as pb;
use dtks_proto::verivali::v1::*;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: crate::officers::Conn,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The cases waiting for your role in your region, longest waiting first.
    Queue,
    /// Cases in a region, by state and age.
    Cases {
        /// Region code; empty for your own scope.
        #[arg(long, default_value = "")]
        region: String,
        /// e.g. field_verified, returned; empty for every state.
        #[arg(long, default_value = "")]
        state: String,
        #[arg(long, default_value_t = 0)]
        min_age_days: u32,
    },
    /// One case: state, flags, assessment and history.
    Case { case_id: String },
    /// Bupati/Walikota sign-off of the listed cases, as one batch.
    SignOff(Batch),
    /// Province forwarding of the listed cases to the ministry, as one batch.
    Forward(Batch),
    /// The ministry's automatic assessment of the listed cases, as one batch.
    Assess(Batch),
    /// Send the listed cases back to the region; `--note` gives the reason.
    Return(Batch),
    /// Households due (or overdue) for the six-monthly update.
    Due {
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long)]
        overdue: bool,
    },
}

#[derive(clap::Args)]
struct Batch {
    /// Case ids, or `@FILE` with one id per line (`@-` for standard input).
    #[arg(required = true)]
    cases: Vec<String>,
    #[arg(long, default_value = "")]
    note: String,
}

impl Batch {
    fn request(&self) -> anyhow::Result<BatchRequest> {
        let mut case_ids = Vec::new();
        for c in &self.cases {
            match c.strip_prefix('@') {
                Some("-") => read_ids(std::io::stdin().lock(), &mut case_ids)?,
                Some(path) => read_ids(
                    std::io::BufReader::new(std::fs::File::open(path)?),
                    &mut case_ids,
                )?,
                None => case_ids.push(c.clone()),
            }
        }
        Ok(BatchRequest {
            case_ids,
            note: self.note.clone(),
        })
    }
}

fn read_ids(reader: impl BufRead, out: &mut Vec<String>) -> anyhow::Result<()> {
    for line in reader.lines() {
        let line = line?;
        let id = line.trim();
        if !id.is_empty() && !id.starts_with('#') {
            out.push(id.to_owned());
        }
    }
    Ok(())
}

fn state_name(code: i32) -> String {
    CaseState::try_from(code)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("CASE_STATE_")
        .to_lowercase()
}

fn day(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn print_cases(cases: &[Case]) {
    println!("case_id\tstate\tsince\tregion\tflags");
    for c in cases {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            c.case_id,
            state_name(c.state),
            day(c.state_since.as_ref()),
            c.region_code,
            c.flags
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
}

fn batch_result(step: &str, answer: tonic::Response<BatchResult>) {
    let r = answer.into_inner();
    println!(
        "{step}: {} cases (accepted {}, returned {}, rejected {})",
        r.applied, r.accepted, r.returned, r.rejected
    );
}

/// A listing's answer: its items and the token of the next page (empty after the last).
pub(crate) trait Paged {
    type Item;
    fn split(self) -> (Vec<Self::Item>, Option<pb::PageResponse>);
}

/// A listing's request, asked again for each page.
pub(crate) trait Pageable: Clone {
    fn at(&self, page: pb::PageRequest) -> Self;
}

/// A listing: `Request => Response, the answer's items: their type`.
macro_rules! listing {
    ($request:ty => $response:ty, $items:ident: $item:ty) => {
        impl crate::verivali::Pageable for $request {
            fn at(&self, page: pb::PageRequest) -> Self {
                let page = Some(page);
                Self {
                    page,
                    ..self.clone()
                }
            }
        }
        impl crate::verivali::Paged for $response {
            type Item = $item;
            fn split(self) -> (Vec<$item>, Option<pb::PageResponse>) {
                (self.$items, self.page)
            }
        }
    };
}
pub(crate) use listing;

listing!(ListCasesRequest => ListCasesResponse, cases: Case);
listing!(ListDueRequest => ListDueResponse, households: DueHousehold);

impl crate::verivali::Pageable for WorkQueueRequest {
    fn at(&self, page: pb::PageRequest) -> Self {
        WorkQueueRequest { page: Some(page) }
    }
}

/// Every page of a listing, 1000 items a page.
pub(crate) async fn all_pages<Q: Pageable, R: Paged>(
    request: Q,
    mut ask: impl AsyncFnMut(Q) -> Result<tonic::Response<R>, tonic::Status>,
) -> anyhow::Result<Vec<R::Item>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = pb::PageRequest {
            page_size: 1000,
            page_token: token,
        };
        let (items, next) = ask(request.at(page)).await?.into_inner().split();
        out.extend(items);
        token = next.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok(out);
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = crate::officers::client(&args.conn).await?;
    match args.command {
        Command::Queue => {
            let queue = WorkQueueRequest::default();
            let cases = all_pages(queue, async |r| client.work_queue(r).await).await?;
            print_cases(&cases);
        }
        Command::Cases {
            region,
            state,
            min_age_days,
        } => {
            let state = if state.is_empty() {
                CaseState::Unspecified
            } else {
                CaseState::from_str_name(&format!("CASE_STATE_{}", state.to_uppercase()))
                    .ok_or_else(|| anyhow::anyhow!("unknown state {state}"))?
            };
            let request = ListCasesRequest {
                region_code: region,
                state: state as i32,
                min_age_days,
                page: None,
            };
            let cases = all_pages(request, async |r| client.list_cases(r).await).await?;
            print_cases(&cases);
        }
        Command::Case { case_id } => {
            let c = client
                .get_case(GetCaseRequest { case_id })
                .await?
                .into_inner();
            println!("case {} ({})", c.case_id, state_name(c.state));
            println!(
                "proposal {}  household {}  region {}",
                c.proposal_id, c.household_id, c.region_code
            );
            for f in &c.flags {
                println!("flag {}: {}", f.code, f.reason);
            }
            if let Some(a) = &c.assessment {
                for k in &a.criteria {
                    let verdict = if k.verdict == CriterionVerdict::Pass as i32 {
                        "pass"
                    } else {
                        "FAIL"
                    };
                    println!(
                        "criterion {} {verdict} {}",
                        k.criterion,
                        k.reasons.join("; ")
                    );
                }
                if !a.override_reason.is_empty() {
                    println!("override: {}", a.override_reason);
                }
            }
            for t in &c.history {
                println!(
                    "{}\t{} -> {}\t{} ({})\t{}",
                    day(t.at.as_ref()),
                    state_name(t.from),
                    state_name(t.to),
                    t.actor_id,
                    t.actor_role,
                    t.note
                );
            }
        }
        Command::SignOff(b) => batch_result("signed off", client.sign_off(b.request()?).await?),
        Command::Forward(b) => {
            batch_result("forwarded", client.forward_to_ministry(b.request()?).await?)
        }
        Command::Assess(b) => batch_result("assessed", client.assess_batch(b.request()?).await?),
        Command::Return(b) => {
            batch_result("returned", client.return_to_region(b.request()?).await?)
        }
        Command::Due { region, overdue } => {
            let request = ListDueRequest {
                region_code: region,
                overdue_only: overdue,
                page: None,
            };
            let due = all_pages(request, async |r| client.list_due(r).await).await?;
            println!("household_id\tregion\tlast_verified\tdue\toverdue");
            for h in &due {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    h.household_id,
                    h.region_code,
                    day(h.last_verified_at.as_ref()),
                    day(h.due_at.as_ref()),
                    h.overdue
                );
            }
        }
    }
    Ok(())
}
