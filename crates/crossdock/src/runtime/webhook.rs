//! The webhook target: POSTs each action's payload to a URL, with its idempotency key, and
//! classifies the answer (2xx delivered; 408, 425, 429 and 5xx retried; other 4xx permanent).

use std::time::Duration;

use crossdock_store::ClaimedAction;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::delivery::{Deliverer, DeliveryFuture, DeliveryOutcome};
use crate::config::TargetConfig;

/// Bytes of a failed response body kept in the error.
const RESPONSE_EXCERPT_BYTES_MAX: usize = 300;

#[derive(Debug)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
}

impl Webhook {
    pub fn new(name: &str, config: &TargetConfig) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        for (key, value) in &config.headers {
            let name_ok = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                anyhow::anyhow!("targets.{name}.headers: {key:?} is not a header name")
            })?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                anyhow::anyhow!("targets.{name}.headers.{key}: not a valid header value")
            })?;
            value.set_sensitive(true);
            headers.insert(name_ok, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .default_headers(headers)
            .user_agent(concat!("crossdock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("targets.{name}: cannot build an HTTP client: {e}"))?;
        Ok(Webhook {
            client,
            url: config.url.clone(),
        })
    }
}

impl Deliverer for Webhook {
    fn deliver<'a>(&'a self, action: &'a ClaimedAction) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut request = self
                .client
                .post(&self.url)
                .header("content-type", "application/cloudevents+json")
                .header("idempotency-key", &action.idempotency_key)
                .body(action.payload.clone());
            if let Some(correlation) = &action.correlation_id {
                request = request.header("x-correlation-id", correlation);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return DeliveryOutcome::Retry {
                        error: format!("request failed: {e}"),
                        after_ms: None,
                    };
                }
            };
            let status = response.status();
            if status.is_success() {
                return DeliveryOutcome::Delivered;
            }
            let retry_after_ms = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.saturating_mul(1000));
            let body = response.bytes().await.unwrap_or_default();
            let excerpt =
                String::from_utf8_lossy(&body[..body.len().min(RESPONSE_EXCERPT_BYTES_MAX)]);
            let error = format!("HTTP {status}: {}", excerpt.trim());
            let retryable = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
            if retryable {
                DeliveryOutcome::Retry {
                    error,
                    after_ms: retry_after_ms,
                }
            } else {
                DeliveryOutcome::Permanent { error }
            }
        })
    }
}
