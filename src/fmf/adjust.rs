//! Applying `adjust` rules to one node's data.

use super::context::{Context, Outcome, Rule, RuleError};
use super::error::FmfError;
use super::merge::Merger;
use super::pyre::RegexCache;
use super::value::{Key, Map, Value};
use foldhash::HashMap as FastMap;

/// Keys of an adjust rule that are not merged into the data.
const CONTROL_KEYS: [&str; 3] = ["when", "continue", "because"];

/// Caches shared while adjusting many nodes.
#[derive(Default)]
pub(crate) struct AdjustCache {
    pub regexes: RegexCache,
    /// Each `when` text, parsed and evaluated once: the context does not change while a
    /// tree is adjusted, so neither does the outcome.
    outcomes: FastMap<String, Result<Outcome, RuleError>>,
}

/// Apply the node's (inherited) `adjust` rules to its data.
pub(crate) fn adjust_node(
    node: &str,
    source: &std::path::Path,
    data: &mut Map,
    context: &Context,
    cache: &mut AdjustCache,
) -> Result<(), FmfError> {
    let adjust_err = |message: String| FmfError::Adjust {
        node: node.to_string(),
        source_file: source.display().to_string(),
        message,
    };
    // Shared handle on the rules: applying a rule may replace `adjust` in `data`,
    // iteration continues over the rules as they were (like the reference).
    let rules: std::sync::Arc<Vec<Value>> = match data.get("adjust") {
        None => return Ok(()),
        Some(Value::Map(m)) => std::sync::Arc::new(vec![Value::Map(m.clone())]),
        Some(Value::List(l)) => l.clone(),
        Some(other) => {
            return Err(adjust_err(format!(
                "should be a dictionary or a list of dictionaries, got '{}'",
                other.type_name()
            )));
        }
    };
    for rule in rules.iter() {
        let Value::Map(rule) = rule else {
            return Err(adjust_err("adjust rule should be a dictionary".into()));
        };
        let continue_ = match rule.get("continue") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(adjust_err(format!(
                    "the 'continue' value should be bool, got '{}'",
                    other.python_str()
                )));
            }
        };
        let outcome = match rule.get("when") {
            None => Outcome::True,
            Some(Value::Bool(b)) => {
                if *b {
                    Outcome::True
                } else {
                    Outcome::False
                }
            }
            Some(Value::Str(text)) => {
                if !cache.outcomes.contains_key(&**text) {
                    let outcome = Rule::parse(text).map(|rule| context.evaluate(&rule));
                    cache.outcomes.insert(text.to_string(), outcome);
                }
                match &cache.outcomes[&**text] {
                    Ok(outcome) => *outcome,
                    Err(e) => {
                        return Err(FmfError::Rule {
                            node: node.to_string(),
                            source_file: source.display().to_string(),
                            rule: text.to_string(),
                            source: e.clone(),
                        });
                    }
                }
            }
            Some(other) => {
                return Err(FmfError::Rule {
                    node: node.to_string(),
                    source_file: source.display().to_string(),
                    rule: other.python_str(),
                    source: RuleError("rule must be a string or a bool".into()),
                });
            }
        };
        if outcome != Outcome::True {
            continue;
        }
        let apply: Vec<(Key, Value)> = rule
            .iter()
            .filter(|(k, _)| !k.as_str().is_some_and(|s| CONTROL_KEYS.contains(&s)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Merger {
            node,
            source,
            regexes: &mut cache.regexes,
        }
        .merge_special(data, apply)?;
        if !continue_ {
            break;
        }
    }
    Ok(())
}
