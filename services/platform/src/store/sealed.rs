//! Personal data sealed at rest: columns that hold personal data no query needs (a
//! proposal's household as submitted, a case file's household and match, a proposed
//! person's name) are stored as AES-256-GCM ciphertext, bound to their table, column and
//! row so that a sealed value copied to another row does not open.
//!
//! Keys come from `DTKS_DATA_KEYS` (or `DTKS_DATA_KEYS_FILE`): `id:base64,id:base64,…`,
//! each key 32 random bytes (`dtksctl data-key` makes one); the first seals, every one
//! listed opens, so a key is rotated by putting the new one first and keeping the old
//! ones until their rows are rewritten. Each service process installs the ring once at
//! start ([`install`]).
//!
//! Layout: `DTKS\x01`, the key id's length and bytes, a 96-bit random nonce, then the
//! ciphertext with its tag. A value without the magic is read as written before sealing
//! began (no protobuf message starts with `D`, field 8 as an end-group).

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;

const MAGIC: &[u8] = b"DTKS\x01";

pub struct KeyRing {
    active: String,
    keys: HashMap<String, LessSafeKey>,
    random: SystemRandom,
    /// For keyed hashes of personal values (cache keys): derived from the active key, so
    /// it turns with it.
    hashing: ring::hmac::Key,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed with key `{0}`, which is not in DTKS_DATA_KEYS")]
    UnknownKey(String),
    #[error("the sealed value is damaged, or belongs to another row")]
    Damaged,
    #[error("no data keys are installed in this process")]
    NoKeys,
}

impl KeyRing {
    /// Parses `id:base64,…` (the first key seals).
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        let mut active = None;
        let mut hashing = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, material) = entry
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("a data key is `id:base64`"))?;
            anyhow::ensure!(
                !id.is_empty()
                    && id.len() < 64
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "a data key id is 1–63 letters, digits or dashes"
            );
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(material)
                .map_err(|_| anyhow::anyhow!("data key `{id}` is not base64"))?;
            anyhow::ensure!(bytes.len() == 32, "data key `{id}` must be 32 bytes");
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| anyhow::anyhow!("data key `{id}` was refused"))?;
            anyhow::ensure!(
                keys.insert(id.to_owned(), LessSafeKey::new(key)).is_none(),
                "data key `{id}` is listed twice"
            );
            if active.is_none() {
                active = Some(id.to_owned());
                let derived = ring::hmac::sign(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
                    b"dtks keyed hash v1",
                );
                hashing = Some(ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    derived.as_ref(),
                ));
            }
        }
        let active = active.ok_or_else(|| {
            anyhow::anyhow!("DTKS_DATA_KEYS names no key; make one with `dtksctl data-key`")
        })?;
        let hashing = hashing.ok_or_else(|| anyhow::anyhow!("no key to hash with"))?;
        Ok(Self {
            active,
            keys,
            random: SystemRandom::new(),
            hashing,
        })
    }

    /// A new random key in the `DTKS_DATA_KEYS` form, with `id`.
    pub fn generate(id: &str) -> String {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source");
        format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    /// Seals `plain` for the place named by `context` (table, column and row id).
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Vec<u8> {
        let key = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut out =
            Vec::with_capacity(MAGIC.len() + 1 + self.active.len() + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(MAGIC);
        out.push(self.active.len() as u8);
        out.extend_from_slice(self.active.as_bytes());
        out.extend_from_slice(&nonce);
        let body = out.len();
        out.extend_from_slice(plain);
        let mut sealed = out.split_off(body);
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut sealed,
        )
        .expect("AES-GCM seals any length a row holds");
        out.extend_from_slice(&sealed);
        out
    }

    /// A keyed hash of `value` for `purpose` (hex, 128 bits): stands for a personal value
    /// where a name is needed (a cache key) without being it, and cannot be computed
    /// without the data key.
    pub fn keyed_hash(&self, purpose: &str, value: &str) -> String {
        let mut message = Vec::with_capacity(purpose.len() + 1 + value.len());
        message.extend_from_slice(purpose.as_bytes());
        message.push(0);
        message.extend_from_slice(value.as_bytes());
        let tag = ring::hmac::sign(&self.hashing, &message);
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// 32 bytes for `purpose` derived from the active key (a signing seed where no key
    /// of its own is installed).
    pub fn derive_seed(&self, purpose: &str) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.hashing, format!("derive\0{purpose}").as_bytes());
        let mut seed = [0u8; 32];
        seed.copy_from_slice(tag.as_ref());
        seed
    }

    /// Opens what [`KeyRing::seal`] wrote for `context`; a value written before sealing
    /// began comes back as it is.
    pub fn open(&self, context: &[u8], stored: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return Ok(stored.to_vec());
        };
        let (&id_len, rest) = rest.split_first().ok_or(SealError::Damaged)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (id, rest) = rest.split_at(id_len);
        let id = std::str::from_utf8(id).map_err(|_| SealError::Damaged)?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| SealError::Damaged)?;
        Ok(plain.to_vec())
    }
}

