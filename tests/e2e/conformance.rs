//! The reference civil registry against the DCI standard it speaks
//! (`../shared/specs/dci/registry_core_api_v1.0.0.yaml`): schemathesis runs every
//! operation the registry implements — sync and async search, subscribe, unsubscribe,
//! sync and async transaction status — with every check it has, signed and
//! authenticated as a trusted sender (`tests/conformance/dci_hooks.py` says what it
//! leaves out, and why); and the answers the probe found wrong are shown one by one.

use std::time::Duration;

use dtks_e2e::time::patience;
use dtks_e2e::{Stack, bin_dir};
use serde_json::{Value, json};

/// Two persons of one family in Kabupaten Bandung.
const REGISTRY: &str = "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date
3204051203800001,3204050505150001,Asep Sunandar,Bandung,1980-03-12,1,32.04.05.2001,
3204055708840002,3204050505150001,Siti Aminah,Bandung,1984-08-17,2,32.04.05.2001,
";

const AUDIENCE: &str = "dukcapil-reference";

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn signer(stack: &Stack) -> anyhow::Result<dtks_platform::dci::Signer> {
    dtks_platform::dci::Signer::new(
        "dtks-matching",
        "k1",
        stack
            .setting("DTKS_DCI__SIGNING_KEY")
            .ok_or_else(|| anyhow::anyhow!("the run's matching key"))?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_departure_from_the_registry_core_api() -> anyhow::Result<()> {
    let spec = repo().join("../shared/specs/dci/registry_core_api_v1.0.0.yaml");
    anyhow::ensure!(
        spec.exists(),
        "the DCI standard is expected at {}",
        spec.display()
    );
    let tools = tokio::process::Command::new(repo().join("scripts/dci-tools.sh"))
        .output()
        .await?;
    anyhow::ensure!(
        tools.status.success(),
        "scripts/dci-tools.sh failed: {}",
        String::from_utf8_lossy(&tools.stderr)
    );
    let tools = String::from_utf8(tools.stdout)?.trim().to_owned();
    let stack = Stack::start_services(REGISTRY, &[], &[]).await?;
    stack.wait_registry().await?;
    let signer = signer(&stack)?;
    let examples = std::env::var("DTKS_DCI_EXAMPLES").unwrap_or_else(|_| "300".into());
    let run = tokio::process::Command::new(format!("{tools}/bin/schemathesis"))
        .current_dir(std::env::temp_dir())
        .env("PYTHONPATH", repo().join("tests/conformance"))
        .env("SCHEMATHESIS_HOOKS", "dci_hooks")
        .env("DTKS_DCTL", bin_dir().join("dtksctl"))
        .env(
            "DTKS_DCI__SIGNING_KEY",
            stack.setting("DTKS_DCI__SIGNING_KEY").unwrap_or_default(),
        )
        .env("NO_COLOR", "1")
        .arg("run")
        .arg(&spec)
        .args(["--url", &stack.registry_url()])
        .args(["--checks", "all"])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", signer.bearer(AUDIENCE, 3600)),
        ])
        .args([
            "--include-path-regex",
            "^/registry/(sync/search|search|subscribe|unsubscribe|txn/status|sync/txn/status)$",
        ])
        .args(["--max-examples", &examples])
        // One worker: hypothesis's generation is not safe on several threads here.
        .args(["--workers", "1", "--continue-on-failure"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(patience(900), run).await??;
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(
        out.status.success(),
        "schemathesis found departures (above)"
    );
    // Every operation ran, and cases were generated and passed.
    assert!(text.contains("Tested: 6"), "not every operation ran");
    let summary = text
        .lines()
        .find(|l| l.contains("generated") && l.contains("passed"))
        .ok_or_else(|| anyhow::anyhow!("no summary line"))?;
    println!("dci conformance: {}", summary.trim());
    Ok(())
}

/// What the probe found wrong, answer by answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_answers_as_the_dci_standard_says() -> anyhow::Result<()> {
    let stack = Stack::start_services(REGISTRY, &[], &[]).await?;
    stack.wait_registry().await?;
    let signer = signer(&stack)?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value, bearer: bool| {
        let mut request = http
            .post(format!("{}{path}", stack.registry_url()))
            .json(&body);
        if bearer {
            request = request.bearer_auth(signer.bearer(AUDIENCE, 60));
        }
        request.send()
    };
    let sealed = |action: &str, sender_uri: Option<&str>, message: Value| {
        dtks_platform::dci::seal(
            Some(&signer),
            dtks_platform::dci::header("dtks-matching", action, AUDIENCE, sender_uri, 1),
            message,
        )
    };
    let search = |transaction: &str| {
        json!({
            "transaction_id": transaction,
            "search_request": [{
                "reference_id": "r1", "timestamp": "2026-01-02T03:04:05Z",
                "search_criteria": {
                    "reg_event_type": "REGISTER", "query_type": "predicate",
                    "query": [{
                        "seq_num": 1,
                        "expression1": {"attribute_name": "kk_number", "operator": "eq", "attribute_value": "3204050505150001"},
                        "condition": "and",
                        "expression2": {"attribute_name": "sex", "operator": "eq", "attribute_value": "female"},
                    }],
                },
            }],
        })
    };

    // A synchronous search: correlation id, record type, and the records as an object.
    let answer: Value = post(
        "/registry/sync/search",
        sealed("search", None, search("t-sync")),
        true,
    )
    .await?
    .json()
    .await?;
    let message = &answer["message"];
    assert_eq!(message["transaction_id"], "t-sync", "{answer}");
    assert!(
        message["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{answer}"
    );
    let data = &message["search_response"][0]["data"];
    assert_eq!(data["reg_record_type"], "CRVS_Person", "{answer}");
    assert!(data["reg_records"].is_object(), "{answer}");
    let graph = data["reg_records"]["@graph"].as_array().expect("@graph");
    assert_eq!(graph.len(), 1, "the mother only: {answer}");
    assert_eq!(graph[0]["name"]["given_name"], "Siti Aminah");
    assert_eq!(answer["header"]["status"], "succ");

    // An asynchronous search without sender_uri (optional): answered on the callback
    // registered for the sender, and its status can be asked for, synchronously.
    let ack: Value = post(
        "/registry/search",
        sealed("search", None, search("t-async")),
        true,
    )
    .await?
    .json()
    .await?;
    assert_eq!(ack["message"]["ack_status"], "ACK", "{ack}");
    let correlation = ack["message"]["correlation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let status = |attribute_type: &str, value: Value| {
        json!({
            "transaction_id": "t-status",
            "txnstatus_request": {
                "reference_id": "s1", "txn_type": "search",
                "attribute_type": attribute_type, "attribute_value": value,
            },
        })
    };
    let mut found = Value::Null;
    for _ in 0..50 {
        let answer: Value = post(
            "/registry/sync/txn/status",
            sealed(
                "txn-status",
                None,
                status("transaction_id", json!("t-async")),
            ),
            true,
        )
        .await?
        .json()
        .await?;
        let txn = &answer["message"]["txnstatus_response"];
        if txn["txn_status"]["search_response"][0]["status"] == "succ" {
            assert_eq!(txn["txn_type"], "on-search", "{answer}");
            found = txn["txn_status"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found["correlation_id"], correlation.as_str(), "{found}");
    assert_eq!(
        found["search_response"][0]["data"]["reg_records"]["@graph"][0]["name"]["given_name"],
        "Siti Aminah"
    );
    // By correlation id, asynchronously: acknowledged.
    let ack: Value = post(
        "/registry/txn/status",
        sealed(
            "txn-status",
            None,
            status("correlation_id", json!(correlation)),
        ),
        true,
    )
    .await?
    .json()
    .await?;
    assert_eq!(ack["message"]["ack_status"], "ACK", "{ack}");
    // A transaction not on record: 404, in the standard's error shape.
    let unknown = post(
        "/registry/sync/txn/status",
        sealed(
            "txn-status",
            None,
            status("transaction_id", json!("never-sent")),
        ),
        true,
    )
    .await?;
    assert_eq!(unknown.status().as_u16(), 404);
    let body: Value = unknown.json().await?;
    assert_eq!(body["errors"][0]["code"], "err.request.not_found", "{body}");

    // A subscription to `live_birth`, the standard's name for a birth.
    let subscribed: Value = post(
        "/registry/subscribe",
        sealed(
            "subscribe",
            None,
            json!({
                "transaction_id": "t-sub",
                "subscribe_request": [{
                    "reference_id": "b1", "timestamp": "2026-01-02T03:04:05Z",
                    "subscribe_criteria": {
                        "reg_event_type": "live_birth", "filter": [],
                        "notify_record_type": "CRVS_Person",
                    },
                }],
            }),
        ),
        true,
    )
    .await?
    .json()
    .await?;
    assert_eq!(subscribed["message"]["ack_status"], "ACK", "{subscribed}");
    let answer: Value = post(
        "/registry/sync/txn/status",
        sealed(
            "txn-status",
            None,
            json!({
                "transaction_id": "t-sub-status",
                "txnstatus_request": {
                    "reference_id": "s2", "txn_type": "subscribe",
                    "attribute_type": "transaction_id", "attribute_value": "t-sub",
                },
            }),
        ),
        true,
    )
    .await?
    .json()
    .await?;
    let response = &answer["message"]["txnstatus_response"]["txn_status"]["subscribe_response"][0];
    assert_eq!(response["status"], "succ", "{answer}");
    assert_eq!(
        response["subscriptions"][0]["reg_event_type"], "live_birth",
        "{answer}"
    );

    // Refusals are JSON in the standard's shape, framework refusals included.
    let unauthenticated = post(
        "/registry/sync/search",
        sealed("search", None, search("t-no-bearer")),
        false,
    )
    .await?;
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let body: Value = unauthenticated.json().await?;
    assert_eq!(
        body["errors"][0]["code"], "err.request.unauthorized",
        "{body}"
    );
    let not_json = http
        .post(format!("{}/registry/sync/search", stack.registry_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(not_json.status().as_u16(), 400);
    let body: Value = not_json.json().await?;
    assert_eq!(body["errors"][0]["code"], "err.request.bad", "{body}");
    assert_eq!(body["header"]["status"], "rjct", "{body}");
    let nowhere = http
        .post(format!("{}/registry/elsewhere", stack.registry_url()))
        .send()
        .await?;
    assert_eq!(nowhere.status().as_u16(), 404);
    let body: Value = nowhere.json().await?;
    assert_eq!(body["errors"][0]["code"], "err.request.not_found", "{body}");
    // A header departing from the standard names the field.
    let mut bad = sealed("search", None, search("t-bad"));
    bad["header"]["message_ts"] = json!("yesterday");
    bad["signature"] = json!(signer.sign(&bad["header"], &bad["message"]));
    let refused = post("/registry/sync/search", bad, true).await?;
    assert_eq!(refused.status().as_u16(), 400);
    let body: Value = refused.json().await?;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("header.message_ts"),
        "{body}"
    );
    Ok(())
}

/// Searches of one shape in one message are answered by one statement (each search's
/// values a row): every answer — its page and its total — is the one the search gets
/// alone, names with quotes and backslashes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_of_one_shape_answer_together_as_each_alone() -> anyhow::Result<()> {
    let names = [
        "Siti Aminah",
        "Siti Nurhaliza",
        "Asep Sunandar",
        "Nur \"Ani\" Rahma",
        "Back\\slash Siti",
    ];
    let mut csv = String::from(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
    );
    // (name, regency, birth year) of each person, to count what a search must find.
    let mut people: Vec<(&str, &str, u32)> = Vec::new();
    for i in 0..40u32 {
        let village = if i % 2 == 0 {
            "32.04.05.2001"
        } else {
            "33.74.01.1001"
        };
        people.push((names[(i % 5) as usize], &village[..5], 1980 + i % 4));
        let name = names[(i % 5) as usize].replace('"', "\"\"");
        csv.push_str(&format!(
            "32040512038{i:05},3204050505{i:06},\"{name}\",Bandung,{}-03-12,{},{village},\n",
            1980 + i % 4,
            1 + i % 2
        ));
    }
    let stack = Stack::start_services(&csv, &[], &[]).await?;
    stack.wait_registry().await?;
    let signer = signer(&stack)?;
    let http = reqwest::Client::new();
    let ask = |requests: Vec<Value>| {
        let (http, stack, signer) = (&http, &stack, &signer);
        async move {
            let message = json!({ "transaction_id": "t-many", "search_request": requests });
            let body = dtks_platform::dci::seal(
                Some(signer),
                dtks_platform::dci::header("dtks-matching", "search", AUDIENCE, None, 1),
                message,
            );
            let answer: Value = http
                .post(format!("{}/registry/sync/search", stack.registry_url()))
                .bearer_auth(signer.bearer(AUDIENCE, 60))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(answer["message"]["search_response"].clone())
        }
    };
    let term = |name: &str, operator: &str, value: &str| json!({"attribute_name": name, "operator": operator, "attribute_value": value});
    let mut requests = Vec::new();
    let mut expected: Vec<u64> = Vec::new();
    for (i, part) in ["Siti", "Nur", "\"Ani\"", "Back\\slash", "Nobody"]
        .iter()
        .enumerate()
    {
        for regency in ["32.04", "33.74"] {
            let query = json!([
                {"expression1": term("name_part", "eq", part), "condition": "and",
                 "expression2": term("regency_code", "eq", regency)},
                {"expression1": term("birth_date", "ge", "1980-01-01"), "condition": "and",
                 "expression2": term("birth_date", "le", &format!("{}-12-31", 1981 + i % 2))},
            ]);
            // What it must count: the part among the name's, in the regency, born from
            // 1980 to the end of its last year.
            let last = 1981 + i as u32 % 2;
            expected.push(
                people
                    .iter()
                    .filter(|(name, r, year)| {
                        *r == regency
                            && *year <= last
                            && name
                                .split_whitespace()
                                .any(|p| p.eq_ignore_ascii_case(part))
                    })
                    .count() as u64,
            );
            requests.push(json!({
                "reference_id": format!("{part}-{regency}"), "timestamp": "2026-01-02T03:04:05Z",
                "search_criteria": {"reg_event_type": "REGISTER", "query_type": "predicate",
                                    "query": query, "pagination": {"page_size": 3}},
            }));
        }
        expected.push(people.iter().filter(|(n, _, _)| *n == names[i]).count() as u64);
        let query = json!([{"expression1": term("name", "eq", names[i]), "condition": "and",
                            "expression2": term("regency_code", "in", "32.04,33.74")}]);
        requests.push(json!({
            "reference_id": format!("name-{i}"), "timestamp": "2026-01-02T03:04:05Z",
            "search_criteria": {"reg_event_type": "REGISTER", "query_type": "predicate",
                                "query": query, "pagination": {"page_size": 3}},
        }));
    }
    let together = ask(requests.clone()).await?;
    let together = together.as_array().expect("the answers");
    assert_eq!(together.len(), requests.len());
    let mut found = 0;
    for ((request, answer), expected) in requests.into_iter().zip(together).zip(expected) {
        let alone = ask(vec![request.clone()]).await?;
        let alone = &alone[0];
        assert_eq!(answer["status"], "succ", "{answer}");
        assert_eq!(answer["reference_id"], request["reference_id"]);
        assert_eq!(
            answer["data"]["reg_records"], alone["data"]["reg_records"],
            "{request}"
        );
        assert_eq!(answer["pagination"], alone["pagination"], "{request}");
        let total = answer["pagination"]["total_count"].as_u64().unwrap_or(0);
        assert_eq!(total, expected, "{request}");
        found += total;
    }
    // Searches that find people, some beyond their page: the comparison holds something.
    assert!(found > 40, "{found}");
    Ok(())
}
