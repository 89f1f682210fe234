//! Signed DCI messages, as the DCI registry API describes them: every request and callback
//! is `{signature, header, message}`, and `signature` is
//!
//! ```text
//! Signature: namespace="dci", kidId="{sender_id}|{key_id}|ed25519", algorithm="ed25519",
//!   created="{unix}", expires="{unix}", headers="(created) (expires) digest", signature="{base64}"
//! ```
//!
//! where the signed content is the three lines `(created): …`, `(expires): …` and
//! `digest: SHA-256=…`, the digest being taken over the canonical JSON (keys sorted, no
//! spaces) of `header` then `message`. Both the reference civil registry and matching's
//! DCI adapter use this module, each with its own Ed25519 key, and each trusts the
//! other's public key.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long a signature stays valid after it is made.
pub const VALIDITY_SECS: i64 = 300;
/// Clock difference tolerated between the two sides.
pub const SKEW_SECS: i64 = 60;

/// Why a signature was refused, with the DCI reason code to answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the message is not signed")]
    Missing,
    #[error("signature invalid: {0}")]
    Invalid(String),
}

impl SignatureError {
    /// The DCI status reason code (`err.signature.missing` / `err.signature.invalid`).
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Missing => "err.signature.missing",
            Self::Invalid(_) => "err.signature.invalid",
        }
    }
}

/// One side's signing identity.
#[derive(Clone)]
pub struct Signer {
    sender_id: String,
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.kid())
    }
}

/// A new key pair: (private seed, public key), both base64.
pub fn generate_key() -> (String, String) {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let key = SigningKey::from_bytes(&seed);
    (B64.encode(seed), B64.encode(key.verifying_key().as_bytes()))
}

fn decode_32(text: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| anyhow::anyhow!("{what} is not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what} must be 32 bytes"))
}

impl Signer {
    /// `seed`: the base64 Ed25519 private seed (as printed by `dtksctl dci-keygen`).
    pub fn new(sender_id: &str, key_id: &str, seed: &str) -> anyhow::Result<Self> {
        Ok(Self {
            sender_id: sender_id.to_owned(),
            key_id: key_id.to_owned(),
            key: SigningKey::from_bytes(&decode_32(seed, "the DCI signing key")?),
        })
    }

    pub fn sender_id(&self) -> &str {
        &self.sender_id
    }

    /// `{sender_id}|{key_id}`: how the other side names this key in its key ring.
    pub fn kid(&self) -> String {
        format!("{}|{}", self.sender_id, self.key_id)
    }

    /// The `signature` value for `header` and `message`, valid from now.
    pub fn sign(&self, header: &Value, message: &Value) -> String {
        self.sign_at(header, message, chrono::Utc::now().timestamp())
    }

    fn sign_at(&self, header: &Value, message: &Value, created: i64) -> String {
        let expires = created + VALIDITY_SECS;
        let content = signing_content(created, expires, header, message);
        let signature = B64.encode(self.key.sign(content.as_bytes()).to_bytes());
        format!(
            "Signature: namespace=\"dci\", kidId=\"{}|ed25519\", algorithm=\"ed25519\", created=\"{created}\", expires=\"{expires}\", headers=\"(created) (expires) digest\", signature=\"{signature}\"",
            self.kid()
        )
    }
}

/// A DCI header: `action` from `sender_id` to `receiver_id`, with, when given, the
/// `sender_uri` callbacks go to.
pub fn header(
    sender_id: &str,
    action: &str,
    receiver_id: &str,
    sender_uri: Option<&str>,
    total_count: usize,
) -> Value {
    let mut header = serde_json::json!({
        "version": "1.0.0",
        "message_id": uuid::Uuid::new_v4().to_string(),
        "message_ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "action": action,
        "sender_id": sender_id,
        "receiver_id": receiver_id,
        "total_count": total_count,
        "is_msg_encrypted": false,
    });
    if let Some(uri) = sender_uri {
        header["sender_uri"] = Value::String(uri.to_owned());
    }
    header
}

