//! Who is calling: local accounts (argon2id), bearer API tokens (stored as
//! SHA-256 hashes), browser sessions (HttpOnly, SameSite=Strict cookies with
//! a CSRF token for state-changing requests), team roles, and the login
//! rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row;

use super::api::error::ApiError;
use super::db::{self, Db};
use super::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kiln_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A member's role in a team; each includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Builder,
    Publisher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Builder => "builder",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "builder" => Role::Builder,
            "publisher" => Role::Publisher,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// An argon2id hash (PHC string) of `password`.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// SHA-256 hex of a high-entropy secret (tokens, session ids).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new API token secret: `kiln_` and 256 random bits.
pub fn new_token_secret() -> String {
    format!("kiln_{}", db::random_hex(32))
}

/// Compares in time independent of where the strings differ.
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// An authenticated caller and what it may reach.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub user_name: String,
    pub server_admin: bool,
    /// Teams the caller acts in, with its role in each. A token acts only in
    /// its own team, with at most the role it was given.
    pub teams: Vec<(String, Role)>,
    pub token_id: Option<String>,
}

impl Caller {
    pub fn role_in(&self, team: &str) -> Option<Role> {
        self.teams.iter().find(|(t, _)| t == team).map(|(_, r)| *r)
    }

    /// The caller's role in `team` when it is at least `min`: 404 when the
    /// caller is no member (existence does not leak), 403 when its role is
    /// too low.
    pub fn require(&self, team: &str, min: Role) -> Result<Role, ApiError> {
        match self.role_in(team) {
            None => Err(ApiError::not_found("team")),
            Some(r) if r < min => Err(ApiError::forbidden(format!(
                "this needs the `{}` role in team `{team}`; you have `{}`",
                min.as_str(),
                r.as_str()
            ))),
            Some(r) => Ok(r),
        }
    }

    /// Whether the caller sees `team` at all.
    pub fn sees(&self, team: &str) -> bool {
        self.role_in(team).is_some()
    }

    /// The teams a list answer covers: `only`, when given and seen (else
    /// none, so an unknown team lists nothing rather than leaking that it
    /// exists), or every team of the caller.
    pub fn listed_teams(&self, only: Option<&str>) -> Vec<String> {
        match only {
            Some(t) if self.sees(t) => vec![t.to_owned()],
            Some(_) => Vec::new(),
            None => self.teams.iter().map(|(t, _)| t.clone()).collect(),
        }
    }
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn memberships(db: &Db, user_id: &str) -> Result<Vec<(String, Role)>, ApiError> {
    let rows = sqlx::query("SELECT team, role FROM members WHERE user_id = $1 ORDER BY team")
        .bind(user_id)
        .fetch_all(db)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get::<String, _>(0), Role::parse(r.get(1))?)))
        .collect())
}

async fn user(db: &Db, user_id: &str) -> Result<Option<(String, bool)>, ApiError> {
    let row = sqlx::query("SELECT name, server_admin FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| (r.get(0), r.get::<i64, _>(1) != 0)))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let db = &app.db;
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.to_str().unwrap_or("");
            let secret = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| ApiError::unauthorized("use `Authorization: Bearer <token>`"))?
                .trim();
            let row = sqlx::query(
                "SELECT id, team, user_id, role FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
            )
            .bind(secret_hash(secret))
            .fetch_optional(db)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is unknown or revoked"))?;
            let (token_id, team, user_id): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let token_role = Role::parse(row.get(3)).unwrap_or(Role::Viewer);
            let (user_name, server_admin) = user(db, &user_id)
                .await?
                .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
            // The token's role, capped by the user's current role: a member
            // removed from the team loses its tokens' access at once.
            let teams = memberships(db, &user_id)
                .await?
                .into_iter()
                .filter(|(t, _)| *t == team)
                .map(|(t, r)| (t, r.min(token_role)))
                .collect();
            return Ok(Caller {
                user_id,
                user_name,
                server_admin,
                teams,
                token_id: Some(token_id),
            });
        }
        let Some(session) = cookie(parts, SESSION_COOKIE) else {
            return Err(ApiError::unauthorized(
                "log in, or send `Authorization: Bearer <token>`",
            ));
        };
        let row =
            sqlx::query("SELECT user_id, csrf FROM sessions WHERE hash = $1 AND expires_at > $2")
                .bind(secret_hash(&session))
                .bind(db::now())
                .fetch_optional(db)
                .await?
                .ok_or_else(|| ApiError::unauthorized("the session has expired; log in again"))?;
        let (user_id, csrf): (String, String) = (row.get(0), row.get(1));
        if state_changing(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_eq(sent, &csrf) {
                return Err(ApiError::forbidden(
                    "missing or wrong X-CSRF-Token header for a cookie-authenticated request",
                )
                .with_code("csrf"));
            }
        }
        let (user_name, server_admin) = user(db, &user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the session's user no longer exists"))?;
        Ok(Caller {
            teams: memberships(db, &user_id).await?,
            user_id,
            user_name,
            server_admin,
            token_id: None,
        })
    }
}

/// Failed logins per (address, user name) within a sliding minute.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<(IpAddr, String), Vec<Instant>>>,
}

impl LoginLimiter {
    /// `Err(seconds to wait)` when the key has used up its attempts.
    pub fn check(&self, ip: IpAddr, user: &str, per_minute: u32) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap();
        let window = Duration::from_secs(60);
        let now = Instant::now();
        map.retain(|_, v| {
            v.retain(|t| now.duration_since(*t) < window);
            !v.is_empty()
        });
        match map.get(&(ip, user.to_owned())) {
            Some(v) if v.len() >= per_minute as usize => {
                let oldest = v[0];
                Err(window.saturating_sub(now.duration_since(oldest)).as_secs() + 1)
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, ip: IpAddr, user: &str) {
        self.failures
            .lock()
            .unwrap()
            .entry((ip, user.to_owned()))
            .or_default()
            .push(Instant::now());
    }

    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        self.failures.lock().unwrap().remove(&(ip, user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Builder);
        assert!(Role::Builder < Role::Publisher);
        assert!(Role::Publisher < Role::Admin);
        for r in [Role::Viewer, Role::Builder, Role::Publisher, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn limiter_blocks_after_the_allowance() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(ip, "a", 3).is_ok());
            l.failed(ip, "a");
        }
        assert!(l.check(ip, "a", 3).is_err());
        assert!(l.check(ip, "b", 3).is_ok());
        l.succeeded(ip, "a");
        assert!(l.check(ip, "a", 3).is_ok());
    }
}
