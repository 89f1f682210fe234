//! The civil-registry port and its DCI adapter (`/registry/sync/search` by NIK).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the civil registry says about one NIK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryPerson {
    pub full_name: String,
    pub birth_date: String,
    pub sex: String,
    pub village_code: String,
    pub deceased: bool,
}

#[derive(Clone)]
pub struct DciRegistry {
    http: reqwest::Client,
    base_url: String,
}

impl DciRegistry {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Looks one NIK up; `Ok(None)` when the registry does not know it.
    pub async fn find_by_nik(&self, nik: &str) -> anyhow::Result<Option<RegistryPerson>> {
        let now = chrono::Utc::now().to_rfc3339();
        let body = json!({
            "signature": "",
            "header": {
                "version": "1.0.0", "message_id": uuid::Uuid::new_v4().to_string(), "message_ts": now,
                "action": "search", "sender_id": "dtks-matching", "receiver_id": "dukcapil",
                "total_count": 1, "is_msg_encrypted": false,
            },
            "message": {
                "transaction_id": uuid::Uuid::new_v4().to_string(),
                "search_request": [{
                    "reference_id": "1", "timestamp": now,
                    "search_criteria": {
                        "version": "1.0.0", "reg_event_type": "REGISTER", "query_type": "idtype-value",
                        "query": { "type": "NIK", "value": nik },
                        "pagination": { "page_size": 1, "page_number": 1 },
                    },
                }],
            },
        });
        let response: Value = self
            .http
            .post(format!("{}/registry/sync/search", self.base_url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let answer = response
            .pointer("/message/search_response/0")
            .ok_or_else(|| anyhow::anyhow!("DCI answer without search_response"))?;
        anyhow::ensure!(
            answer.get("status").and_then(Value::as_str) == Some("succ"),
            "DCI search refused: {}",
            answer.get("status_reason_message").unwrap_or(&Value::Null)
        );
        let Some(record) = answer.pointer("/data/reg_records/0") else {
            return Ok(None);
        };
        let text = |p: &str| {
            record
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Some(RegistryPerson {
            full_name: text("/name/given_name"),
            birth_date: text("/birth_date"),
            sex: text("/sex"),
            village_code: text("/address/0/region_code"),
            deceased: !text("/death_date").is_empty(),
        }))
    }
}