/// `{signature, header, message}`, signed by `signer` (an empty signature without one).
pub fn seal(signer: Option<&Signer>, header: Value, message: Value) -> Value {
    let signature = signer
        .map(|s| s.sign(&header, &message))
        .unwrap_or_default();
    serde_json::json!({ "signature": signature, "header": header, "message": message })
}

/// The messages a side has taken, by sender and `header.message_id`, for as long as their
/// signatures stay valid: a message sent again within its validity is refused as a
/// replay. Held in the process (one reference registry; each matching replica its own
/// callbacks).
#[derive(Debug, Clone, Default)]
pub struct Replays(std::sync::Arc<std::sync::Mutex<HashMap<String, i64>>>);

impl Replays {
    /// Whether `body` (already verified) is new; records it until it expires. A message
    /// without a `message_id` is refused.
    pub fn first_time(&self, sender: &str, body: &Value) -> Result<(), SignatureError> {
        let now = chrono::Utc::now().timestamp();
        let id = body
            .pointer("/header/message_id")
            .and_then(Value::as_str)
            .filter(|id| !id.trim().is_empty() && id.len() <= 128)
            .ok_or_else(|| SignatureError::Invalid("header.message_id is required".into()))?;
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Nothing older than a message's longest validity needs keeping.
        seen.retain(|_, until| *until >= now);
        let key = format!("{sender}\u{1f}{id}");
        if seen.contains_key(&key) {
            return Err(SignatureError::Invalid(
                "header.message_id was already received: a replay".into(),
            ));
        }
        seen.insert(key, now + VALIDITY_SECS + SKEW_SECS);
        Ok(())
    }
}

/// The public keys a side trusts, by `{sender_id}|{key_id}`.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, VerifyingKey>,
}

impl KeyRing {
    /// Parses `kid=base64,kid=base64` (kid is `{sender_id}|{key_id}`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, key) = entry
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("trusted key `{entry}` is not kid=base64"))?;
            let bytes = decode_32(key, "a trusted public key")?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("trusted key {kid}: {e}"))?;
            keys.insert(kid.trim().to_owned(), key);
        }
        Ok(Self { keys })
    }

    pub fn with(mut self, kid: &str, public_key: &str) -> anyhow::Result<Self> {
        let other = Self::parse(&format!("{kid}={public_key}"))?;
        self.keys.extend(other.keys);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a whole DCI message's signature; answers the signer's `sender_id`, which
    /// must also be the header's.
    pub fn verify(&self, body: &Value) -> Result<String, SignatureError> {
        self.verify_at(body, chrono::Utc::now().timestamp())
    }

    fn verify_at(&self, body: &Value, now: i64) -> Result<String, SignatureError> {
        let invalid = |why: &str| SignatureError::Invalid(why.to_owned());
        let signature = body
            .get("signature")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or(SignatureError::Missing)?;
        let params = parameters(signature);
        let param = |name: &str| {
            params
                .get(name)
                .copied()
                .ok_or_else(|| SignatureError::Invalid(format!("no {name} parameter")))
        };
        if param("algorithm")? != "ed25519" {
            return Err(invalid("algorithm must be ed25519"));
        }
        let kid = param("kidId")?;
        let (key_name, _) = kid
            .rsplit_once('|')
            .ok_or_else(|| invalid("kidId is not sender|key|algorithm"))?;
        let key = self
            .keys
            .get(key_name)
            .ok_or_else(|| SignatureError::Invalid(format!("unknown key {key_name}")))?;
        let number = |name: &str| -> Result<i64, SignatureError> {
            param(name)?
                .parse()
                .map_err(|_| SignatureError::Invalid(format!("{name} is not a number")))
        };
        let (created, expires) = (number("created")?, number("expires")?);
        if created > now + SKEW_SECS {
            return Err(invalid("created in the future"));
        }
        // A signature valid for years would make a captured message usable for years.
        if expires.saturating_sub(created) > VALIDITY_SECS || expires < created {
            return Err(SignatureError::Invalid(format!(
                "expires must lie within {VALIDITY_SECS} s of created"
            )));
        }
        if expires + SKEW_SECS < now {
            return Err(invalid("expired"));
        }
        let header = body.get("header").unwrap_or(&Value::Null);
        let message = body.get("message").unwrap_or(&Value::Null);
        let bytes: [u8; 64] = B64
            .decode(param("signature")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("signature is not 64 base64 bytes"))?;
        key.verify_strict(
            signing_content(created, expires, header, message).as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&bytes),
        )
        .map_err(|_| invalid("does not match the message"))?;
        let sender = key_name.split('|').next().unwrap_or_default();
        if header.get("sender_id").and_then(Value::as_str) != Some(sender) {
            return Err(invalid("header.sender_id is not the signer"));
        }
        Ok(sender.to_owned())
    }
}

