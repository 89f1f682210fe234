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

    /// Several keys at once (one MGET); `None` where a key is absent.
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> anyhow::Result<Vec<Option<T>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&full)
            .query_async(&mut self.conn.clone())
            .await?;
        raw.into_iter()
            .map(|text| {
                text.map(|t| serde_json::from_str(&t))
                    .transpose()
                    .map_err(Into::into)
            })
            .collect()
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

    /// Several values at once, each with `ttl_secs` (one pipelined round trip).
    pub async fn put_many<T: Serialize>(
        &self,
        entries: &[(String, T)],
        ttl_secs: u64,
    ) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            pipe.set_ex(self.key(key), serde_json::to_string(value)?, ttl_secs)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let _: () = self.conn.clone().del(self.key(key)).await?;
        Ok(())
    }
}
