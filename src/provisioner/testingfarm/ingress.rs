//! Our public IPv4 address, for the ingress rule Testing Farm's `public` ranch needs (as
//! upstream: `https://ifconfig.me`, then `https://ifconfig.co`, with a curl User-Agent).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::scope::Scope;

const SERVICES: [&str; 2] = ["https://ifconfig.me", "https://ifconfig.co"];

/// The public address could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find our public IPv4 address for the ingress rule of the public ranch ({0}); give it with `source_host`/--source-host"
)]
pub struct LookupError(String);

/// `A.B.C.D/32` of our public IPv4 address.
pub(super) async fn public_ipv4_cidr(scope: &Scope) -> Result<String, LookupError> {
    let http = reqwest::Client::builder()
        .user_agent("curl/8.0.0")
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| LookupError(e.to_string()))?;
    let mut errors = Vec::new();
    for url in SERVICES {
        let attempt = async {
            let text = http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| e.without_url().to_string())?
                .text()
                .await
                .map_err(|e| e.without_url().to_string())?;
            text.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("not an IPv4 address: {:?}", text.trim()))
        };
        match scope.run(attempt).await {
            None => return Err(LookupError("cancelled".into())),
            Some(Ok(ip)) => return Ok(format!("{ip}/32")),
            Some(Err(e)) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(LookupError(errors.join("; ")))
}
