//! Redis: a namespaced JSON cache with TTLs.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::{Serialize, de::DeserializeOwned};

use crate::config::RedisConfig;

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    namespace: String,
}

impl Cache {
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.url.expose_secret())?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            namespace: config.namespace.clone(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let raw: Option<String> = self.conn.clone().get(self.key(key)).await?;
        Ok(match raw {
            Some(text) => Some(serde_json::from_str(&text)?),
            None => None,
        })
    }

    pub async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl_secs: u64,
    ) -> anyhow::Result<()> {
        let text = serde_json::to_string(value)?;
        let _: () = self
            .conn
            .clone()
            .set_ex(self.key(key), text, ttl_secs)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let _: () = self.conn.clone().del(self.key(key)).await?;
        Ok(())
    }
}
