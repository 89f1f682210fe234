//! `dtksctl officer register|reassign|deactivate|list`: the officers' registry kept by
//! verivali. Reassigning and deactivating end every earlier token of the officer in
//! every service within a second.

use dtks_proto::common::v1 as pb;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::*;

use crate::verivali::{all_pages, listing};

/// Where verivali is, and the officer's token.
#[derive(clap::Args)]
pub struct Conn {
    #[arg(
        long,
        env = "DTKS_VERIVALI_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub verivali: String,
    /// The officer's token (`dtksctl token --role regency_officer --region 32.04`).
    #[arg(long, env = "DTKS_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(clap::Subcommand)]
pub enum Change {
    /// Register an officer: `register <subject> --name "…" --role regency_officer --region 32.04`.
    Register {
        subject: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// Village, regency or province code by the role's reach; empty for national roles.
        #[arg(long, default_value = "")]
        region: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move an officer to another role or region; their earlier tokens stop working.
    Reassign {
        subject: String,
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Deactivate an officer; their tokens stop working.
    Deactivate {
        subject: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// The officers of a region (your scope when empty).
    List {
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long)]
        inactive: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn client(
    conn: &Conn,
) -> anyhow::Result<
    VerivaliServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            dtks_platform::auth::BearerToken,
        >,
    >,
> {
    Ok(VerivaliServiceClient::new(
        crate::cycle::channel(&conn.verivali, &conn.token).await?,
    ))
}

fn print(officers: &[Officer]) {
    println!("subject\trole\tregion\tactive\tassigned\treason");
    for o in officers {
        let day = o
            .assigned_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}\t{day}\t{}",
            o.subject, o.role, o.region_code, o.active, o.reason
        );
    }
}

pub async fn run(change: Change) -> anyhow::Result<()> {
    let changed = match change {
        Change::Register {
            subject,
            name,
            role,
            region,
            conn,
        } => {
            let request = RegisterOfficerRequest {
                subject,
                display_name: name,
                role,
                region_code: region,
            };
            client(&conn).await?.register_officer(request).await?
        }
        Change::Reassign {
            subject,
            role,
            region,
            reason,
            conn,
        } => {
            let request = ReassignOfficerRequest {
                subject,
                role,
                region_code: region,
                reason,
            };
            client(&conn).await?.reassign_officer(request).await?
        }
        Change::Deactivate {
            subject,
            reason,
            conn,
        } => {
            let request = DeactivateOfficerRequest { subject, reason };
            client(&conn).await?.deactivate_officer(request).await?
        }
        Change::List {
            region,
            inactive,
            conn,
        } => {
            let mut client = client(&conn).await?;
            let request = ListOfficersRequest {
                region_code: region,
                include_inactive: inactive,
                page: None,
            };
            let all = all_pages(request, async |r| client.list_officers(r).await).await?;
            print(&all);
            return Ok(());
        }
    };
    print(&[changed.into_inner()]);
    Ok(())
}

listing!(ListOfficersRequest => ListOfficersResponse, officers: Officer);
