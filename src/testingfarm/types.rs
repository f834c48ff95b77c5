//! Small reply types: `whoami` and composes.

use serde_json::Value;

/// The reply of `GET /v0.1/whoami`: which token and user the API token is, and its ranch.
#[derive(Debug, Clone, PartialEq)]
pub struct Whoami {
    token_id: String,
    user_id: String,
    ranch: String,
    json: Value,
}

impl Whoami {
    /// Checks the fields the client depends on: `token.id`, `token.ranch`, `user.id`.
    pub fn from_json(json: Value) -> Result<Self, String> {
        let field = |a: &str, b: &str| -> Result<String, String> {
            json.get(a)
                .and_then(|o| o.get(b))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("'{a}.{b}' is missing or not a string"))
        };
        Ok(Self {
            token_id: field("token", "id")?,
            user_id: field("user", "id")?,
            ranch: field("token", "ranch")?,
            json,
        })
    }

    /// `token.id`.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// `user.id`.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// `token.ranch` (`public` or `redhat`).
    pub fn ranch(&self) -> &str {
        &self.ranch
    }

    /// `token.name`, if given.
    pub fn token_name(&self) -> Option<&str> {
        self.json.get("token")?.get("name")?.as_str()
    }

    /// `user.name`, if given.
    pub fn user_name(&self) -> Option<&str> {
        self.json.get("user")?.get("name")?.as_str()
    }

    /// The whole reply.
    pub fn json(&self) -> &Value {
        &self.json
    }
}

/// One entry of `GET /v0.2/composes/{ranch}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compose {
    /// A compose name, or a regular expression of names when `kind` is `regex`.
    pub name: String,
    /// `compose` or `regex` (other values are kept as given).
    #[serde(rename = "type")]
    pub kind: String,
}

impl Compose {
    /// Whether this is a plain compose name (not a pattern).
    pub fn is_name(&self) -> bool {
        self.kind == "compose"
    }

    pub(crate) fn list_from_json(json: &Value) -> Result<Vec<Self>, String> {
        let list = json
            .get("composes")
            .and_then(Value::as_array)
            .ok_or("'composes' is missing or not a list")?;
        list.iter()
            .map(|c| {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("a compose has no string 'name'")?;
                let kind = c.get("type").and_then(Value::as_str).unwrap_or("compose");
                Ok(Self {
                    name: name.to_string(),
                    kind: kind.to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whoami_needs_ids_and_ranch() {
        let w = Whoami::from_json(json!({
            "token": {"id": "t", "name": "ci", "ranch": "redhat"},
            "user": {"id": "u", "name": "jdoe"}
        }))
        .unwrap();
        assert_eq!((w.token_id(), w.user_id(), w.ranch()), ("t", "u", "redhat"));
        assert_eq!((w.token_name(), w.user_name()), (Some("ci"), Some("jdoe")));
        let e = Whoami::from_json(json!({"token": {"id": "t"}, "user": {"id": "u"}})).unwrap_err();
        assert!(e.contains("token.ranch"), "{e}");
    }

    #[test]
    fn composes_keep_kinds() {
        let list = Compose::list_from_json(&json!({"composes": [
            {"name": "Fedora-42", "type": "compose"},
            {"name": "^Fedora-Rawhide-.*$", "type": "regex"},
            {"name": "Old"}
        ]}))
        .unwrap();
        assert_eq!(list.iter().filter(|c| c.is_name()).count(), 2);
        assert!(Compose::list_from_json(&json!({"composes": [{"type": "x"}]})).is_err());
        assert!(Compose::list_from_json(&json!([])).is_err());
    }
}
