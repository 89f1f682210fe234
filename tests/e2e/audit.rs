//! The audit log of personal-data reads: each read of a household's record or standing
//! is an entry of determination's hash-chained log; the log refuses changes; and
//! `dtksctl audit verify` finds every kind of tampering done by someone who switched the
//! refusal off — an entry altered, removed, moved, or cut from the end.

use dtks_e2e::{Stack, authed, registry_id};
use dtks_platform::auth::Role;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::{
    DetermineRequest, GetHouseholdStandingRequest, GetRegistryHouseholdRequest,
};
use sea_orm::ConnectionTrait;
use sqlx::Connection;

/// Runs SQL as the log's owner with the append-only trigger off, then puts it back.
async fn tamper(stack: &Stack, sql: &str) -> anyhow::Result<()> {
    stack
        .db
        .execute_unprepared(&format!(
            "ALTER TABLE determination.audit_log DISABLE TRIGGER audit_log_append_only;
             {sql};
             ALTER TABLE determination.audit_log ENABLE TRIGGER audit_log_append_only;"
        ))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_audited_and_the_verifier_finds_every_kind_of_tampering() -> anyhow::Result<()> {
    let stack = Stack::start_services(super::REGISTRY, &["determination"], &[]).await?;
    let mut conn = sqlx::PgConnection::connect(&stack.database_url).await?;
    dtks_e2e::fill_registry(&mut conn, 0, 3).await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    let mut client = DeterminationServiceClient::new(stack.channel("determination").await?);
    let period = dtks_e2e::time::period();
    client
        .determine(authed(
            DetermineRequest {
                period: Some(period),
            },
            &admin,
        ))
        .await?;
    for i in 0..3 {
        client
            .get_registry_household(authed(
                GetRegistryHouseholdRequest {
                    household_id: registry_id(i).to_string(),
                    as_of: None,
                },
                &admin,
            ))
            .await?;
    }
    for i in 0..2 {
        client
            .get_household_standing(authed(
                GetHouseholdStandingRequest {
                    household_id: registry_id(i).to_string(),
                    period: Some(period),
                },
                &admin,
            ))
            .await?;
    }
    let rows = stack
        .db
        .query_all_raw(dtks_platform::db::stmt(
            "SELECT action, actor, records FROM determination.audit_log ORDER BY seq",
            [],
        ))
        .await?;
    assert_eq!(rows.len(), 5);
    let first_records: Vec<String> = rows[0].try_get("", "records")?;
    assert_eq!(first_records, [registry_id(0).to_string()]);
    assert_eq!(
        rows[4].try_get::<String>("", "action")?,
        "determination.GetHouseholdStanding"
    );
    assert_eq!(rows[4].try_get::<String>("", "actor")?, "e2e-officer");

    let verify = |head: Option<String>| {
        let stack = &stack;
        async move {
            let mut args = vec![
                "audit".to_owned(),
                "verify".to_owned(),
                "--service".to_owned(),
                "determination".to_owned(),
                "--database-url".to_owned(),
                stack.database_url.clone(),
            ];
            if let Some(head) = head {
                args.extend(["--head".to_owned(), head]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stack.dtksctl("", &args).await
        }
    };
    let (code, out, err) = verify(None).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact, 5 entries"), "{out}");
    let head = out
        .split("head ")
        .nth(1)
        .map(|h| h.trim().to_owned())
        .expect("a head");
    assert!(head.starts_with("5:"), "{head}");

    // The log refuses changes.
    for sql in [
        "UPDATE determination.audit_log SET actor = 'x' WHERE seq = 1",
        "DELETE FROM determination.audit_log WHERE seq = 1",
        "TRUNCATE determination.audit_log",
    ] {
        let refused = stack.db.execute_unprepared(sql).await.expect_err(sql);
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }

    // Each kind of tampering, on a copy of the log put back after each check.
    stack
        .db
        .execute_unprepared(
            "CREATE TABLE public.audit_copy AS SELECT * FROM determination.audit_log",
        )
        .await?;
    let restore = "DELETE FROM determination.audit_log; INSERT INTO determination.audit_log SELECT * FROM public.audit_copy";
    for (what, sql, expected) in [
        (
            "altered",
            "UPDATE determination.audit_log SET records = ARRAY['someone-else'] WHERE seq = 2",
            "entry 2 was altered",
        ),
        (
            "removed",
            "DELETE FROM determination.audit_log WHERE seq = 3",
            "entries 3..3 are missing",
        ),
        (
            "moved",
            "UPDATE determination.audit_log SET seq = -2 WHERE seq = 2;
             UPDATE determination.audit_log SET seq = 2 WHERE seq = 3;
             UPDATE determination.audit_log SET seq = 3 WHERE seq = -2",
            // The number is part of what an entry's hash covers.
            "entry 2 was altered",
        ),
    ] {
        tamper(&stack, sql).await?;
        let (code, out, err) = verify(None).await?;
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(out.contains(expected), "{what}: {out}");
        tamper(&stack, restore).await?;
    }
    // Cut from the end: the log alone still links; the kept head finds it.
    tamper(&stack, "DELETE FROM determination.audit_log WHERE seq = 5").await?;
    let (code, out, _) = verify(None).await?;
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = verify(Some(head.clone())).await?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("before the known head 5"), "{out}");
    tamper(&stack, restore).await?;
    let (code, out, _) = verify(Some(head)).await?;
    assert_eq!(code, 0, "restored: {out}");

    // Concurrent reads take turns: every one is answered and appended, none twice in
    // one place, and the chain still holds.
    use futures::StreamExt;
    let answered = futures::stream::iter(0..40u64)
        .map(|i| {
            let mut client = client.clone();
            let admin = admin.clone();
            async move {
                client
                    .get_registry_household(authed(
                        GetRegistryHouseholdRequest {
                            household_id: registry_id(i % 3).to_string(),
                            as_of: None,
                        },
                        &admin,
                    ))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await;
    assert!(answered.iter().all(Result::is_ok), "{answered:?}");
    assert_eq!(
        dtks_e2e::count(
            &stack,
            "SELECT count(*)::bigint AS n FROM determination.audit_log"
        )
        .await?,
        45
    );
    let (code, out, _) = verify(None).await?;
    assert_eq!(code, 0, "after concurrent appends: {out}");
    Ok(())
}