/// The longest a bearer token of [`Signer::bearer`] may live.
pub const BEARER_MAX_SECS: i64 = 3600;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    /// A bearer token (`Authorization: Bearer …`, the standard's security scheme) for
    /// calling `audience`: a JWT signed EdDSA with this side's DCI key (`kid` the key's
    /// name), issued for `lifetime_secs` (at most [`BEARER_MAX_SECS`]). The receiver
    /// checks it with the public key it already trusts for signatures, so no secret is
    /// shared between the two sides.
    pub fn bearer(&self, audience: &str, lifetime_secs: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid() });
        let claims = serde_json::json!({
            "iss": self.sender_id, "sub": self.sender_id, "aud": audience,
            "iat": now, "exp": now + lifetime_secs.clamp(1, BEARER_MAX_SECS),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = b64url(&self.key.sign(input.as_bytes()).to_bytes());
        format!("{input}.{signature}")
    }
}

impl KeyRing {
    /// Checks a bearer token of [`Signer::bearer`] meant for `audience`; answers the
    /// caller's sender id.
    pub fn verify_bearer(&self, token: &str, audience: &str) -> Result<String, SignatureError> {
        self.verify_bearer_at(token, audience, chrono::Utc::now().timestamp())
    }

    fn verify_bearer_at(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<String, SignatureError> {
        let invalid = |why: &str| SignatureError::Invalid(format!("bearer token {why}"));
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| invalid("is not base64url"))
        };
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("is not a JWT"));
        };
        let header: Value =
            serde_json::from_slice(&decode(h)?).map_err(|_| invalid("header is not JSON"))?;
        if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
            return Err(invalid("must be signed EdDSA"));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("names no kid"))?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| invalid("is signed by an unknown key"))?;
        let bytes: [u8; 64] = decode(sig)?
            .try_into()
            .map_err(|_| invalid("signature is not 64 bytes"))?;
        key.verify_strict(
            format!("{h}.{c}").as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&bytes),
        )
        .map_err(|_| invalid("signature does not verify"))?;
        let claims: Value =
            serde_json::from_slice(&decode(c)?).map_err(|_| invalid("claims are not JSON"))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
        let number = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_i64)
                .ok_or_else(|| invalid(&format!("has no {name}")))
        };
        let sender = kid.split('|').next().unwrap_or_default();
        if text("iss") != sender || text("sub") != sender {
            return Err(invalid("is not issued by its key's sender"));
        }
        if text("aud") != audience {
            return Err(invalid("is meant for another audience"));
        }
        let (iat, exp) = (number("iat")?, number("exp")?);
        if iat > now + SKEW_SECS {
            return Err(invalid("is issued in the future"));
        }
        if exp < iat || exp - iat > BEARER_MAX_SECS {
            return Err(invalid("lives longer than an hour"));
        }
        if exp + SKEW_SECS < now {
            return Err(invalid("has expired"));
        }
        Ok(sender.to_owned())
    }
}

/// `name="value"` pairs of a signature string.
fn parameters(signature: &str) -> HashMap<&str, &str> {
    let text = signature.trim().trim_start_matches("Signature:");
    text.split("\", ")
        .filter_map(|part| {
            let (name, value) = part.trim().split_once("=\"")?;
            Some((name.trim(), value.trim_end_matches('"')))
        })
        .collect()
}

fn signing_content(created: i64, expires: i64, header: &Value, message: &Value) -> String {
    let mut digest = Hashing(Sha256::new());
    write_canonical(header, &mut digest);
    write_canonical(message, &mut digest);
    let digest = B64.encode(digest.0.finalize());
    format!("(created): {created}\n(expires): {expires}\ndigest: SHA-256={digest}")
}

