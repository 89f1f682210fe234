//! The audit log of personal-data reads, as a transparency log: each read of a household's
//! record or standing is an entry of determination's log; the sequencer puts entries in
//! its Merkle tree under signed heads; each month's determination publishes a
//! checkpoint; the log refuses changes; and `dtksctl audit verify` finds every kind of
//! tampering done by someone who switched the refusal off — an entry changed, a leaf
//! removed, reordered or inserted, a head forged, an entry kept out of the tree, history
//! cut after a checkpoint was published.

use dtks_e2e::{Stack, authed, count_becomes, registry_id};
use dtks_platform::auth::Role;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::{
    DetermineRequest, GetHouseholdStandingRequest, GetRegistryHouseholdRequest,
};
use sea_orm::ConnectionTrait;
use sqlx::Connection;

const TABLES: [&str; 3] = ["audit_log", "audit_leaf", "audit_head"];

/// Runs SQL as the log's owner with the append-only triggers off, then puts them back.
async fn tamper(stack: &Stack, sql: &str) -> anyhow::Result<()> {
    let toggle = |how: &str| {
        TABLES
            .iter()
            .map(|t| format!("ALTER TABLE determination.{t} {how} TRIGGER {t}_append_only;"))
            .collect::<String>()
    };
    stack
        .db
        .execute_unprepared(&format!(
            "{} {sql}; {}",
            toggle("DISABLE"),
            toggle("ENABLE")
        ))
        .await?;
    Ok(())
}

/// Waits until the sequencer has put `n` entries in the tree under a signed head.
async fn sequenced(stack: &Stack, n: i64) -> anyhow::Result<()> {
    count_becomes(
        stack,
        30,
        "SELECT coalesce(max(tree_size), 0)::bigint AS n FROM determination.audit_head",
        n,
    )
    .await
}

