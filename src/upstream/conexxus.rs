//! Delivery of NAXML documents to the Conexxus back office, and the two document kinds:
//! `naxml_sale` (a POSJournal of one sale, or of a batch of sales, rendered from the ledger
//! when sent) and `naxml_movement` (an end-of-day report, rendered when queued).
//!
//! Transports:
//! - `http`: POST `application/xml` to `url` (optional bearer or basic auth); any 2xx is
//!   accepted. The outbox row's idempotency key goes along as `Idempotency-Key`, and the
//!   document's file name as `X-NAXML-Document`, so a back office can drop a re-send.
//! - `directory`: the Passport-style drop. Write `.<name>.tmp`, fsync, rename to `<name>`,
//!   fsync the directory. A reader never sees half a file; a crash between rename and our
//!   commit re-writes the same name with the same bytes, so no duplicate document appears.
//!   Names come from the outbox row id (`PJR0000000042.xml`): fixed when the row was made.

use super::http::{HttpClient, HttpError, Response};
use crate::conexxus::{eod::MOVEMENT_KIND, events};
use crate::config::{ConexxusConfig, ConexxusTransport, Config};
use crate::ledger;
use crate::naxml::journal::{self, JournalContext, JournalSale};
use crate::outbox::kind::{Kind, Outcome, SendFuture, Slots};
use crate::outbox::queue::Row;
use crate::outbox::Upstream;
use crate::store::{Reads, StoreError};
use base64::Engine;
use bytes::Bytes;
use chrono_tz::Tz;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use std::path::PathBuf;
use std::time::Duration;

/// How documents leave the box.
#[derive(Clone)]
pub enum Transport {
    Http {
        client: HttpClient,
        url: String,
        auth: Option<HeaderValue>,
        timeout: Duration,
    },
    Directory {
        dir: PathBuf,
        timeout: Duration,
    },
}

impl Transport {
    pub fn from_config(c: &ConexxusConfig, default_dir: PathBuf, client: HttpClient) -> Transport {
        match c.transport {
            ConexxusTransport::Http => {
                let auth = match (&c.bearer_token, &c.basic_user, &c.basic_password) {
                    (Some(t), _, _) => HeaderValue::from_str(&format!("Bearer {t}")).ok(),
                    (None, Some(u), Some(p)) => {
                        let enc =
                            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                        HeaderValue::from_str(&format!("Basic {enc}")).ok()
                    }
                    _ => None,
                };
                Transport::Http {
                    client,
                    url: c.url.clone().unwrap_or_default(),
                    auth: auth.map(|mut h| {
                        h.set_sensitive(true);
                        h
                    }),
                    timeout: c.timeout.0,
                }
            }
            ConexxusTransport::Directory => Transport::Directory {
                dir: c.directory.clone().unwrap_or(default_dir),
                timeout: c.timeout.0,
            },
        }
    }

    /// Delivers one document named `name`.
    pub async fn deliver(&self, name: &str, key: &str, document: Vec<u8>) -> Outcome {
        match self {
            Transport::Http {
                client,
                url,
                auth,
                timeout,
            } => {
                let mut headers = vec![(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/xml; charset=utf-8"),
                )];
                if let Ok(v) = HeaderValue::from_str(key) {
                    headers.push((HeaderName::from_static("idempotency-key"), v));
                }
                if let Ok(v) = HeaderValue::from_str(name) {
                    headers.push((HeaderName::from_static("x-naxml-document"), v));
                }
                if let Some(a) = auth {
                    headers.push((AUTHORIZATION, a.clone()));
                }
                let r = client
                    .send(
                        hyper::Method::POST,
                        url,
                        &headers,
                        Bytes::from(document),
                        *timeout,
                    )
                    .await;
                classify(r)
            }
            Transport::Directory { dir, timeout } => {
                let (dir, name) = (dir.clone(), name.to_string());
                let write = tokio::task::spawn_blocking(move || drop_file(&dir, &name, &document));
                match tokio::time::timeout(*timeout, write).await {
                    Ok(Ok(Ok(()))) => Outcome::delivered(),
                    Ok(Ok(Err(e))) => Outcome::Retry {
                        error: e,
                        retry_after: None,
                        reachable: false,
                        in_progress: false,
                    },
                    Ok(Err(e)) => Outcome::Retry {
                        error: e.to_string(),
                        retry_after: None,
                        reachable: true,
                        in_progress: false,
                    },
                    Err(_) => Outcome::Retry {
                        error: format!("file drop slower than {timeout:?}"),
                        retry_after: None,
                        reachable: true,
                        in_progress: false,
                    },
                }
            }
        }
    }
}

/// Write, fsync, rename, fsync the directory.
fn drop_file(dir: &std::path::Path, name: &str, document: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail("cannot create a file in", e))?;
    f.write_all(document)
        .map_err(|e| fail("cannot write in", e))?;
    f.sync_all().map_err(|e| fail("cannot fsync in", e))?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| fail("cannot rename in", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("cannot fsync", e))
}

/// HTTP answer → retry policy: 2xx delivered; 408, 409, 425, 429 and 5xx retried (with
/// `Retry-After`); other 4xx permanent; no connection → retry and mark the upstream down.
pub fn classify(r: Result<Response, HttpError>) -> Outcome {
    match r {
        Ok(resp) if resp.status.is_success() => Outcome::delivered(),
        Ok(resp) => {
            let code = resp.status.as_u16();
            let snippet: String = String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect();
            let error = format!("HTTP {code}: {snippet}");
            if matches!(code, 408 | 409 | 425 | 429) || resp.status.is_server_error() {
                Outcome::Retry {
                    error,
                    retry_after: super::http::retry_after(&resp.headers),
                    reachable: true,
                    in_progress: false,
                }
            } else {
                Outcome::Permanent { error }
            }
        }
        Err(e) => Outcome::Retry {
            reachable: !e.never_sent(),
            error: e.to_string(),
            retry_after: None,
            in_progress: false,
        },
    }
}