static RING: OnceLock<KeyRing> = OnceLock::new();

/// Installs the process's key ring from `DTKS_DATA_KEYS` (first call wins).
pub fn install(spec: &secrecy::SecretString) -> anyhow::Result<()> {
    let ring = KeyRing::parse(spec.expose_secret())?;
    let _ = RING.set(ring);
    Ok(())
}

/// The process's key ring.
pub fn ring() -> Result<&'static KeyRing, SealError> {
    RING.get().ok_or(SealError::NoKeys)
}

/// The context a value is bound to: `table.column` and the row's id.
pub fn context(place: &str, row: &uuid::Uuid) -> Vec<u8> {
    let mut c = Vec::with_capacity(place.len() + 17);
    c.extend_from_slice(place.as_bytes());
    c.push(b'/');
    c.extend_from_slice(row.as_bytes());
    c
}

/// Seals `plain` for `place` (`intake.proposals.household`) of row `row`.
pub fn seal(place: &str, row: &uuid::Uuid, plain: &[u8]) -> Result<Vec<u8>, SealError> {
    Ok(ring()?.seal(&context(place, row), plain))
}

/// Opens the value of `place` of row `row`.
pub fn open(place: &str, row: &uuid::Uuid, stored: &[u8]) -> Result<Vec<u8>, SealError> {
    ring()?.open(&context(place, row), stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place_and_with_a_listed_key() {
        let old = KeyRing::generate("k1");
        let new = KeyRing::generate("k2");
        let ring1 = KeyRing::parse(&old).expect("test fixture");
        let row = uuid::Uuid::from_u128(7);
        let here = context("intake.proposals.household", &row);
        let plain = b"\x0a\x10Asep Sunandar 3204051203800001";
        let sealed = ring1.seal(&here, plain);
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(13).any(|w| w == b"Asep Sunandar"));
        assert_ne!(ring1.seal(&here, plain), sealed, "a fresh nonce every time");
        assert_eq!(ring1.open(&here, &sealed).expect("test fixture"), plain);
        // Another row, another column: refused.
        let there = context("intake.proposals.household", &uuid::Uuid::from_u128(8));
        assert!(matches!(
            ring1.open(&there, &sealed),
            Err(SealError::Damaged)
        ));
        // A changed byte: refused.
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("test fixture") ^= 1;
        assert!(matches!(
            ring1.open(&here, &flipped),
            Err(SealError::Damaged)
        ));
        assert!(ring1.open(&here, &sealed[..12]).is_err());
        // Rotation: the new key seals, the old one still opens; without it, refused.
        let rotated = KeyRing::parse(&format!("{new},{old}")).expect("test fixture");
        assert_eq!(rotated.open(&here, &sealed).expect("test fixture"), plain);
        let resealed = rotated.seal(&here, plain);
        assert_eq!(&resealed[6..8], b"k2");
        let only_new = KeyRing::parse(&new).expect("test fixture");
        assert!(
            matches!(only_new.open(&here, &sealed), Err(SealError::UnknownKey(k)) if k == "k1")
        );
        // Written before sealing began: read as it is.
        assert_eq!(ring1.open(&here, plain).expect("test fixture"), plain);
    }

    #[test]
    fn malformed_key_lists_are_refused() {
        for spec in ["", "k1", "k1:notbase64!", "k1:AAAA", "bad id:AAAA"] {
            assert!(KeyRing::parse(spec).is_err(), "{spec}");
        }
        let k = KeyRing::generate("k1");
        assert!(KeyRing::parse(&format!("{k},{k}")).is_err());
    }
}
