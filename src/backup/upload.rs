//! Outbox kind `backup_upload`: one verified backup file PUT to S3-compatible storage.
//!
//! The request is a SigV4 presigned PUT (rusty-s3 signs; our hyper + rustls client sends),
//! its body streamed from the file on disk. The object key is `prefix + file name`, fixed in
//! the row's payload when the backup was recorded: a retry PUTs the same bytes to the same
//! key, so a repeated delivery changes nothing (idempotent by construction).
//!
//! Invariant: a row is `delivered` only on a 2xx from the storage; a file that is gone
//! (pruned before it could be uploaded) is a permanent failure, left dead for a technician.

use crate::config::{Config, S3Config};
use crate::outbox::kind::{Kind, Outcome, SendFuture, Slots};
use crate::outbox::queue::Row;
use crate::outbox::Upstream;
use crate::upstream::http::HttpClient;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where uploads go and with which credentials.
struct Target {
    bucket: Bucket,
    credentials: Credentials,
    timeout: Duration,
}

pub struct BackupUpload {
    target: Option<Target>,
    directory: PathBuf,
    client: HttpClient,
    max_attempts: u32,
}

/// The S3 secret access key: `secret_access_key_file`, `secret_access_key`, env
/// `POSEDGE_S3_SECRET_ACCESS_KEY`, or the systemd credential `s3_secret_access_key`, in that
/// order. Errors name the config key to fix.
pub fn load_secret(cfg: &S3Config) -> Result<String, (&'static str, String)> {
    let nonempty = |s: String, source: &str| {
        let s = s.trim().to_string();
        if s.is_empty() {
            Err((
                "backup.s3.secret_access_key",
                format!("the secret access key from {source} is empty"),
            ))
        } else {
            Ok(s)
        }
    };
    if let Some(path) = &cfg.secret_access_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "backup.s3.secret_access_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        return nonempty(text, &path.display().to_string());
    }
    if let Some(k) = &cfg.secret_access_key {
        return nonempty(k.clone(), "backup.s3.secret_access_key");
    }
    if let Ok(k) = std::env::var("POSEDGE_S3_SECRET_ACCESS_KEY") {
        return nonempty(k, "POSEDGE_S3_SECRET_ACCESS_KEY");
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        // A blank credential is the unit's SetCredential= fallback: no key, as if absent.
        if let Ok(text) = std::fs::read_to_string(Path::new(&dir).join("s3_secret_access_key")) {
            if !text.trim().is_empty() {
                return nonempty(text, "the systemd credential s3_secret_access_key");
            }
        }
    }
    Err((
        "backup.s3.secret_access_key_file",
        "[backup.s3] is configured but no secret access key was found: set secret_access_key_file, secret_access_key, env POSEDGE_S3_SECRET_ACCESS_KEY or the systemd credential s3_secret_access_key".into(),
    ))
}

/// The bucket handle of `[backup.s3]`.
pub fn bucket(cfg: &S3Config) -> Result<Bucket, (&'static str, String)> {
    let endpoint: url::Url = cfg
        .endpoint
        .parse()
        .map_err(|e| ("backup.s3.endpoint", format!("{:?}: {e}", cfg.endpoint)))?;
    let style = if cfg.path_style {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    };
    Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone())
        .map_err(|e| ("backup.s3.bucket", e.to_string()))
}

impl BackupUpload {
    /// Reads the secret now, so a missing one stops start-up with the key named.
    pub fn new(
        config: &Config,
        client: HttpClient,
    ) -> Result<BackupUpload, (&'static str, String)> {
        let target = match &config.backup.s3 {
            Some(s3) => Some(Target {
                bucket: bucket(s3)?,
                credentials: Credentials::new(s3.access_key_id.clone(), load_secret(s3)?),
                timeout: s3.timeout.0,
            }),
            None => None,
        };
        Ok(BackupUpload {
            target,
            directory: config.resolved.backup_directory.clone(),
            client,
            max_attempts: config
                .backup
                .s3
                .as_ref()
                .map(|s| s.max_retries)
                .unwrap_or(20),
        })
    }

    async fn upload(&self, target: &Target, row: &Row, slots: &Slots) -> Outcome {
        let payload: serde_json::Value = match serde_json::from_str(&row.payload) {
            Ok(v) => v,
            Err(e) => {
                return Outcome::Permanent {
                    error: format!("unreadable payload: {e}"),
                }
            }
        };
        let (Some(file), Some(key)) = (payload["file"].as_str(), payload["key"].as_str()) else {
            return Outcome::Permanent {
                error: "payload has no file or key".into(),
            };
        };
        // Only a bare file name of ours: the payload never points outside the directory.
        if file.contains('/') || file.starts_with('.') {
            return Outcome::Permanent {
                error: format!("{file:?} is not a backup file name"),
            };
        }
        let path = self.directory.join(file);
        if !path.is_file() {
            return Outcome::Permanent {
                error: format!(
                    "{} is gone (pruned before it could be uploaded?); the newer backups upload on their own",
                    path.display()
                ),
            };
        }
        // Signed for the whole upload plus a margin for the wait for a call slot.
        let action = target.bucket.put_object(Some(&target.credentials), key);
        let url = action.sign(target.timeout + Duration::from_secs(300));
        let _slot = slots.acquire().await;
        let answer = self
            .client
            .send_file(hyper::Method::PUT, url.as_str(), &[], &path, target.timeout)
            .await;
        crate::upstream::conexxus::classify(answer)
    }
}

impl Kind for BackupUpload {
    fn name(&self) -> &'static str {
        super::UPLOAD_KIND
    }

    fn upstream(&self) -> Upstream {
        Upstream::Backup
    }

    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    fn send<'a>(&'a self, row: &'a Row, slots: &'a Slots) -> SendFuture<'a> {
        Box::pin(async move {
            match &self.target {
                Some(target) => self.upload(target, row, slots).await,
                None => Outcome::Retry {
                    error: "[backup.s3] is not configured".into(),
                    retry_after: None,
                    reachable: false,
                    in_progress: false,
                },
            }
        })
    }
}