/// What both document kinds share: where documents go and how often to try.
#[derive(Clone)]
pub struct Delivery {
    transport: Option<Transport>,
    max_attempts: u32,
}

impl Delivery {
    pub fn new(config: &Config, client: HttpClient) -> Delivery {
        let default_dir = config.resolved.database_path.with_file_name("BOOutbox");
        Delivery {
            transport: config
                .conexxus
                .as_ref()
                .map(|c| Transport::from_config(c, default_dir, client)),
            max_attempts: config.conexxus_settings().max_retries,
        }
    }

    /// Builds the document (outside the send slot), then delivers it as `name`.
    async fn send(
        &self,
        row: &Row,
        slots: &Slots,
        document: impl std::future::Future<Output = Result<(String, Vec<u8>), Outcome>>,
    ) -> Outcome {
        let Some(transport) = &self.transport else {
            return Outcome::Retry {
                error: "conexxus is not configured".into(),
                retry_after: None,
                reachable: false,
                in_progress: false,
            };
        };
        match document.await {
            Ok((name, doc)) => {
                let _slot = slots.acquire().await;
                transport.deliver(&name, &row.idempotency_key, doc).await
            }
            Err(outcome) => outcome,
        }
    }
}

fn cannot_build(e: &str) -> Outcome {
    Outcome::Permanent {
        error: format!("cannot build the document: {e}"),
    }
}

/// Outbox kind `naxml_sale`: a POSJournal of the sales its payload names (`sale_id`, or
/// `sale_ids` for a batch), rendered from the ledger when sent.
pub struct SaleJournal {
    reads: Reads,
    delivery: Delivery,
    location_id: String,
    timezone: Tz,
}

impl SaleJournal {
    pub fn new(config: &Config, reads: Reads, delivery: Delivery) -> SaleJournal {
        SaleJournal {
            reads,
            delivery,
            location_id: config.store.location_id.clone(),
            timezone: config.resolved.timezone,
        }
    }

    /// The document of one row; a read failure is worth a retry, a missing sale is not.
    pub async fn document(&self, row: &Row) -> Result<Vec<u8>, Outcome> {
        let payload: serde_json::Value =
            serde_json::from_str(&row.payload).map_err(|e| cannot_build(&e.to_string()))?;
        let ids: Vec<String> = match (&payload["sale_id"], &payload["sale_ids"]) {
            (serde_json::Value::String(id), _) => vec![id.clone()],
            (_, serde_json::Value::Array(ids)) => ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return Err(cannot_build("payload names no sale")),
        };
        let loaded = self
            .reads
            .read(move |c| {
                ids.iter()
                    .map(|id| events::load(c, id))
                    .collect::<Result<Option<Vec<_>>, _>>()
                    .map_err(StoreError::from)
            })
            .await
            .map_err(|e| Outcome::Retry {
                error: e.to_string(),
                retry_after: None,
                reachable: true,
                in_progress: false,
            })?;
        let loaded = loaded.ok_or_else(|| cannot_build("a sale is not in the ledger"))?;
        let ctx = JournalContext {
            store_location_id: &self.location_id,
            timezone: self.timezone,
            sequence: row.id,
        };
        let sales: Vec<JournalSale<'_>> = loaded
            .iter()
            .map(|e| JournalSale {
                sale: &e.sale,
                event_sequence: e.sequence,
                authorizations: e.authorizations.clone(),
            })
            .collect();
        Ok(journal::render(&ctx, &sales))
    }
}

/// Passport-style document name from the outbox row id.
pub fn journal_name(row_id: i64) -> String {
    format!("PJR{row_id:010}.xml")
}

/// Outbox kind `naxml_movement`: an end-of-day report, its bytes in the payload.
pub struct MovementReport {
    delivery: Delivery,
}

impl MovementReport {
    pub fn new(delivery: Delivery) -> MovementReport {
        MovementReport { delivery }
    }
}

impl Kind for MovementReport {
    fn name(&self) -> &'static str {
        MOVEMENT_KIND
    }

    fn upstream(&self) -> Upstream {
        Upstream::Conexxus
    }

    fn max_attempts(&self) -> u32 {
        self.delivery.max_attempts
    }

    fn send<'a>(&'a self, row: &'a Row, slots: &'a Slots) -> SendFuture<'a> {
        Box::pin(async move {
            let document = async {
                // Parsed once: the payload carries the whole document.
                let mut payload: serde_json::Value =
                    serde_json::from_str(&row.payload).map_err(|e| cannot_build(&e.to_string()))?;
                let name = crate::conexxus::document_name(row.id, &payload);
                match payload["document"].take() {
                    serde_json::Value::String(d) => Ok((name, d.into_bytes())),
                    _ => Err(cannot_build("payload has no document")),
                }
            };
            self.delivery.send(row, slots, document).await
        })
    }
}

impl Kind for SaleJournal {
    fn name(&self) -> &'static str {
        ledger::NAXML_SALE_KIND
    }

    fn upstream(&self) -> Upstream {
        Upstream::Conexxus
    }

    fn max_attempts(&self) -> u32 {
        self.delivery.max_attempts
    }

    fn send<'a>(&'a self, row: &'a Row, slots: &'a Slots) -> SendFuture<'a> {
        let document = async {
            let doc = self.document(row).await?;
            Ok((journal_name(row.id), doc))
        };
        Box::pin(async move { self.delivery.send(row, slots, document).await })
    }
}
