//! The endpoints about the service and the token: `whoami`, `about`, composes.

use serde_json::Value;

use super::client::Client;
use super::error::TfError;
use super::http::Auth;
use super::types::{Compose, Whoami};

impl Client {
    /// `GET /v0.1/whoami`: the token's and user's identity (needs the token). Cached for the
    /// life of the client (and its clones) after the first success.
    pub async fn whoami(&self) -> Result<Whoami, TfError> {
        self.whoami_for(false).await
    }

    pub(super) async fn whoami_for(&self, cleanup: bool) -> Result<Whoami, TfError> {
        self.inner
            .whoami
            .get_or_try_init(|| async {
                let value = self
                    .get_json("/v0.1/whoami", Auth::Required, Vec::new(), cleanup)
                    .await?;
                Whoami::from_json(value).map_err(|reason| TfError::BadReply {
                    endpoint: "GET /v0.1/whoami".into(),
                    reason,
                })
            })
            .await
            .cloned()
    }

    /// `GET /v0.1/about`: the server's version information.
    pub async fn about(&self) -> Result<Value, TfError> {
        self.get_json("/v0.1/about", Auth::IfAny, Vec::new(), false)
            .await
    }

    /// `GET /v0.2/composes/{ranch}`: every compose entry (plain names and regular
    /// expressions). Without `ranch`, the token's ranch (from [`whoami`](Self::whoami)).
    pub async fn composes(&self, ranch: Option<&str>) -> Result<Vec<Compose>, TfError> {
        let ranch = match ranch {
            Some(r) => r.to_string(),
            None => self.whoami().await?.ranch().to_string(),
        };
        if ranch.is_empty()
            || !ranch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TfError::BadReply {
                endpoint: "GET /v0.2/composes".into(),
                reason: format!("'{ranch}' is not a ranch name"),
            });
        }
        let path = format!("/v0.2/composes/{ranch}");
        let value = self.get_json(&path, Auth::Never, Vec::new(), false).await?;
        Compose::list_from_json(&value).map_err(|reason| TfError::BadReply {
            endpoint: format!("GET {path}"),
            reason,
        })
    }
}
