//! The endpoints of [`RpClient`]: launches, items and logs (writes, API v2) and the reads
//! (API v1) a rerun needs.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, RpClient, seg};
use super::error::RpError;
use super::log_entry::{LogEntry, boundary, multipart};
use crate::timestamp::Timestamp;

impl RpClient {
    /// Starts a launch (`POST /launch`); `extra` keys (e.g. `description`, `attributes`,
    /// `mode`) are added to the request. Returns its UUID.
    pub async fn start_launch(&self, name: &str, extra: Option<&Value>) -> Result<String, RpError> {
        let mut body = json!({"name": name, "startTime": Timestamp::now().to_rfc3339()});
        if let (Some(Value::Object(extra)), Value::Object(b)) = (extra, &mut body) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .call(
                Method::POST,
                format!("{}/launch", self.inner.v2),
                &[],
                Body::Json(&body),
                false,
            )
            .await?;
        Self::id_of(&r, "POST /launch")
    }

    /// Reopens launch `uuid` for a rerun (`rerun: true`, `rerunOf: uuid`); RP returns the
    /// same UUID.
    pub async fn rerun_launch(&self, uuid: &str) -> Result<String, RpError> {
        let body = json!({"name": uuid, "rerun": true, "rerunOf": uuid,
                          "startTime": Timestamp::now().to_rfc3339()});
        let r = self
            .call(
                Method::POST,
                format!("{}/launch", self.inner.v2),
                &[],
                Body::Json(&body),
                false,
            )
            .await?;
        Self::id_of(&r, "POST /launch")
    }

    /// Finishes launch `uuid` (RP finishes whatever is still open in it). Returns the reply
    /// (`id`, `number`, `link`).
    pub async fn finish_launch(&self, uuid: &str) -> Result<Value, RpError> {
        let body = json!({"endTime": Timestamp::now().to_rfc3339()});
        self.call(
            Method::PUT,
            format!("{}/launch/{}/finish", self.inner.v2, seg(uuid)),
            &[],
            Body::Json(&body),
            true,
        )
        .await
    }

    /// Starts an item (under `parent`, or at the root). `body` holds `type`, `name` and any
    /// other keys; `launchUuid` and `startTime` are added. Returns its UUID.
    pub async fn start_item(
        &self,
        launch: &str,
        parent: Option<&str>,
        mut body: Value,
    ) -> Result<String, RpError> {
        if let Value::Object(b) = &mut body {
            b.insert("launchUuid".into(), launch.into());
            b.insert("startTime".into(), Timestamp::now().to_rfc3339().into());
        }
        let url = match parent {
            Some(p) => format!("{}/item/{}", self.inner.v2, seg(p)),
            None => format!("{}/item", self.inner.v2),
        };
        let r = self
            .call(Method::POST, url, &[], Body::Json(&body), false)
            .await?;
        Self::id_of(&r, "POST /item")
    }

    /// Finishes an item with an RP status and a description.
    pub async fn finish_item(
        &self,
        launch: &str,
        item: &str,
        status: &str,
        description: Option<&str>,
    ) -> Result<(), RpError> {
        let body = json!({"launchUuid": launch, "status": status, "description": description,
                          "endTime": Timestamp::now().to_rfc3339()});
        self.call(
            Method::PUT,
            format!("{}/item/{}", self.inner.v2, seg(item)),
            &[],
            Body::Json(&body),
            true,
        )
        .await
        .map(drop)
    }

