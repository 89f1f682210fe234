//! Personal data at rest: the household a proposal carried, its members' names and a
//! case file's household and match are stored sealed — no NIK or name in the stored
//! bytes — while officers read them as before; a sealed value moved to another row
//! does not open there.

use dtks_e2e::{Stack, authed, count, count_becomes};
use dtks_platform::auth::Role;
use dtks_proto::intake::v1::GetProposalRequest;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::verivali::v1::GetCaseRequest;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use sea_orm::ConnectionTrait;

use super::{HEAD_NIK, REGISTRY, VILLAGE, submit_musdes};

async fn bytes(stack: &Stack, sql: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let rows = stack
        .db
        .query_all_raw(dtks_platform::db::stmt(sql, []))
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get_by_index::<Vec<u8>>(0)?))
        .collect()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_sealed_at_rest_and_read_back_by_officers() -> anyhow::Result<()> {
    let stack = Stack::start(REGISTRY).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let first = submit_musdes(&stack, &operator, "sealed-1", "SEALED-1").await?;
    count_becomes(
        &stack,
        60,
        "SELECT count(*)::bigint AS n FROM verivali.cases",
        1,
    )
    .await?;

    // Nothing readable at rest.
    let mut stored = bytes(&stack, "SELECT household FROM intake.proposals").await?;
    stored.extend(
        bytes(
            &stack,
            "SELECT full_name_sealed FROM intake.proposal_persons",
        )
        .await?,
    );
    stored.extend(bytes(&stack, "SELECT household FROM verivali.cases").await?);
    stored.extend(bytes(&stack, "SELECT matched FROM verivali.cases").await?);
    assert_eq!(stored.len(), 1 + 3 + 1 + 1);
    for value in &stored {
        assert!(value.starts_with(b"DTKS\x01"), "not sealed");
        for secret in [
            HEAD_NIK,
            "Asep Sunandar",
            "Siti Aminah",
            "Dede Kurnia",
            "Melati",
        ] {
            assert!(!holds(value, secret), "{secret} readable at rest");
        }
    }
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM intake.proposal_persons WHERE full_name IS NOT NULL"
        )
        .await?,
        0
    );

    // Finding 17: matching cached the registry's answers under `dci:nik:<NIK>`, in plain
    // JSON. Keys now carry a keyed hash, values are sealed.
    let redis_url =
        std::env::var("DTKS_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let pattern = format!("e2e.{}:*", stack.run_id);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await?;
    let cached: Vec<&String> = keys.iter().filter(|k| k.contains(":dci:nik:")).collect();
    assert!(
        cached.len() >= 3,
        "the registry answers were cached: {keys:?}"
    );
    for key in &keys {
        for nik in [HEAD_NIK, &HEAD_NIK[..12]] {
            assert!(!key.contains(nik), "a cache key holds a NIK: {key}");
        }
    }
    for key in cached {
        let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut redis).await?;
        assert!(
            value.starts_with(b"DTKS\x01"),
            "a cached answer is not sealed"
        );
        for secret in [HEAD_NIK, "Asep Sunandar", "Siti Aminah", "Bandung"] {
            assert!(!holds(&value, secret), "{secret} readable in the cache");
        }
    }

    // Officers read them as before.
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?);
    let proposal = intake
        .get_proposal(authed(
            GetProposalRequest {
                proposal_id: first.proposal_id.clone(),
            },
            &operator,
        ))
        .await?
        .into_inner();
    let head = &proposal.household.expect("household").families[0].members[0];
    assert_eq!(
        (head.nik.as_str(), head.full_name.as_str()),
        (HEAD_NIK, "Asep Sunandar")
    );
    let case_id: uuid::Uuid = stack
        .db
        .query_one_raw(dtks_platform::db::stmt(
            "SELECT case_id FROM verivali.cases",
            [],
        ))
        .await?
        .expect("a case")
        .try_get("", "case_id")?;
    let case = VerivaliServiceClient::new(stack.channel("verivali").await?)
        .get_case(authed(
            GetCaseRequest {
                case_id: case_id.to_string(),
            },
            &operator,
        ))
        .await?
        .into_inner();
    assert_eq!(
        case.household.expect("household").families[0].members[0].full_name,
        "Asep Sunandar"
    );

    // A second proposal's row given the first one's sealed household: it does not open.
    let mut other = super::household();
    other.families[0].members.truncate(1);
    other.families[0].members[0].nik = "3204051203800009".into();
    let second = super::submit_household(&stack, &operator, "sealed-2", "SEALED-2", other).await?;
    stack
        .db
        .execute_raw(dtks_platform::db::stmt(
            "UPDATE intake.proposals SET household = (SELECT household FROM intake.proposals WHERE proposal_id = $1) WHERE proposal_id = $2",
            [
                uuid::Uuid::parse_str(&first.proposal_id)?.into(),
                uuid::Uuid::parse_str(&second.proposal_id)?.into(),
            ],
        ))
        .await?;
    let refused = intake
        .get_proposal(authed(
            GetProposalRequest {
                proposal_id: second.proposal_id.clone(),
            },
            &operator,
        ))
        .await
        .expect_err("a moved sealed value does not open");
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    assert!(!refused.message().contains("Asep"));
    Ok(())
}
