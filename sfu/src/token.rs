//! Room tokens: the shared signed-token format (`firmware_runtime::token`) with room claims.
//! The appliance signs one per participant (the room, who, the name others see, whether they
//! may publish and subscribe, an expiry); the SFU's signalling checks it on join.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

pub use firmware_runtime::token::{TokenError, key, public_key_base64};

/// What a room token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomClaims {
    /// The room.
    pub room: String,
    /// The participant's identity (stable across reconnects).
    pub sub: String,
    /// The name shown to the others.
    pub name: String,
    /// May send audio and video.
    pub publish: bool,
    /// May receive the others' media.
    pub subscribe: bool,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl firmware_runtime::token::Expiring for RoomClaims {
    fn exp(&self) -> u64 {
        self.exp
    }
}

/// What an SFU administration token grants: listing rooms, removing participants, closing
/// rooms. The appliance signs these for its system administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminClaims {
    /// Who.
    pub sub: String,
    /// Always "sfu_admin" (so no other token can pass for one).
    pub scope: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// The scope an admin token carries.
pub const ADMIN_SCOPE: &str = "sfu_admin";

impl firmware_runtime::token::Expiring for AdminClaims {
    fn exp(&self) -> u64 {
        self.exp
    }
}

/// Verifies an administration token.
pub fn verify_admin(token: &str, key: &VerifyingKey, now: u64) -> Result<AdminClaims, TokenError> {
    let claims: AdminClaims = firmware_runtime::token::verify(token, key, now)?;
    if claims.scope != ADMIN_SCOPE {
        return Err(TokenError::Malformed(format!(
            "scope {:?} is not {ADMIN_SCOPE}",
            claims.scope
        )));
    }
    Ok(claims)
}

/// Verifies a room token with `key` at `now` (Unix seconds).
pub fn verify(token: &str, key: &VerifyingKey, now: u64) -> Result<RoomClaims, TokenError> {
    firmware_runtime::token::verify(token, key, now)
}

/// Signs room claims (the appliance's side).
pub fn sign(claims: &RoomClaims, key: &ed25519_dalek::SigningKey) -> String {
    firmware_runtime::token::sign(claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_tokens_round_trip_and_viewer_tokens_do_not_pass() {
        let signer = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let key = key(&public_key_base64(&signer)).unwrap();
        let claims = RoomClaims {
            room: "consultation-7".into(),
            sub: "expert.li".into(),
            name: "李主任".into(),
            publish: true,
            subscribe: true,
            exp: 5_000,
        };
        assert_eq!(
            verify(&sign(&claims, &signer), &key, 4_000),
            Ok(claims.clone())
        );
        assert_eq!(
            verify(&sign(&claims, &signer), &key, 5_000),
            Err(TokenError::Expired)
        );
        // A token with other claims (a viewer's) is not a room token.
        #[derive(Serialize)]
        struct Viewer {
            sub: String,
            studies: Vec<String>,
            exp: u64,
        }
        let viewer = firmware_runtime::token::sign(
            &Viewer {
                sub: "x".into(),
                studies: vec![],
                exp: 9_999,
            },
            &signer,
        );
        assert!(matches!(
            verify(&viewer, &key, 1),
            Err(TokenError::Malformed(_))
        ));
    }
}