/// An entry written by hand, and its leaf hash as bytea literal.
fn forged_entry(id: i64) -> (String, String) {
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("a time");
    let entry = dtks_platform::audit::Entry {
        id,
        at,
        actor: "intruder".into(),
        role: "pusdatin_admin".into(),
        action: "determination.GetRegistryHousehold".into(),
        records: vec!["forged".into()],
        request_id: "none".into(),
    };
    let insert = format!(
        "INSERT INTO determination.audit_log (id, at, actor, role, action, records, request_id)
         VALUES ({id}, '{}', 'intruder', 'pusdatin_admin', 'determination.GetRegistryHousehold',
                 ARRAY['forged'], 'none')",
        at.to_rfc3339()
    );
    let hash = format!(
        "'\\x{}'::bytea",
        hex::encode(dtks_platform::audit::leaf_hash(&entry))
    );
    (insert, hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_audited_and_the_verifier_finds_every_kind_of_tampering() -> anyhow::Result<()> {
    let stack = Stack::start_services(super::REGISTRY, &["determination"], &[]).await?;
    let mut conn = sqlx::PgConnection::connect(&stack.database_url).await?;
    dtks_e2e::fill_registry(&mut conn, 0, 3).await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    let mut client = DeterminationServiceClient::new(stack.channel("determination").await?);
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
    sequenced(&stack, 3).await?;
    // The month's determination publishes the log's head as it stood.
    let period = dtks_e2e::time::period();
    let snapshot = client
        .determine(authed(
            DetermineRequest {
                period: Some(period),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let published = snapshot.audit_checkpoint.expect("a published checkpoint");
    assert_eq!(published.tree_size, 3);
    assert!(published.text.starts_with("3:"), "{}", published.text);
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
            "SELECT action, actor, records FROM determination.audit_log ORDER BY id",
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
    sequenced(&stack, 5).await?;

    let verify = |extra: Vec<String>| {
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
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stack.dtksctl("", &args).await
        }
    };
    let with_published = || vec!["--checkpoint".to_owned(), published.text.clone()];
    let (code, out, err) = verify(with_published()).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact, 5 entries"), "{out}");
    let checkpoint = out
        .split("checkpoint ")
        .nth(1)
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .expect("a checkpoint");
    assert!(checkpoint.starts_with("5:"), "{checkpoint}");
    let key = out.split("key ").nth(1).map(|k| k.trim().to_owned());
    let key = key.expect("the signing key");
    let pinned = || {
        vec![
            "--public-key".to_owned(),
            key.clone(),
            "--checkpoint".to_owned(),
            checkpoint.clone(),
        ]
    };
    let (code, out, err) = verify(pinned()).await?;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = verify(vec!["--public-key".into(), "00".repeat(32)]).await?;
    assert_eq!(code, 1, "another key: {out}");
    assert!(out.contains("does not carry a valid signature"), "{out}");

    // The log refuses changes.
    for sql in [
        "UPDATE determination.audit_log SET actor = 'x' WHERE id = 1",
        "DELETE FROM determination.audit_log WHERE id = 1",
        "TRUNCATE determination.audit_log CASCADE",
        "UPDATE determination.audit_leaf SET leaf_index = 9 WHERE leaf_index = 1",
        "DELETE FROM determination.audit_leaf",
        "DELETE FROM determination.audit_head",
    ] {
        let refused = stack.db.execute_unprepared(sql).await.expect_err(sql);
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }

    // Each kind of tampering, on copies of the tables put back after each check.
    for t in TABLES {
        stack
            .db
            .execute_unprepared(&format!(
                "CREATE TABLE public.{t}_copy AS SELECT * FROM determination.{t}"
            ))
            .await?;
    }
    let restore = "DELETE FROM determination.audit_head; DELETE FROM determination.audit_leaf;
         DELETE FROM determination.audit_log WHERE id NOT IN (SELECT id FROM public.audit_log_copy);
         DELETE FROM determination.audit_queue;
         UPDATE determination.audit_log e SET records = c.records, actor = c.actor
           FROM public.audit_log_copy c WHERE c.id = e.id;
         INSERT INTO determination.audit_leaf SELECT * FROM public.audit_leaf_copy;
         INSERT INTO determination.audit_head SELECT * FROM public.audit_head_copy";
    let (middle, middle_hash) = forged_entry(100);
    let (end, end_hash) = forged_entry(101);
    let (dropped, _) = forged_entry(102);
    for (what, sql, expected) in [
        (
            "changed",
            "UPDATE determination.audit_log SET records = ARRAY['someone-else']
              WHERE id = (SELECT entry_id FROM determination.audit_leaf WHERE leaf_index = 2)"
                .to_owned(),
            "leaf 2 was altered",
        ),
        (
            "removed",
            "DELETE FROM determination.audit_leaf WHERE leaf_index = 3".to_owned(),
            "leaves 3..3 are missing",
        ),
        (
            "removed and renumbered",
            "DELETE FROM determination.audit_leaf WHERE leaf_index = 3;
             UPDATE determination.audit_leaf SET leaf_index = 3 WHERE leaf_index = 4"
                .to_owned(),
            // Renumbered leaves give other heads; without a head between 3 and 5, the
            // one of size 5 now stands beyond the log's end.
            "no longer give the signed head|fewer than the head of size 5",
        ),
        (
            "reordered",
            "UPDATE determination.audit_leaf SET leaf_index = -1 WHERE leaf_index = 1;
             UPDATE determination.audit_leaf SET leaf_index = 1 WHERE leaf_index = 2;
             UPDATE determination.audit_leaf SET leaf_index = 2 WHERE leaf_index = -1"
                .to_owned(),
            "no longer give the signed head",
        ),
        (
            "inserted in the middle",
            format!(
                "{middle};
                 UPDATE determination.audit_leaf SET leaf_index = -leaf_index - 10 WHERE leaf_index >= 2;
                 UPDATE determination.audit_leaf SET leaf_index = -leaf_index - 9 WHERE leaf_index <= -10;
                 INSERT INTO determination.audit_leaf VALUES (2, 100, {middle_hash})"
            ),
            "no longer give the signed head",
        ),
        (
            "inserted at the end",
            format!("{end}; INSERT INTO determination.audit_leaf VALUES (5, 101, {end_hash})"),
            "leaf 5 is under no signed head",
        ),
        (
            "a head forged",
            "UPDATE determination.audit_head SET root = set_byte(root, 0, 255 - get_byte(root, 0))
              WHERE tree_size = 5"
                .to_owned(),
            "the head of size 5 does not carry a valid signature",
        ),
        (
            "an entry kept out of the tree",
            dropped,
            "entry 102 was written but is neither in the tree nor queued",
        ),
    ] {
        tamper(&stack, &sql).await?;
        let (code, out, err) = verify(Vec::new()).await?;
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(
            expected.split('|').any(|e| out.contains(e)),
            "{what}: {out}"
        );
        tamper(&stack, restore).await?;
        let (code, out, err) = verify(pinned()).await?;
        assert_eq!(code, 0, "restored after {what}: {out}{err}");
    }
    // Cut after the published checkpoint, heads and all: the checkpoint finds it.
    tamper(
        &stack,
        "DELETE FROM determination.audit_head WHERE tree_size > 2;
         DELETE FROM determination.audit_leaf WHERE leaf_index >= 2",
    )
    .await?;
    let (code, out, err) = verify(with_published()).await?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("fewer than the head of size 3"), "{out}");
    tamper(&stack, restore).await?;

    // Concurrent reads append side by side: every one is answered and sequenced once,
    // and the tree still verifies against the published checkpoint.
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
    sequenced(&stack, 45).await?;
    let (code, out, err) = verify(pinned()).await?;
    assert_eq!(code, 0, "after concurrent appends: {out}{err}");
    assert!(out.contains("intact, 45 entries"), "{out}");
    Ok(())
}
