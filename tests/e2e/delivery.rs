//! Delivery of a fixed list: only fixed lists, only to those who receive lists, batches
//! in list order with a cursor a client resumes from after a broken connection, every
//! delivery and batch in the audit, and a completed delivery announced.

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::*;
use sea_orm::ConnectionTrait;
use tonic::Code;

const ENTRIES: i64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_list_streams_resumes_after_a_break_and_every_batch_is_audited()
-> anyhow::Result<()> {
    let stack = Stack::start_services(super::REGISTRY, &["distribution"], &[]).await?;
    // A client that takes 64 KiB at a time: the service runs only so far ahead of it.
    let channel = stack.narrow_channel("distribution", 64 * 1024).await?;
    let mut client = DistributionServiceClient::new(channel);
    // A fixed list of 50,000 households and a draft, as BuildList and ApproveList leave
    // them.
    let (fixed, draft) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let period = dtks_e2e::time::period();
    stack
        .db
        .execute_unprepared(&format!(
            "INSERT INTO distribution.lists (list_id, programme_code, programme_version, year, month, recipients, content_hash, status, regions)
             VALUES ('{fixed}', 'PKH', 1, {year}, {month}, {ENTRIES}, 'h', {fixed_status}, '[]'),
                    ('{draft}', 'KIP', 1, {year}, {month}, 0, 'h', {draft_status}, '[]');
             INSERT INTO distribution.list_chunks (list_id, first_position, entries, data)
             SELECT '{fixed}', min(g), count(*), string_agg(distribution.list_entry_bytes(
                        md5(g::text)::uuid, g * 3, (1 + (g * 10 / ({ENTRIES} + 1)))::smallint, '32.04.05.2001',
                        '32040512038' || lpad(g::text, 5, '0'), 'Kepala ' || g), ''::bytea ORDER BY g)
             FROM generate_series(1, {ENTRIES}) g GROUP BY (g - 1) / 5000",
            fixed_status = ListStatus::Fixed as i32,
            draft_status = ListStatus::Draft as i32,
            year = period.year,
            month = period.month,
        ))
        .await?;
    // The view reads the chunks back as rows, as the service's decoder does.
    let n = count(
        &stack,
        &format!(
            "SELECT count(*)::bigint AS n FROM distribution.list_entries
             WHERE list_id = '{fixed}' AND national_rank = position * 3 AND head_name = 'Kepala ' || position
               AND head_nik = '32040512038' || lpad(position::text, 5, '0') AND region_code = '32.04.05.2001'"
        ),
    )
    .await?;
    assert_eq!(n, ENTRIES);
    let system = stack.token_for("bansos-pkh", Role::Service, "");
    let request = |list: uuid::Uuid, cursor: &str, batch_size: u32| StreamListRequest {
        list_id: list.to_string(),
        cursor: cursor.into(),
        batch_size,
    };

    // Refusals before any batch: a draft, a role that does not receive lists, a batch
    // too large, a cursor this service never gave.
    let refused = client
        .stream_list(authed(request(draft, "", 100), &system))
        .await
        .expect_err("draft");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let refused = client
        .stream_list(authed(
            request(fixed, "", 100),
            &stack.token(Role::Public, ""),
        ))
        .await
        .expect_err("public");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = client
        .stream_list(authed(request(fixed, "", 6000), &system))
        .await
        .expect_err("batch");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .stream_list(authed(request(fixed, "12", 100), &system))
        .await
        .expect_err("cursor");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM distribution.deliveries").await?,
        0,
        "a refused delivery leaves nothing"
    );

    // The first two batches, then the connection breaks.
    let mut received = Vec::new();
    let mut stream = client
        .stream_list(authed(request(fixed, "", 1000), &system))
        .await?
        .into_inner();
    let mut cursor = String::new();
    for _ in 0..2 {
        let batch = stream.message().await?.expect("a batch");
        received.extend(batch.recipients.iter().map(|r| r.national_rank));
        cursor = batch.cursor;
    }
    drop(stream);
    assert_eq!(received.len(), 2000);
    // Resumed from the cursor: the rest, each household once, in order.
    let mut stream = client
        .stream_list(authed(request(fixed, &cursor, 5000), &system))
        .await?
        .into_inner();
    let mut last = None;
    while let Some(batch) = stream.message().await? {
        assert!(batch.recipients.len() <= 5000);
        if let Some(r) = batch.recipients.first() {
            assert_eq!(r.head_name, format!("Kepala {}", r.national_rank / 3));
            assert_eq!(r.head_nik.len(), 16);
        }
        received.extend(batch.recipients.iter().map(|r| r.national_rank));
        last = Some(batch.cursor);
    }
    assert_eq!(last.as_deref(), Some(format!("p{ENTRIES}").as_str()));
    let expected: Vec<u64> = (1..=ENTRIES as u64).map(|g| g * 3).collect();
    assert_eq!(received, expected);

    // The audit: two deliveries by the system; the broken one unfinished with what it
    // sent, the resumed one finished with the rest; every batch's rows add up.
    let audit = stack
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT d.recipient, d.from_cursor, d.rows, d.finished_at IS NOT NULL AS finished,
                    (SELECT coalesce(sum(b.rows), 0)::bigint FROM distribution.delivery_batches b WHERE b.delivery_id = d.delivery_id) AS batched
             FROM distribution.deliveries d ORDER BY d.started_at",
        ))
        .await?;
    assert_eq!(audit.len(), 2);
    let field = |i: usize, c: &str| audit[i].try_get::<i64>("", c);
    assert_eq!(audit[0].try_get::<String>("", "recipient")?, "bansos-pkh");
    assert!(
        !audit[0].try_get::<bool>("", "finished")?,
        "the broken delivery did not finish"
    );
    assert!(
        (2000..ENTRIES).contains(&field(0, "rows")?),
        "{}",
        field(0, "rows")?
    );
    assert_eq!(field(0, "rows")?, field(0, "batched")?);
    assert_eq!(audit[1].try_get::<String>("", "from_cursor")?, cursor);
    assert!(audit[1].try_get::<bool>("", "finished")?);
    assert_eq!(field(1, "rows")?, ENTRIES - 2000);
    assert_eq!(field(1, "batched")?, ENTRIES - 2000);
    // Only the completed delivery is announced.
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM distribution.outbox WHERE event_type = 'distribution.delivered'"
        )
        .await?,
        1
    );
    Ok(())
}
