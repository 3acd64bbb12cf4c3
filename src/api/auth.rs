//! Bearer-token authentication and roles.
//!
//! Invariants: a token is checked against the SHA-256 hashes in config in constant time; a
//! missing or unknown token is 401, a known token of the wrong role is 403; the token itself
//! is never logged.

use super::error::ApiError;
use super::AppState;
use crate::credentials;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Register,
    Admin,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub role: Role,
}

impl Caller {
    pub fn require_register(&self) -> Result<&str, ApiError> {
        match self.role {
            Role::Register => Ok(&self.id),
            Role::Admin => Err(ApiError::forbidden(
                "wrong_role",
                "this call is for registers; use a register token",
            )),
        }
    }

    pub fn require_admin(&self) -> Result<&str, ApiError> {
        match self.role {
            Role::Admin => Ok(&self.id),
            Role::Register => Err(ApiError::forbidden(
                "wrong_role",
                "this call is for technicians; use an admin token",
            )),
        }
    }
}

/// Marks a request that came in on the local admin socket (set by the connection loop,
/// never by a client: it is a request extension, not a header).
#[derive(Debug, Clone, Copy)]
pub struct LocalAdmin;

/// Resolves the `Authorization: Bearer` header of `parts` to a caller.
pub fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    if parts.extensions.get::<LocalAdmin>().is_some() {
        return Ok(Caller {
            id: "local-cli".into(),
            role: Role::Admin,
        });
    }
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    let config = &state.config;
    let registers = config.registers.iter().map(|e| e.token_sha256.as_str());
    let admins = config.admins.iter().map(|e| e.token_sha256.as_str());
    // Check both lists fully whatever matches, so timing does not reveal the role.
    let register = credentials::match_token(token, registers);
    let admin = credentials::match_token(token, admins);
    match (register, admin) {
        (Some(i), _) => Ok(Caller {
            id: config.registers[i].id.clone(),
            role: Role::Register,
        }),
        (None, Some(i)) => Ok(Caller {
            id: config.admins[i].id.clone(),
            role: Role::Admin,
        }),
        (None, None) => Err(ApiError::unauthorized("unknown token")),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state)
    }
}

/// Health and metrics endpoints: open to the LAN when `server.public_health` is set,
/// otherwise any valid token.
pub struct HealthAccess;

impl FromRequestParts<AppState> for HealthAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.server.public_health {
            return Ok(HealthAccess);
        }
        authenticate(parts, state).map(|_| HealthAccess)
    }
}
