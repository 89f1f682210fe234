//! Programmes against the running distribution service: the shipped definitions are
//! there, a rule is checked when it is saved (the refusal names the field and the line
//! and column of the error), only the data unit saves, and every change is a version.

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::*;
use tonic::Code;
use tonic_types::StatusExt;

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|f| (f.field, f.description))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_checked_when_saved_and_every_change_is_a_version() -> anyhow::Result<()> {
    let stack = Stack::start_services(super::REGISTRY, &["distribution"], &[]).await?;
    let mut client = DistributionServiceClient::new(stack.channel("distribution").await?);
    let admin = stack.token(Role::PusdatinAdmin, "");

    let shipped = client
        .list_programmes(authed(ListProgrammesRequest {}, &admin))
        .await?
        .into_inner()
        .programmes;
    let codes: Vec<&str> = shipped.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(
        codes,
        ["BPNT", "DTKS-D1-4", "KIP", "PBI-JKN", "PKH", "RS-RTLH"]
    );
    assert!(
        shipped
            .iter()
            .all(|p| p.version == 1 && !p.source.is_empty())
    );

    let versions = || {
        count(
            &stack,
            "SELECT count(*) AS n FROM distribution.programme_versions",
        )
    };
    let before = versions().await?;
    let elderly = Programme {
        code: "ASPD".into(),
        name: "Asistensi Sosial Penyandang Disabilitas".into(),
        rule: "household.decile <= 4 &&\n  household.members.exists(p, p.disability == 'severe')"
            .into(),
        version: 0,
        quotas: [("32.04".to_owned(), 1200)].into(),
        source: "Permensos 9/2018, Pasal 3".into(),
    };
    // Only the data unit saves programmes.
    let refused = client
        .save_programme(authed(elderly.clone(), &stack.token(Role::EselonI, "")))
        .await
        .expect_err("not the data unit");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // A misspelt field is refused at its place, and so is everything else wrong.
    let mut bad = elderly.clone();
    bad.rule =
        "household.decile <= 4 &&\n  household.members.exists(p, p.disabilty == 'severe')".into();
    bad.quotas = [("32.04.05".to_owned(), 10), ("32.04".to_owned(), 5)].into();
    bad.code = "aspd".into();
    let refused = client
        .save_programme(authed(bad, &admin))
        .await
        .expect_err("bad programme");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let found = violations(&refused);
    let rule = found
        .iter()
        .find(|(f, _)| f == "rule")
        .expect("the rule is named");
    assert!(
        rule.1
            .starts_with("line 2, column 31: unknown field `p.disabilty`"),
        "{}",
        rule.1
    );
    assert!(
        found.iter().any(|(f, _)| f == "quotas[32.04.05]"),
        "{found:?}"
    );
    assert!(found.iter().any(|(f, _)| f == "code"), "{found:?}");
    for (rule, expected) in [
        ("household.decile <= ", "line 1"),
        ("household.size + 1", "true or false"),
        ("income > 0", "unknown name `income`"),
    ] {
        let mut bad = elderly.clone();
        bad.rule = rule.into();
        let refused = client
            .save_programme(authed(bad, &admin))
            .await
            .expect_err("bad rule");
        let found = violations(&refused);
        assert!(
            found
                .iter()
                .any(|(f, d)| f == "rule" && d.contains(expected)),
            "{rule}: {found:?}"
        );
    }
    assert_eq!(versions().await?, before, "nothing saved");

    // Saved at version 1; the same again changes nothing; a change is version 2.
    let saved = client
        .save_programme(authed(elderly.clone(), &admin))
        .await?
        .into_inner();
    assert_eq!(saved.version, 1);
    assert_eq!(saved.quotas.get("32.04"), Some(&1200));
    let again = client
        .save_programme(authed(elderly.clone(), &admin))
        .await?
        .into_inner();
    assert_eq!(again, saved);
    let mut wider = elderly.clone();
    wider.rule = "household.decile <= 5 && household.members.exists(p, p.disability != '')".into();
    let changed = client
        .save_programme(authed(wider, &admin))
        .await?
        .into_inner();
    assert_eq!(changed.version, 2);
    assert_eq!(versions().await?, before + 2);
    Ok(())
}