    /// Uploads one log entry (`POST /log`, multipart: the attachment part, then
    /// `json_request_part`).
    pub async fn log(&self, launch: &str, entry: &LogEntry) -> Result<(), RpError> {
        let mut e = json!({"launchUuid": launch, "itemUuid": entry.item,
                           "time": Timestamp::now().to_rfc3339(), "level": entry.level,
                           "message": entry.message});
        if let (Some(a), Value::Object(m)) = (&entry.attachment, &mut e) {
            m.insert("file".into(), json!({"name": a.name}));
        }
        let boundary = boundary();
        let bytes = multipart(&boundary, &Value::Array(vec![e]), entry.attachment.as_ref());
        self.call(
            Method::POST,
            format!("{}/log", self.inner.v2),
            &[],
            Body::Multipart {
                boundary: &boundary,
                bytes: &bytes,
            },
            false,
        )
        .await
        .map(drop)
    }

    /// `GET /api/v1/<project>/launch/uuid/<uuid>`.
    pub async fn get_launch(&self, uuid: &str) -> Result<Value, RpError> {
        self.call(
            Method::GET,
            format!("{}/launch/uuid/{}", self.inner.v1, seg(uuid)),
            &[],
            Body::None,
            false,
        )
        .await
    }

    /// One page (1-based) of launches, newest first.
    pub async fn list_launches(&self, page: u32, size: u32) -> Result<Value, RpError> {
        self.call(
            Method::GET,
            format!("{}/launch", self.inner.v1),
            &[
                ("page.page", page.to_string()),
                ("page.size", size.to_string()),
                ("page.sort", "startTime,desc".into()),
            ],
            Body::None,
            false,
        )
        .await
    }

    /// `GET /api/v1/<project>/item/uuid/<uuid>`.
    pub async fn get_item(&self, uuid: &str) -> Result<Value, RpError> {
        self.call(
            Method::GET,
            format!("{}/item/uuid/{}", self.inner.v1, seg(uuid)),
            &[],
            Body::None,
            false,
        )
        .await
    }

    /// One page of items matching `filters` (`("filter.eq.launchId", "12")`, …).
    pub async fn search_items(
        &self,
        filters: &[(&str, String)],
        page: u32,
        size: u32,
    ) -> Result<Value, RpError> {
        let mut q: Vec<(&str, String)> = filters.to_vec();
        q.push(("page.page", page.to_string()));
        q.push(("page.size", size.to_string()));
        self.call(
            Method::GET,
            format!("{}/item", self.inner.v1),
            &q,
            Body::None,
            false,
        )
        .await
    }

    /// Every page of an item search.
    async fn all_items(&self, filters: &[(&str, String)]) -> Result<Vec<Value>, RpError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let r = self.search_items(filters, page, 100).await?;
            if let Some(c) = r.get("content").and_then(Value::as_array) {
                out.extend(c.iter().cloned());
            }
            let pages = r
                .pointer("/page/totalPages")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if u64::from(page) >= pages {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Names of the tests (step items under the platform's `test` item) of launch `uuid` on
    /// `platform`, optionally only those with one of `statuses` (RP statuses, e.g.
    /// `passed`). Empty when the platform has no item.
    pub async fn existing_tests(
        &self,
        launch_uuid: &str,
        platform: &str,
        statuses: &[&str],
    ) -> Result<Vec<String>, RpError> {
        let launch = self.get_launch(launch_uuid).await?;
        let id = match launch.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(RpError::BadReply {
                    endpoint: "GET /launch/uuid".into(),
                    reason: "no numeric 'id'".into(),
                });
            }
        };
        let platforms = self
            .all_items(&[
                ("filter.eq.launchId", id.clone()),
                ("filter.eq.type", "test".into()),
                ("filter.eq.name", platform.into()),
            ])
            .await?;
        let Some(pid) = platforms
            .first()
            .and_then(|p| p.get("id"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        else {
            return Ok(Vec::new());
        };
        let mut filters = vec![
            ("filter.eq.launchId", id),
            ("filter.eq.parentId", pid),
            ("filter.eq.type", "step".to_string()),
        ];
        if !statuses.is_empty() {
            filters.push(("filter.in.status", statuses.join(",")));
        }
        Ok(self
            .all_items(&filters)
            .await?
            .iter()
            .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
            .collect())
    }
}
