//! Redis: a namespaced cache with TTLs for personal data. Keys name a personal value only
//! by its keyed hash ([`Cache::personal_key`]), never in clear; values are JSON sealed
//! with the data keys (AES-256-GCM, bound to their key), so Redis holds nothing readable.

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

    /// The key for `value` (a NIK) of `kind` (`dci:nik`): `<kind>:<keyed hash>`.
    pub fn personal_key(kind: &str, value: &str) -> anyhow::Result<String> {
        Ok(format!(
            "{kind}:{}",
            crate::sealed::ring()?.keyed_hash(kind, value)
        ))
    }

    fn seal<T: Serialize>(full_key: &str, value: &T) -> anyhow::Result<Vec<u8>> {
        let ring = crate::sealed::ring()?;
        Ok(ring.seal(full_key.as_bytes(), &serde_json::to_vec(value)?))
    }

    fn open<T: DeserializeOwned>(full_key: &str, stored: &[u8]) -> anyhow::Result<T> {
        if !stored.starts_with(b"DTKS") {
            anyhow::bail!("a cache value that is not sealed is not read");
        }
        let plain = crate::sealed::ring()?.open(full_key.as_bytes(), stored)?;
        Ok(serde_json::from_slice(&plain)?)
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let full = self.key(key);
        let raw: Option<Vec<u8>> = self.conn.clone().get(&full).await?;
        raw.map(|stored| Self::open(&full, &stored)).transpose()
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
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&full)
            .query_async(&mut self.conn.clone())
            .await?;
        raw.into_iter()
            .zip(&full)
            .map(|(stored, key)| stored.map(|s| Self::open(key, &s)).transpose())
            .collect()
    }

    pub async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl_secs: u64,
    ) -> anyhow::Result<()> {
        let full = self.key(key);
        let sealed = Self::seal(&full, value)?;
        let _: () = self.conn.clone().set_ex(&full, sealed, ttl_secs).await?;
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
            let full = self.key(key);
            pipe.set_ex(&full, Self::seal(&full, value)?, ttl_secs)
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