/// Canonical JSON fed straight into the digest: a message of a thousand records is
/// hashed without first being written out whole.
struct Hashing(Sha256);

impl Hashing {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// A string or scalar as JSON text (writing into a digest cannot fail).
    fn json(&mut self, value: &(impl serde::Serialize + ?Sized)) {
        let _ = serde_json::to_writer(&mut *self, value);
    }
}

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.put(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// JSON with object keys sorted and no whitespace, whatever order the map keeps.
fn write_canonical(value: &Value, out: &mut Hashing) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.put(b"{");
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                out.json(key);
                out.put(b":");
                write_canonical(value, out);
            }
            out.put(b"}");
        }
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_canonical(item, out);
            }
            out.put(b"]");
        }
        other => out.json(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(signer: &Signer, sender_uri: Option<&str>, message: Value) -> Value {
        let header = header(signer.sender_id(), "search", "dukcapil", sender_uri, 1);
        seal(Some(signer), header, message)
    }

    /// When the tests' messages are signed.
    const THEN: i64 = 1_700_000_000;

    /// A signer and its ring, with a header and an empty message to sign.
    fn empty_message() -> (Signer, KeyRing, serde_json::Value, serde_json::Value) {
        let (signer, ring) = pair();
        let header = json!({"sender_id": "dtks-matching"});
        (signer, ring, header, json!({}))
    }

    fn pair() -> (Signer, KeyRing) {
        let (seed, public) = generate_key();
        let signer = Signer::new("dtks-matching", "k1", &seed).expect("signer");
        let ring = KeyRing::default()
            .with(&signer.kid(), &public)
            .expect("ring");
        (signer, ring)
    }

    #[test]
    fn a_signed_message_verifies_and_any_change_or_missing_part_is_refused() {
        let (signer, ring) = pair();
        let body = envelope(
            &signer,
            Some("http://cb"),
            json!({"b": [1, {"z": 1, "a": 2}], "a": "x"}),
        );
        assert_eq!(ring.verify(&body), Ok("dtks-matching".to_owned()));

        // Key order on the wire does not matter; content does.
        let reparsed: Value = serde_json::from_str(&body.to_string()).expect("json");
        assert!(ring.verify(&reparsed).is_ok());
        let mut changed = body.clone();
        changed["message"]["a"] = json!("y");
        assert_eq!(
            ring.verify(&changed),
            Err(SignatureError::Invalid("does not match the message".into()))
        );
        let mut impostor = body.clone();
        impostor["header"]["sender_id"] = json!("someone");
        assert!(ring.verify(&impostor).is_err());
        let mut unsigned = body.clone();
        unsigned["signature"] = json!("");
        assert_eq!(ring.verify(&unsigned), Err(SignatureError::Missing));
        assert_eq!(
            SignatureError::Missing.reason_code(),
            "err.signature.missing"
        );

        // Another key with the same name is not trusted.
        let (other_seed, _) = generate_key();
        let forger = Signer::new("dtks-matching", "k1", &other_seed).expect("signer");
        let forged = envelope(&forger, None, json!({}));
        assert!(matches!(
            ring.verify(&forged),
            Err(SignatureError::Invalid(_))
        ));
        // An unknown key is named.
        let stranger = Signer::new("elsewhere", "k9", &other_seed).expect("signer");
        let unknown = envelope(&stranger, None, json!({}));
        assert_eq!(
            ring.verify(&unknown),
            Err(SignatureError::Invalid("unknown key elsewhere|k9".into()))
        );
    }

    #[test]
    fn the_digest_is_of_the_canonical_text_whatever_order_or_escapes() {
        let header = json!({ "b": 1, "a": [true, null, 2.5] });
        let message = json!({ "z": "\"q\"\n\u{1}", "k": { "y": -3, "x": "é" } });
        let canonical = r#"{"a":[true,null,2.5],"b":1}{"k":{"x":"é","y":-3},"z":"\"q\"\n\u0001"}"#;
        let expected = B64.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(
            signing_content(1, 2, &header, &message),
            format!("(created): 1\n(expires): 2\ndigest: SHA-256={expected}")
        );
    }

    #[test]
    fn signatures_expire() {
        let (signer, ring, header, message) = empty_message();
        let then = THEN;
        let body = json!({"signature": signer.sign_at(&header, &message, then), "header": header, "message": message});
        assert!(ring.verify_at(&body, then + 10).is_ok());
        assert_eq!(
            ring.verify_at(&body, then + VALIDITY_SECS + SKEW_SECS + 1),
            Err(SignatureError::Invalid("expired".into()))
        );
        assert_eq!(
            ring.verify_at(&body, then - SKEW_SECS - 1),
            Err(SignatureError::Invalid("created in the future".into()))
        );
    }

    /// Finding 18: a sender could set a 10-year `expires`.
    #[test]
    fn a_signature_valid_longer_than_the_validity_is_refused() {
        let (signer, ring, header, message) = empty_message();
        let then = THEN;
        let long = |expires: i64| {
            let content = signing_content(then, expires, &header, &message);
            let signature = B64.encode(signer.key.sign(content.as_bytes()).to_bytes());
            json!({
                "signature": format!(
                    "Signature: namespace=\"dci\", kidId=\"{}|ed25519\", algorithm=\"ed25519\", created=\"{then}\", expires=\"{expires}\", headers=\"(created) (expires) digest\", signature=\"{signature}\"",
                    signer.kid()
                ),
                "header": header,
                "message": message,
            })
        };
        assert!(
            ring.verify_at(&long(then + VALIDITY_SECS), then + 1)
                .is_ok()
        );
        for expires in [
            then + 10 * 365 * 24 * 3600,
            then + VALIDITY_SECS + 1,
            then - 1,
        ] {
            let refused = ring
                .verify_at(&long(expires), then + 1)
                .expect_err("too long");
            assert!(refused.to_string().contains("expires"), "{refused}");
        }
    }

    /// Finding 18: no replay check on `message_id` within the validity window.
    #[test]
    fn a_message_taken_once_is_refused_when_sent_again() {
        let replays = Replays::default();
        let body = |id: &str| json!({"header": {"message_id": id}});
        assert!(replays.first_time("dtks-matching", &body("m-1")).is_ok());
        let again = replays
            .first_time("dtks-matching", &body("m-1"))
            .expect_err("replay");
        assert!(again.to_string().contains("replay"), "{again}");
        // Another sender's message of the same id is its own.
        assert!(replays.first_time("other", &body("m-1")).is_ok());
        assert!(replays.first_time("dtks-matching", &body("m-2")).is_ok());
        for missing in [json!({"header": {}}), body(""), body(&"x".repeat(200))] {
            assert!(replays.first_time("dtks-matching", &missing).is_err());
        }
    }
    #[test]
    fn a_bearer_token_verifies_for_its_audience_only_and_not_for_long() {
        let (seed, public) = generate_key();
        let signer = Signer::new("dtks-matching", "k1", &seed).expect("signer");
        let ring = KeyRing::parse(&format!("dtks-matching|k1={public}")).expect("ring");
        let token = signer.bearer("dukcapil-reference", 300);
        assert_eq!(
            ring.verify_bearer(&token, "dukcapil-reference"),
            Ok("dtks-matching".into())
        );
        assert!(ring.verify_bearer(&token, "someone-else").is_err());
        let now = chrono::Utc::now().timestamp();
        assert!(
            ring.verify_bearer_at(&token, "dukcapil-reference", now + 400)
                .is_err(),
            "expired"
        );
        // One character of the signature changed.
        let mut forged = token.clone();
        let last = forged.pop().expect("char");
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.verify_bearer(&forged, "dukcapil-reference").is_err());
        // Another key, or none.
        let (other, _) = generate_key();
        let stranger = Signer::new("dtks-matching", "k1", &other).expect("signer");
        assert!(
            ring.verify_bearer(
                &stranger.bearer("dukcapil-reference", 60),
                "dukcapil-reference"
            )
            .is_err()
        );
        assert!(
            ring.verify_bearer("not.a.token", "dukcapil-reference")
                .is_err()
        );
    }
}
